"""Window features: known answers on tiny frames, window edges, gaps, events, and no look-ahead."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forewarn.errors import InputError
from forewarn.features.velocity import VELOCITY_FEATURES
from forewarn.features.windows import METRICS, all_feature_names, compute_window_features, feature_names
from forewarn.features.workloads import WORKLOAD_FEATURES
from forewarn.schemas import VelocityLimits

T0 = pd.Timestamp("2024-03-01T00:00:00Z")


def at(minutes: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=minutes)


def telemetry(rows: Sequence[tuple[str, float, float]]) -> pd.DataFrame:
    """Rows of (instance, minute, cpu); the other metrics are constant."""
    frame = pd.DataFrame(rows, columns=["instance_id", "minute", "cpu"])
    frame["timestamp"] = [at(m) for m in frame["minute"]]
    for metric in METRICS[1:]:
        frame[metric] = 1.0
    return frame.drop(columns="minute")


def row(features: pd.DataFrame, instance: str, minute: float) -> pd.Series:
    hit = features[(features["instance_id"] == instance) & (features["event_timestamp"] == at(minute))]
    assert len(hit) == 1
    return hit.iloc[0]


def test_output_columns_are_keys_then_feature_names() -> None:
    out = compute_window_features(telemetry([("a", 0, 1.0)]))
    assert list(out.columns) == ["instance_id", "event_timestamp", *all_feature_names()]
    assert all_feature_names()[: len(feature_names())] == feature_names()  # window features first
    assert str(out["event_timestamp"].dtype) == "datetime64[ns, UTC]"
    assert all(out[name].dtype == float for name in all_feature_names())
    assert "cpu_slope_1h" in feature_names() and "err_disk_6h" in feature_names()
    assert feature_names(["a.b"])[0] == "a_b_mean_5m"


def test_known_answers_for_a_linear_ramp() -> None:
    # cpu rises by 1 every 10 minutes: slope 6 per hour.
    out = compute_window_features(telemetry([("a", m, 1.0 + m / 10) for m in (0, 10, 20, 30)]))
    last = row(out, "a", 30)
    assert last["cpu_mean_1h"] == pytest.approx(2.5)
    assert last["cpu_max_1h"] == pytest.approx(4.0)
    assert last["cpu_std_1h"] == pytest.approx(math.sqrt(1.25))
    assert last["cpu_slope_1h"] == pytest.approx(6.0)
    assert last["cpu_mean_5m"] == pytest.approx(4.0)
    assert "cpu_std_5m" not in out and "cpu_slope_5m" not in out  # one sample: constant columns left out
    assert math.isnan(row(out, "a", 0)["cpu_slope_6h"])
    assert row(out, "a", 10)["cpu_slope_6h"] == pytest.approx(6.0)


def test_window_excludes_its_left_edge_and_includes_t() -> None:
    out = compute_window_features(telemetry([("a", 0, 100.0), ("a", 30, 1.0), ("a", 60, 3.0)]))
    last = row(out, "a", 60)
    assert last["cpu_mean_1h"] == pytest.approx(2.0)  # the sample at t - 1h is outside (t - 1h, t]
    assert last["cpu_max_1h"] == pytest.approx(3.0)
    assert last["cpu_mean_6h"] == pytest.approx(104.0 / 3)


def test_gaps_empty_the_short_windows_only() -> None:
    out = compute_window_features(telemetry([("a", 0, 2.0), ("a", 5, 4.0), ("a", 185, 10.0)]))
    after = row(out, "a", 185)
    assert after["cpu_mean_1h"] == pytest.approx(10.0)
    assert after["cpu_mean_6h"] == pytest.approx(16.0 / 3)
    assert math.isnan(after["cpu_slope_1h"])
    assert not math.isnan(after["cpu_slope_6h"])


def test_missing_values_are_skipped_and_instances_kept_apart() -> None:
    out = compute_window_features(telemetry([("a", 0, 1.0), ("a", 10, float("nan")), ("b", 10, 50.0), ("a", 20, 3.0)]))
    assert row(out, "a", 20)["cpu_mean_1h"] == pytest.approx(2.0)
    assert row(out, "a", 20)["cpu_slope_1h"] == pytest.approx(6.0)
    assert math.isnan(row(out, "a", 10)["cpu_mean_5m"])
    assert row(out, "b", 10)["cpu_mean_6h"] == pytest.approx(50.0)


def test_matches_a_brute_force_reference_on_irregular_data() -> None:
    rng = np.random.default_rng(7)
    minutes = np.sort(rng.choice(np.arange(0, 900, 1.5), size=150, replace=False))
    frame = telemetry([("a", float(m), float(v)) for m, v in zip(minutes, rng.normal(size=150), strict=True)])
    out = compute_window_features(frame)
    for i in rng.choice(len(minutes), size=25, replace=False):
        t = minutes[i]
        for window, length in (("1h", 60), ("6h", 360)):
            inside = (minutes > t - length) & (minutes <= t)
            x, y = minutes[inside] / 60.0, frame["cpu"].to_numpy()[inside]
            got = row(out, "a", t)
            assert got[f"cpu_mean_{window}"] == pytest.approx(y.mean())
            assert got[f"cpu_max_{window}"] == pytest.approx(y.max())
            assert got[f"cpu_std_{window}"] == pytest.approx(y.std(), abs=1e-9)
            if len(y) >= 2:
                assert got[f"cpu_slope_{window}"] == pytest.approx(np.polyfit(x, y, 1)[0], rel=1e-6, abs=1e-9)


def test_error_counts_by_category_and_window() -> None:
    frame = telemetry([("a", m, 1.0) for m in (0, 60, 120, 400)])
    errors = pd.DataFrame(
        {
            "instance_id": ["a", "a", "a", "a", "b"],
            "timestamp": [at(0), at(30), at(60), at(61), at(60)],
            "category": ["disk", "Disk", "weird", "kernel", "disk"],
        }
    )
    out = compute_window_features(frame, errors=errors)
    assert row(out, "a", 60)["err_disk_1h"] == 1.0  # at(0) is on the left edge: out; at(30): in
    assert row(out, "a", 60)["err_other_1h"] == 1.0  # an error at exactly t counts; unknown -> other
    assert row(out, "a", 60)["err_kernel_1h"] == 0.0  # at(61) is after t
    assert row(out, "a", 120)["err_kernel_1h"] == 1.0
    assert row(out, "a", 120)["err_disk_6h"] == 2.0
    assert row(out, "a", 400)["err_disk_6h"] == 0.0 and row(out, "a", 400)["err_kernel_6h"] == 1.0


def test_minutes_since_failure_and_boot() -> None:
    frame = telemetry([("a", m, 1.0) for m in (0, 30, 60, 100)] + [("b", 30, 1.0)])
    failures = pd.DataFrame({"instance_id": ["a"], "timestamp": [at(30)], "recovery_minutes": [10.0]})
    instances = pd.DataFrame({"instance_id": ["a", "b"], "boot_time": ["2024-02-29T23:00:00Z", ""]})
    out = compute_window_features(frame, failures=failures, instances=instances)
    assert math.isnan(row(out, "a", 30)["minutes_since_failure"])  # strictly before t only
    assert row(out, "a", 60)["minutes_since_failure"] == pytest.approx(30.0)
    assert row(out, "a", 30)["minutes_since_boot"] == pytest.approx(90.0)
    assert row(out, "a", 100)["minutes_since_boot"] == pytest.approx(60.0)  # recovered at minute 40
    assert math.isnan(row(out, "b", 30)["minutes_since_boot"])


def test_every_minutes_keeps_the_last_row_of_each_bucket() -> None:
    frame = telemetry([("a", m, float(m)) for m in range(0, 60, 5)])
    out = compute_window_features(frame, every_minutes=15)
    assert list(out["event_timestamp"]) == [at(10), at(25), at(40), at(55)]
    assert out.iloc[-1]["cpu_mean_1h"] == pytest.approx(27.5)  # computed on every sample before thinning
    with pytest.raises(InputError, match="every_minutes"):
        compute_window_features(frame, every_minutes=0)


def test_missing_metric_column_is_a_readable_error() -> None:
    frame = telemetry([("a", 0, 1.0)]).drop(columns="memory")
    with pytest.raises(InputError, match="field 'memory'"):
        compute_window_features(frame)
    out = compute_window_features(frame, metrics=["cpu"])
    assert list(out.columns[2:6]) == ["cpu_mean_5m", "cpu_max_5m", "cpu_mean_1h", "cpu_max_1h"]


def _random_inputs(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    rows = []
    for instance in ("a", "b", "c"):
        minutes = np.sort(rng.choice(np.arange(0, 1200, 5), size=180, replace=False))
        rows += [(instance, float(m), float(v)) for m, v in zip(minutes, rng.normal(size=180), strict=True)]
    frame = telemetry(rows)
    for metric in METRICS[1:]:
        frame[metric] = rng.normal(size=len(frame))
    errors = pd.DataFrame(
        {
            "instance_id": rng.choice(["a", "b", "c"], 60),
            "timestamp": [at(float(m)) for m in rng.integers(0, 1200, 60)],
            "category": rng.choice(["disk", "memory", "kernel", "x"], 60),
        }
    )
    failures = pd.DataFrame(
        {"instance_id": rng.choice(["a", "b", "c"], 6), "timestamp": [at(float(m)) for m in rng.integers(0, 1200, 6)]}
    )
    return frame, errors, failures


@pytest.mark.parametrize("cut_minute", [240, 610, 1000])
def test_no_feature_uses_data_after_its_timestamp(cut_minute: int) -> None:
    frame, errors, failures = _random_inputs(cut_minute)
    full = compute_window_features(frame, errors=errors, failures=failures)
    cut = at(cut_minute)
    past = compute_window_features(
        frame[frame["timestamp"] <= cut],
        errors=errors[errors["timestamp"] <= cut],
        failures=failures[failures["timestamp"] < cut],
    )
    expected = full[full["event_timestamp"] <= cut].reset_index(drop=True)
    pd.testing.assert_frame_equal(past, expected, check_exact=False, rtol=1e-9, atol=1e-9)
    # and a spike planted after the cut changes nothing at or before it
    spiked = frame.copy()
    spiked.loc[spiked["timestamp"] > cut, list(METRICS)] = 1e9
    again = compute_window_features(spiked, errors=errors, failures=failures)
    pd.testing.assert_frame_equal(again[again["event_timestamp"] <= cut].reset_index(drop=True), expected)


def _workloads() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "task_id": ["t1", "t2", "t3", "t4"],
            "instance_id": ["a", "a", "a", "b"],
            "start": [at(0), at(20), at(50), at(0)],
            "end": [at(60), pd.NaT, at(55), at(500)],
            "cpu": [0.5, 0.25, 1.0, 9.0],
            "memory": [1.0, 0.5, 2.0, 9.0],
            "kind": ["batch", "service", "weird", "etl"],
            "data_size": [10.0, 0.0, 5.0, 1.0],
            "expected_duration": [30.0, np.nan, 100.0, 10.0],
        }
    )


def test_workload_features_known_answers() -> None:
    frame = telemetry([("a", m, 1.0) for m in (0, 10, 20, 40, 52, 55, 60)] + [("c", 10, 1.0)])
    instances = pd.DataFrame({"instance_id": ["a"], "cpu_capacity": [2.0], "memory_capacity": [4.0]})
    out = compute_window_features(frame, workloads=_workloads(), instances=instances)
    first = row(out, "a", 0)
    assert (first["tasks_running"], first["task_cpu"], first["task_cpu_share"]) == (1.0, 0.5, 0.25)
    assert (first["task_memory_share"], first["task_data_size"], first["tasks_batch"]) == (0.25, 10.0, 1.0)
    assert first["task_remaining_minutes"] == pytest.approx(30.0)
    assert row(out, "a", 10)["task_remaining_minutes"] == pytest.approx(20.0)
    assert row(out, "a", 20)["task_remaining_minutes"] == pytest.approx(10.0)  # t2's duration is unknown
    assert row(out, "a", 40)["task_remaining_minutes"] == 0.0  # t1 is overdue, not negative
    busy = row(out, "a", 52)
    assert (busy["tasks_running"], busy["task_cpu"], busy["tasks_service"], busy["tasks_other"]) == (3, 1.75, 1, 1)
    assert busy["task_remaining_minutes"] == pytest.approx(49.0)  # (0 + 98) / 2
    assert row(out, "a", 55)["tasks_running"] == 2.0  # a task ending at t no longer runs
    assert (row(out, "a", 60)["tasks_running"], row(out, "a", 60)["task_remaining_minutes"]) == (1.0, 0.0)
    assert (row(out, "c", 10)[["tasks_running", "task_cpu", "task_cpu_share"]] == 0.0).all()
    idle = compute_window_features(frame)
    assert (idle[list(WORKLOAD_FEATURES)] == 0.0).all(axis=None)


def _random_workloads(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 80
    start = rng.integers(0, 1200, n)
    end = start + rng.integers(0, 400, n)
    return pd.DataFrame(
        {
            "task_id": [f"t{i}" for i in range(n)],
            "instance_id": rng.choice(["a", "b", "c"], n),
            "start": [at(float(m)) for m in start],
            "end": [at(float(m)) if rng.random() < 0.8 else pd.NaT for m in end],
            "cpu": rng.uniform(0, 1, n),
            "memory": rng.uniform(0, 2, n),
            "kind": rng.choice(["batch", "etl", "ml-training", "x"], n),
            "data_size": rng.uniform(0, 50, n),
            "expected_duration": np.where(rng.random(n) < 0.7, rng.integers(1, 300, n), np.nan),
        }
    )


def test_workload_features_match_a_brute_force_reference() -> None:
    frame, _, _ = _random_inputs(11)
    workloads = _random_workloads(11)
    out = compute_window_features(frame, workloads=workloads)
    for _, got in out.sample(60, random_state=1).iterrows():
        t = got["event_timestamp"]
        mine = workloads[workloads["instance_id"] == got["instance_id"]]
        running = mine[(mine["start"] <= t) & (mine["end"].isna() | (mine["end"] > t))]
        assert got["tasks_running"] == len(running)
        assert got["task_cpu"] == pytest.approx(running["cpu"].sum(), abs=1e-9)
        assert got["tasks_ml_training"] == (running["kind"] == "ml-training").sum()
        assert got["tasks_other"] == (running["kind"] == "x").sum()
        timed = running.dropna(subset=["expected_duration"])
        left = ((timed["start"] - t).dt.total_seconds() / 60 + timed["expected_duration"]).clip(lower=0)
        assert got["task_remaining_minutes"] == pytest.approx(left.mean() if len(timed) else 0.0, abs=1e-6)


@pytest.mark.parametrize("cut_minute", [300, 777])
def test_workload_features_never_see_a_task_after_t(cut_minute: int) -> None:
    frame, _, _ = _random_inputs(cut_minute)
    workloads = _random_workloads(cut_minute)
    cut = at(cut_minute)
    full = compute_window_features(frame, workloads=workloads)
    known = workloads[workloads["start"] <= cut].copy()  # what was known at the cut: later tasks and ends unseen
    known.loc[known["end"] > cut, "end"] = pd.NaT
    past = compute_window_features(frame[frame["timestamp"] <= cut], workloads=known)
    expected = full[full["event_timestamp"] <= cut].reset_index(drop=True)
    pd.testing.assert_frame_equal(past[list(WORKLOAD_FEATURES)], expected[list(WORKLOAD_FEATURES)])
    assert (full["tasks_running"] > 0).any()


def test_velocity_features_carry_the_limits_in_force() -> None:
    frame = telemetry([("a", 0, 1.0), ("b", 5, 1.0)])
    limits = VelocityLimits(max_actions_per_cycle=3, max_concurrent_migrations=1, max_fleet_fraction=0.05)
    out = compute_window_features(frame, velocity=limits)
    assert out["velocity_max_actions_per_cycle"].tolist() == [3.0, 3.0]
    assert out["velocity_max_fleet_fraction"].tolist() == [0.05, 0.05]
    default = compute_window_features(frame)
    assert (default["velocity_max_concurrent_migrations"] == VelocityLimits().max_concurrent_migrations).all()
    assert list(VELOCITY_FEATURES) == [f"velocity_{f}" for f in VelocityLimits.model_fields]


def test_workload_features_of_an_instance_ignore_the_others() -> None:
    frame, _, _ = _random_inputs(5)
    workloads = _random_workloads(5)
    full = compute_window_features(frame, workloads=workloads)
    alone = compute_window_features(
        frame[frame["instance_id"] == "b"], workloads=workloads[workloads["instance_id"] == "b"]
    )
    mine = full[full["instance_id"] == "b"].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone[list(WORKLOAD_FEATURES)], mine[list(WORKLOAD_FEATURES)], check_exact=True)


def test_runs_of_whole_instances_give_the_same_features_as_the_whole_fleet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory is bounded by computing window statistics a few instances at a time; the values must not move."""
    from forewarn.features import windows

    telemetry_frame, errors, failures = _random_inputs(3)
    whole = compute_window_features(telemetry_frame, errors=errors, failures=failures)
    ids = np.sort(telemetry_frame["instance_id"].astype(str).to_numpy())
    monkeypatch.setattr(windows, "CHUNK_ROWS", 7)
    chunks = windows.instance_chunks(ids, 7)
    assert len(chunks) > 1 and all(ids[c.start] != ids[c.start - 1] for c in chunks[1:])  # never splits an instance
    pd.testing.assert_frame_equal(compute_window_features(telemetry_frame, errors=errors, failures=failures), whole)


