"""The fleet simulator: format, determinism, failure modes and their precursors, downtime, capacity, LANL fit."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from forewarn.dataset import Dataset, read_dataset
from forewarn.errors import DatasetError
from forewarn.settings import shared_data_dir
from forewarn.sim import FAILURE_MODES, LANL_FIT, SimConfig, events, fit_lanl, loads, simulate, write
from forewarn.sim.fit import CAUSE_COLUMNS

METRICS = ["cpu", "memory", "disk_read", "disk_write", "net_latency_ms", "error_count"]
LANL_DIR = shared_data_dir() / "lanl_hpc_failures_1996_2005"
HOUR = pd.Timedelta(hours=1)


@pytest.fixture(scope="module")
def fleet() -> Dataset:
    return simulate(SimConfig(instances=200, days=3.0, seed=0))


def _frames(data: Dataset) -> dict[str, pd.DataFrame]:
    assert data.errors is not None and data.instances is not None and data.workloads is not None
    return {
        "telemetry": data.telemetry,
        "failures": data.failures,
        "errors": data.errors,
        "instances": data.instances,
        "workloads": data.workloads,
    }


def _hour_before(data: Dataset, failure: pd.Series, column: str) -> float:
    tel = data.telemetry
    own = tel[tel["instance_id"] == failure["instance_id"]]
    window = own[(own["timestamp"] < failure["timestamp"]) & (own["timestamp"] >= failure["timestamp"] - HOUR)]
    return float(window[column].mean() - own[column].median()) if len(window) else float("nan")


def _lift(data: Dataset, mode: str, column: str) -> float:
    chosen = data.failures[data.failures["type"] == mode]
    values = [_hour_before(data, row, column) for _, row in chosen.iterrows()]
    return float(np.nanmean(values))


def test_same_seed_gives_identical_data() -> None:
    config = SimConfig(instances=30, days=1.0, seed=7)
    first, second = _frames(simulate(config)), _frames(simulate(config))
    for name, frame in first.items():
        pd.testing.assert_frame_equal(frame, second[name], obj=name)


def test_another_seed_gives_different_data() -> None:
    first = simulate(SimConfig(instances=30, days=1.0, seed=1))
    second = simulate(SimConfig(instances=30, days=1.0, seed=2))
    assert not first.telemetry["cpu"].equals(second.telemetry["cpu"])
    assert first.errors is not None and second.errors is not None
    assert not first.errors["timestamp"].equals(second.errors["timestamp"])


def test_round_trip_through_the_dataset_format(tmp_path: Path) -> None:
    config = SimConfig(instances=20, days=1.0, seed=3, failure_rate_per_day=1.0)
    original = _frames(simulate(config))
    back = _frames(read_dataset(write(config, tmp_path / "fleet")))
    back["instances"]["boot_time"] = pd.to_datetime(back["instances"]["boot_time"], utc=True)  # read as text
    for name, frame in original.items():
        pd.testing.assert_frame_equal(
            back[name].reset_index(drop=True), frame.reset_index(drop=True), check_dtype=False, rtol=1e-5, obj=name
        )


def test_telemetry_columns_ranges_and_step(fleet: Dataset) -> None:
    tel = fleet.telemetry
    assert list(tel.columns) == ["instance_id", "timestamp", *METRICS]
    assert str(tel["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert tel["instance_id"].str.fullmatch(r"i-\d{4}").all()
    assert tel["cpu"].between(0, 1).all() and tel["memory"].between(0, 1).all()
    assert (tel[["disk_read", "disk_write"]] >= 0).all().all() and (tel["net_latency_ms"] > 0).all()
    assert (tel["error_count"] >= 0).all() and (tel["error_count"] % 1 == 0).all()
    offsets = (tel["timestamp"] - pd.Timestamp("2024-03-01", tz="UTC")) / pd.Timedelta(minutes=5)
    assert (offsets % 1 == 0).all() and tel["timestamp"].max() < pd.Timestamp("2024-03-04", tz="UTC")
    assert tel["instance_id"].nunique() == 200


def test_default_failure_count_and_modes(fleet: Dataset) -> None:
    failures = fleet.failures
    assert 40 <= len(failures) <= 80
    assert set(failures["type"]) == set(FAILURE_MODES)
    assert set(failures["root_cause"]) <= set(CAUSE_COLUMNS.values())
    assert (failures["recovery_minutes"] >= 5).all() and (failures["recovery_minutes"] <= 720).all()
    sudden_share = (failures["type"] == "sudden").mean()
    assert 0.1 < sudden_share < 0.5


def test_precursors_are_visible_before_degrading_failures(fleet: Dataset) -> None:
    assert _lift(fleet, "memory_leak", "memory") > 0.1
    assert _lift(fleet, "latency_degradation", "net_latency_ms") > 0.5
    assert _lift(fleet, "disk_errors", "error_count") > 0.2
    assert _lift(fleet, "error_burst", "error_count") > 0.2


def test_sudden_failures_have_no_precursor(fleet: Dataset) -> None:
    assert abs(_lift(fleet, "sudden", "memory")) < 0.03
    assert abs(_lift(fleet, "sudden", "net_latency_ms")) < 0.2
    assert abs(_lift(fleet, "sudden", "error_count")) < 0.1


def test_no_telemetry_during_downtime_and_recovery_after(fleet: Dataset) -> None:
    tel = fleet.telemetry
    end = tel["timestamp"].max()
    for _, failure in fleet.failures.iterrows():
        own = tel.loc[tel["instance_id"] == failure["instance_id"], "timestamp"]
        back = failure["timestamp"] + pd.Timedelta(minutes=failure["recovery_minutes"])
        assert not ((own >= failure["timestamp"]) & (own < back)).any()
        if back + pd.Timedelta(minutes=10) <= end:
            assert (own >= back).any(), "the instance comes back after its recovery"


def test_error_count_matches_error_lines(fleet: Dataset) -> None:
    errors, tel = fleet.errors, fleet.telemetry
    assert errors is not None
    assert set(errors["severity"]) <= {"info", "warning", "error", "critical"}
    assert errors["message"].str.len().gt(10).all()
    serious = errors[errors["severity"].isin(["error", "critical"])]
    step_end = serious["timestamp"].dt.floor("5min") + pd.Timedelta(minutes=5)
    counted = serious.groupby([serious["instance_id"], step_end]).size()
    expected = tel.set_index(["instance_id", "timestamp"])["error_count"]
    expected = expected[expected > 0]
    assert counted.sum() == expected.sum()
    assert counted.sort_index().to_numpy().tolist() == expected.sort_index().to_numpy().astype(int).tolist()


def test_noisy_healthy_instances_show_false_precursors() -> None:
    def spikes(noisy_fraction: float) -> int:
        config = SimConfig(instances=60, days=2.0, seed=5, failure_rate_per_day=0.0, noisy_fraction=noisy_fraction)
        data = simulate(config)
        tel = data.telemetry.set_index("timestamp").groupby("instance_id")["memory"]
        hourly = tel.rolling("1h").mean().groupby(level=0).apply(lambda s: (s - s.median()).max())
        return int((hourly > 0.15).sum())

    assert spikes(0.0) == 0
    assert spikes(0.5) >= 3


def test_workloads_fit_instance_capacity(fleet: Dataset) -> None:
    tasks, machines = fleet.workloads, fleet.instances
    assert tasks is not None and machines is not None
    assert set(tasks["kind"]) == {"batch", "service", "etl", "ml-training"}
    assert (tasks["end"] >= tasks["start"]).all() and tasks["task_id"].is_unique
    capacity = machines.set_index("instance_id")
    for instance_id, own in tasks.groupby("instance_id"):
        moments = pd.concat([own["start"], own["end"]]).unique()
        for moment in moments:
            running = own[(own["start"] <= moment) & (own["end"] > moment)]
            assert running["cpu"].sum() <= capacity.loc[instance_id, "cpu_capacity"] + 1e-9
            assert running["memory"].sum() <= capacity.loc[instance_id, "memory_capacity"] + 1e-9


def test_cpu_repeats_a_daily_shape() -> None:
    data = simulate(SimConfig(instances=40, days=2.0, seed=11, failure_rate_per_day=0.0))
    cpu = data.telemetry.pivot(index="instance_id", columns="timestamp", values="cpu").to_numpy()
    hourly = cpu.reshape(40, 48, 12).mean(axis=2)
    day1, day2 = hourly[:, :24], hourly[:, 24:]
    same = np.mean([np.corrcoef(day1[k], day2[k])[0, 1] for k in range(40) if day1[k].std() > 0.01])
    other = np.mean([np.corrcoef(day1[k], day2[(k + 1) % 40])[0, 1] for k in range(40)])
    assert same > other + 0.2


def test_without_planetlab_the_built_in_shape_is_used_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOREWARN_SHARED_DATA", str(tmp_path))
    monkeypatch.setattr(loads, "_warned", False)
    with pytest.warns(UserWarning, match="PlanetLab traces not found"):
        data = simulate(SimConfig(instances=5, days=1.0))
    assert data.telemetry["cpu"].between(0, 1).all()


def test_failure_intervals_are_weibull_not_exponential() -> None:
    config = SimConfig(instances=400, days=120.0, failure_rate_per_day=0.1)
    failed = events.failures(np.random.Generator(np.random.PCG64(0)), config, LANL_FIT)
    frame = pd.DataFrame({"i": failed.instance, "t": failed.minute, "r": failed.recovery})
    gaps = (frame.groupby("i")["t"].diff() - frame.groupby("i")["r"].shift()).dropna().to_numpy()
    assert gaps.std() / gaps.mean() > 1.3, "an exponential would give a coefficient of variation of 1"
    assert len(frame) / (400 * 120) == pytest.approx(0.1, rel=0.35)


def test_config_refuses_unknown_fields_and_naive_start() -> None:
    with pytest.raises(ValidationError):
        SimConfig(instance=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        SimConfig(start=datetime(2024, 3, 1))


def test_fit_lanl_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="LANL failure records not found"):
        fit_lanl(tmp_path)


@pytest.mark.skipif(not LANL_DIR.is_dir(), reason=f"LANL failure records absent: {LANL_DIR}")
def test_lanl_refit_matches_the_embedded_constants() -> None:
    fit = fit_lanl(LANL_DIR)
    assert fit.weibull_shape == pytest.approx(LANL_FIT.weibull_shape, rel=1e-4)
    assert fit.weibull_scale_hours == pytest.approx(LANL_FIT.weibull_scale_hours, rel=1e-4)
    assert fit.n_intervals == LANL_FIT.n_intervals
    assert fit.weibull_loglik == pytest.approx(LANL_FIT.weibull_loglik, rel=1e-6)
    assert fit.exp_loglik == pytest.approx(LANL_FIT.exp_loglik, rel=1e-6)
    for cause, share in LANL_FIT.root_cause_mix.items():
        assert fit.root_cause_mix[cause] == pytest.approx(share, abs=1e-5)
    assert fit.repair_minutes_quantiles == pytest.approx(LANL_FIT.repair_minutes_quantiles, rel=1e-4)
    assert fit.weibull_shape < 1 and fit.weibull_loglik > fit.exp_loglik
