"""The plain functions the flows wrap: which rows training learns from."""

from __future__ import annotations

import pandas as pd

from forewarn.pipeline import TRAIN_EVERY_MINUTES, training_entities


def test_training_rows_are_kept_whatever_the_sampling_offset() -> None:
    times = pd.date_range("2024-03-01T00:02:30Z", periods=36, freq="5min")  # never on a quarter hour
    telemetry = pd.DataFrame({"instance_id": ["i-1"] * 36, "timestamp": times, "cpu": 0.5})
    rows = training_entities(telemetry)
    assert len(rows) == 36 * 5 // TRAIN_EVERY_MINUTES  # one row per bucket, the bucket's last sample
    assert rows["event_timestamp"].is_monotonic_increasing


def test_training_rows_stop_before_the_cut() -> None:
    times = pd.date_range("2024-03-01T00:00:00Z", periods=24, freq="5min")
    telemetry = pd.DataFrame({"instance_id": ["a"] * 24, "timestamp": times, "cpu": 0.1})
    cut = pd.Timestamp("2024-03-01T01:00:00Z")
    rows = training_entities(telemetry, until=cut)
    assert (rows["event_timestamp"] < cut).all() and len(rows) == 4