def test_a_wide_dataset_reads_and_gets_features_without_a_warning(tmp_path: Path) -> None:
    """Backblaze has a column per SMART attribute: a frame built a column at a time warned of fragmentation."""
    import warnings

    from forewarn.dataset import read_dataset
    from forewarn.telemetry.rows import parse_telemetry, read_raw

    metrics = [f"smart_{i}_raw" for i in range(120)]
    stamps = pd.date_range("2024-03-01", periods=30, freq="1h", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    rng = np.random.default_rng(0)
    telemetry = pd.DataFrame({"instance_id": "disk-1", "timestamp": stamps})
    telemetry = pd.concat([telemetry, pd.DataFrame(rng.random((30, 120)), columns=metrics)], axis=1)
    telemetry.to_csv(tmp_path / "telemetry.csv", index=False)
    (tmp_path / "failures.csv").write_text("instance_id,timestamp\ndisk-1,2024-03-02T06:00:00Z\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset = read_dataset(tmp_path)
        parsed, _, found = parse_telemetry(read_raw(tmp_path / "telemetry.csv", ("instance_id", "timestamp")))
        features = compute_window_features(dataset.telemetry, metrics=metrics)
    assert found == metrics and list(parsed.columns[2:]) == metrics
    assert len(features) == 30 and f"{metrics[-1]}_mean_1h" in features.columns
