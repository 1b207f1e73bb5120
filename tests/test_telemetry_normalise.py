"""normalise: units, ids, clocks, resampling, and the counts of late, out-of-order, duplicate, missing."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from forewarn.errors import InputError
from forewarn.telemetry.normalise import BYTES_TO_MB, PERCENT_TO_FRACTION, normalise

T0 = pd.Timestamp("2024-03-01T00:00:00Z")


def _frame(rows: list[tuple[str, int, float]], **extra: list[object]) -> pd.DataFrame:
    """Rows of (instance, seconds after T0, cpu percent), in arrival order."""
    frame = pd.DataFrame(rows, columns=["instance_id", "seconds", "cpu"])
    frame["timestamp"] = T0 + pd.to_timedelta(frame.pop("seconds"), unit="s")
    for name, values in extra.items():
        frame[name] = values
    return frame[["instance_id", "timestamp", "cpu", *extra]]


def test_units_convert_percent_and_bytes() -> None:
    frame = _frame([("a", 0, 50.0)], disk_read=[3_000_000.0])
    batch = normalise(frame, step_minutes=5, units={"cpu": PERCENT_TO_FRACTION, "disk_read": BYTES_TO_MB})
    assert batch.frame["cpu"].tolist() == [0.5]
    assert batch.frame["disk_read"].tolist() == pytest.approx([3.0])
    assert batch.report.converted_metrics == ["cpu", "disk_read"]


def test_resamples_to_mean_per_step_on_the_epoch_grid() -> None:
    frame = _frame([("a", 0, 10.0), ("a", 120, 20.0), ("a", 299, 30.0), ("a", 300, 40.0)])
    batch = normalise(frame, step_minutes=5)
    assert batch.frame["timestamp"].tolist() == [T0, T0 + timedelta(minutes=5)]
    assert batch.frame["cpu"].tolist() == [20.0, 40.0]
    assert str(batch.frame["timestamp"].dtype) == "datetime64[ns, UTC]"


def test_counts_duplicates_and_averages_them() -> None:
    frame = _frame([("a", 60, 10.0), ("a", 60, 30.0), ("a", 60, 50.0), ("b", 60, 1.0)])
    batch = normalise(frame, step_minutes=5)
    assert batch.report.duplicates == 2
    assert batch.frame.set_index("instance_id")["cpu"].to_dict() == {"a": 30.0, "b": 1.0}


def test_counts_out_of_order_and_late_and_sorts_them_in() -> None:
    # arrival order: 0, 660, 620 (out of order, same step as 660), 100 (out of order and late: step 0 < step 10)
    frame = _frame([("a", 0, 1.0), ("a", 660, 2.0), ("a", 620, 4.0), ("a", 100, 5.0), ("b", 0, 9.0)])
    batch = normalise(frame, step_minutes=5, max_gap_steps=5)
    assert (batch.report.out_of_order, batch.report.late) == (2, 1)
    rows = batch.frame[batch.frame["instance_id"] == "a"]
    assert rows["timestamp"].is_monotonic_increasing
    assert rows["cpu"].tolist()[0] == 3.0  # samples at 0 s and 100 s share step 0


def test_short_runs_become_nan_rows_long_runs_are_gaps() -> None:
    minutes = [0, 5, 20, 45]  # 2 missing steps (kept as NaN), then 4 missing (a gap at max_gap_steps=3)
    frame = _frame([("a", m * 60, float(m)) for m in minutes])
    batch = normalise(frame, step_minutes=5, max_gap_steps=3)
    report = batch.report
    assert (report.missing_steps, report.filled_steps, report.gaps, report.gap_steps) == (6, 2, 1, 4)
    assert len(batch.frame) == 4 + 2
    assert batch.frame["cpu"].isna().sum() == 2
    stamps = batch.frame["timestamp"]
    assert stamps.iloc[2] == T0 + timedelta(minutes=10) and np.isnan(batch.frame["cpu"].iloc[2])
    assert stamps.iloc[-1] - stamps.iloc[-2] == timedelta(minutes=25)


def test_id_map_merges_agents_into_one_instance() -> None:
    frame = _frame([("10.0.0.5:9100", 0, 10.0), ("vm-5", 30, 30.0), ("10.0.0.6:9100", 0, 7.0)])
    batch = normalise(frame, step_minutes=5, id_map={"10.0.0.5:9100": "i-0005", "vm-5": "i-0005"})
    assert batch.frame.set_index("instance_id")["cpu"].to_dict() == {"10.0.0.6:9100": 7.0, "i-0005": 20.0}
    assert batch.report.renamed_rows == 2 and batch.report.instances == 2


def test_clock_offsets_by_source_shift_timestamps_back() -> None:
    frame = _frame([("a", 310, 1.0), ("a", 310, 2.0)], source=["fast-agent", "good-agent"])
    batch = normalise(frame, step_minutes=5, clock_offsets={"fast-agent": timedelta(seconds=20)})
    assert batch.report.clock_adjusted_rows == 1
    assert batch.frame[["timestamp", "cpu"]].values.tolist() == [[T0, 1.0], [T0 + timedelta(minutes=5), 2.0]]
    assert "source" not in batch.frame.columns


def test_clock_offsets_by_instance_when_no_source_column() -> None:
    batch = normalise(_frame([("a", 0, 1.0)]), step_minutes=1, clock_offsets={"a": timedelta(minutes=-2)})
    assert batch.frame["timestamp"].tolist() == [T0 + timedelta(minutes=2)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"step_minutes": 0}, "field 'step_minutes'"),
        ({"step_minutes": 5, "units": {"memory": 0.01}}, r"field 'memory'.*\(allowed: cpu\)"),
        ({"step_minutes": 5, "max_gap_steps": -1}, "field 'max_gap_steps'"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        normalise(_frame([("a", 0, 1.0)]), **kwargs)  # type: ignore[arg-type]


def test_missing_key_column_is_named() -> None:
    with pytest.raises(InputError, match="field 'instance_id'"):
        normalise(pd.DataFrame({"timestamp": [T0], "cpu": [1.0]}), step_minutes=5)
