"""Incremental materialize emits exactly the feature values a full recomputation gives.

A small fleet at a 1-minute step: one instance with a 90-minute gap, one with off-grid and missing samples,
errors and a failure; ingested and materialized five minutes at a time, with one sample arriving late.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forewarn.features import offline
from forewarn.features.incremental import LOOKBACK, materialize_history
from forewarn.features.windows import compute_window_features
from forewarn.store import Repository

START = pd.Timestamp("2026-03-01T00:00:00Z")
END = START + pd.Timedelta(hours=8)
METRICS = ["cpu", "memory"]


def _fleet() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(7)
    stamps = pd.date_range(START + pd.Timedelta(minutes=1), END, freq="1min")
    parts = []
    for name in ("a", "b", "c"):
        times = stamps
        if name == "b":  # a gap of 90 minutes
            times = times[
                (times <= START + pd.Timedelta(hours=3)) | (times > START + pd.Timedelta(hours=4, minutes=30))
            ]
        if name == "c":  # off the grid by 20 s
            times = times + pd.Timedelta(seconds=20)
        cpu = 0.4 + 0.1 * np.sin(np.arange(len(times)) / 30) + rng.normal(0, 0.02, len(times))
        memory = 2e9 + rng.normal(0, 1e6, len(times)).cumsum()
        parts.append(pd.DataFrame({"instance_id": name, "timestamp": times, "cpu": cpu, "memory": memory}))
    telemetry = pd.concat(parts, ignore_index=True)
    telemetry.loc[telemetry.sample(frac=0.03, random_state=1).index, "cpu"] = np.nan  # missing values
    errors = pd.DataFrame(
        {
            "instance_id": ["a", "a", "c"],
            "timestamp": [START + pd.Timedelta(minutes=m) for m in (200, 430, 455)],
            "severity": "error",
            "category": ["disk", "memory", "disk"],
            "message": "boom",
        }
    )
    failures = pd.DataFrame(
        {
            "instance_id": ["b"],
            "timestamp": [START + pd.Timedelta(minutes=100)],
            "type": ["crash"],
            "root_cause": ["disk"],
            "recovery_minutes": [30.0],
        }
    )
    return telemetry, errors, failures


def _full(telemetry: pd.DataFrame, errors: pd.DataFrame, failures: pd.DataFrame) -> pd.DataFrame:
    return compute_window_features(telemetry, errors=errors, failures=failures, metrics=METRICS)


def test_features_for_new_rows_from_the_look_back_equal_the_full_computation() -> None:
    telemetry, errors, failures = _fleet()
    full = _full(telemetry, errors, failures)
    since = START + pd.Timedelta(hours=6, minutes=2)
    read = telemetry[telemetry["timestamp"] > since - pd.Timedelta(LOOKBACK)]
    incremental = compute_window_features(read, errors=errors, failures=failures, metrics=METRICS, since=since)
    expected = full[full["event_timestamp"] > since].reset_index(drop=True)
    pd.testing.assert_frame_equal(incremental, expected, check_exact=True)


class _Capture:
    """A feature store that keeps what it is given (the parquet and online writes are Feast's, tested there)."""

    def __init__(self, metrics: list[str], written: list[pd.DataFrame]) -> None:
        self.metrics, self.written = metrics, written

    def registered_metrics(self) -> list[str]:
        return self.metrics

    def apply(self) -> None:
        return None

    def append_offline(self, features: pd.DataFrame) -> None:
        self.written.append(features)

    def push_online(self, features: pd.DataFrame) -> int:
        return int(features["instance_id"].nunique())


@pytest.mark.parametrize("cached", [False, True], ids=["look-back-read", "look-back-kept"])
def test_incremental_materialize_equals_full_recomputation_with_a_gap_and_a_late_sample(
    tmp_path: Path, cached: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the look-back read from the database each run, or kept from the run before (the late sample then
    comes from "stored since"), the rows are the same."""
    cache = tmp_path / "lookback.parquet" if cached else None
    telemetry, errors, failures = _fleet()
    late_at = START + pd.Timedelta(hours=7, minutes=31)
    late = (telemetry["instance_id"] == "a") & (telemetry["timestamp"] == late_at)
    repo = Repository(f"sqlite:///{tmp_path / 'history.db'}")
    repo.create_all()
    reads: list[datetime] = []
    read = repo.telemetry_between
    monkeypatch.setattr(repo, "telemetry_between", lambda start, end: reads.append(start) or read(start, end))
    repo.save_errors(errors)
    repo.save_failures(failures)
    written: list[pd.DataFrame] = []
    steps = [START + pd.Timedelta(hours=7)] + [START + pd.Timedelta(hours=7, minutes=m) for m in range(5, 61, 5)]
    stored = START - pd.Timedelta(minutes=1)
    for now in steps:
        arrived = (telemetry["timestamp"] > stored) & (telemetry["timestamp"] <= now) & ~late
        if now == late_at + pd.Timedelta(minutes=9):  # the 07:31 sample arrives after the 07:35 run
            arrived |= late
        repo.save_telemetry(telemetry[arrived], source="test")
        materialize_history(repo, lambda metrics: _Capture(metrics, written), now=now.to_pydatetime(), cache=cache)  # type: ignore[arg-type,return-value]
        stored = now
    got = pd.concat(written, ignore_index=True).sort_values(["instance_id", "event_timestamp"], ignore_index=True)
    before = _full(telemetry[~late], errors, failures)
    after = _full(telemetry, errors, failures)
    arrival = START + pd.Timedelta(hours=7, minutes=35)
    expected = pd.concat(
        [
            before[before["event_timestamp"] <= arrival],  # computed before the late sample arrived
            after[(after["event_timestamp"] > arrival) & (after["event_timestamp"] <= steps[-1])],  # with it
        ],
        ignore_index=True,
    ).sort_values(["instance_id", "event_timestamp"], ignore_index=True)
    assert late_at not in set(got.loc[got["instance_id"] == "a", "event_timestamp"])  # behind the watermark
    assert set(got["instance_id"]) == {"a", "b", "c"} and len(got) == len(expected)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    look_backs = sum(1 for start, now in zip(reads, steps, strict=True) if start < now - LOOKBACK)
    assert look_backs == (1 if cached else len(steps))  # kept: only the first run reads its look-back
    changed = after.set_index(["instance_id", "event_timestamp"]).loc["a"].loc[arrival + pd.Timedelta(minutes=1)]
    unchanged = before.set_index(["instance_id", "event_timestamp"]).loc["a"].loc[arrival + pd.Timedelta(minutes=1)]
    assert changed["cpu_mean_1h"] != pytest.approx(unchanged["cpu_mean_1h"], rel=0, abs=0)  # the late sample counts


def test_a_run_reads_only_the_look_back(tmp_path: Path) -> None:
    telemetry, _, _ = _fleet()
    repo = Repository(f"sqlite:///{tmp_path / 'history.db'}")
    repo.create_all()
    repo.save_telemetry(telemetry, source="test")
    written: list[pd.DataFrame] = []
    now = START + pd.Timedelta(hours=7)
    materialize_history(repo, lambda m: _Capture(m, written), now=now.to_pydatetime())  # type: ignore[arg-type,return-value]
    outcome = materialize_history(
        repo,
        lambda m: _Capture(m, written),  # type: ignore[arg-type,return-value]
        now=(now + timedelta(minutes=5)).to_pydatetime(),
    )
    since = now - LOOKBACK
    assert outcome.rows_read == int(
        ((telemetry["timestamp"] > since) & (telemetry["timestamp"] <= now + timedelta(minutes=5))).sum()
    )
    assert outcome.feature_rows == 15 and isinstance(outcome.until, datetime)


def test_small_offline_parts_are_merged_without_losing_a_row(tmp_path: Path) -> None:
    frames = [
        pd.DataFrame(
            {
                "instance_id": ["a", "b"],
                "event_timestamp": [START + pd.Timedelta(minutes=5 * i)] * 2,
                "cpu_mean_1h": [float(i), np.nan],
            }
        )
        for i in range(offline.COMPACT_EVERY + 2)
    ]
    for frame in frames:
        offline.append_part(tmp_path, frame)
    found = offline.parts(tmp_path)
    assert len(found) == 3 and found[0].stem.endswith(offline.MERGED)  # 12 merged, then the 2 newest
    table = pd.concat([pd.read_parquet(part) for part in found], ignore_index=True)
    pd.testing.assert_frame_equal(table, pd.concat(frames, ignore_index=True), check_exact=True)


@pytest.mark.parametrize(("step_samples", "most_steps"), [(200, 40), (10_000_000, 1)])
def test_a_first_run_goes_in_steps_bounded_by_samples_and_equals_the_full_computation(
    tmp_path: Path, step_samples: int, most_steps: int
) -> None:
    """A small budget splits the history into many steps (halving the first day); a large one takes the whole
    sparse span in one step (doubling); either way every row is computed once and exactly."""
    telemetry, errors, failures = _fleet()
    repo = Repository(f"sqlite:///{tmp_path / 'history.db'}")
    repo.create_all()
    repo.save_telemetry(telemetry, source="test")
    repo.save_errors(errors)
    repo.save_failures(failures)
    written: list[pd.DataFrame] = []
    now = END + pd.Timedelta(minutes=1)
    outcome = materialize_history(
        repo,
        lambda m: _Capture(m, written),  # type: ignore[arg-type,return-value]
        now=now.to_pydatetime(),
        backfill=timedelta(days=200),  # months of nothing before the first row
        step_samples=step_samples,
    )
    assert 1 <= len(written) <= most_steps and (len(written) > 5) == (step_samples < 1_000)
    got = pd.concat(written, ignore_index=True).sort_values(["instance_id", "event_timestamp"], ignore_index=True)
    expected = _full(telemetry, errors, failures).sort_values(["instance_id", "event_timestamp"], ignore_index=True)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert outcome.new_rows == len(telemetry) == outcome.feature_rows
