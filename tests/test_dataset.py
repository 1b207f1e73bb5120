"""The dataset format: what reads, what is refused, and how the refusal names the place."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from forewarn.dataset import Dataset, read_dataset, write_dataset
from forewarn.errors import DatasetError

TELEMETRY = """instance_id,timestamp,cpu,memory
i-1,2024-03-01T00:00:00Z,0.5,0.25
i-1,2024-03-01T00:05:00Z,0.6,
i-2,2024-03-01T00:00:00+01:00,0.1,0.2
"""
FAILURES = """instance_id,timestamp,type,root_cause,recovery_minutes
i-1,2024-03-01T00:30:00Z,memory_leak,software,45
"""


def _write(tmp_path: Path, **files: str) -> Path:
    for name, text in {"telemetry.csv": TELEMETRY, "failures.csv": FAILURES, **files}.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_reads_a_valid_dataset_with_gaps_and_offsets(tmp_path: Path) -> None:
    ds = read_dataset(_write(tmp_path))
    assert ds.metrics == ["cpu", "memory"]
    assert ds.instance_ids == ["i-1", "i-2"]
    assert pd.isna(ds.telemetry.loc[1, "memory"])
    # +01:00 is normalised to UTC
    assert ds.telemetry.loc[2, "timestamp"] == pd.Timestamp("2024-02-29T23:00:00Z")
    assert ds.failures.loc[0, "recovery_minutes"] == 45


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("telemetry.csv", "instance_id,timestamp,cpu\ni-1,2024-03-01T00:00:00Z,high\n", "telemetry.csv:2, field 'cpu'"),
        ("telemetry.csv", "instance_id,timestamp,cpu\ni-1,yesterday,0.1\n", "telemetry.csv:2, field 'timestamp'"),
        ("telemetry.csv", "instance_id,cpu\ni-1,0.1\n", "telemetry.csv:1, field 'timestamp'"),
        ("telemetry.csv", "instance_id,timestamp\ni-1,2024-03-01T00:00:00Z\n", "no metric columns"),
        (
            "telemetry.csv",
            "instance_id,timestamp,cpu\ni-1,2024-03-01T00:00:00Z,0.1\n,2024-03-01T00:00:00Z,0.1\n",
            "telemetry.csv:3, field 'instance_id'",
        ),
        ("telemetry.csv", "instance_id,timestamp,cpu\ni-1,2024-03-01T00:00:00Z,inf\n", "field 'cpu': must be finite"),
        (
            "failures.csv",
            "instance_id,timestamp,recovery_minutes\ni-1,2024-03-01T00:00:00Z,-3\n",
            "failures.csv:2, field 'recovery_minutes'",
        ),
        ("telemetry.csv", "", "file is empty"),
    ],
)
def test_bad_files_name_file_row_and_column(tmp_path: Path, name: str, text: str, expected: str) -> None:
    _write(tmp_path, **{name: text})
    with pytest.raises(DatasetError) as caught:
        read_dataset(tmp_path)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_required_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a directory"):
        read_dataset(tmp_path / "nope")
    (tmp_path / "telemetry.csv").write_text(TELEMETRY)
    with pytest.raises(DatasetError, match=r"missing failures\.csv"):
        read_dataset(tmp_path)


def test_workloads_end_before_start_is_refused(tmp_path: Path) -> None:
    workloads = "task_id,instance_id,start,end,cpu,memory\nt-1,i-1,2024-03-01T02:00:00Z,2024-03-01T01:00:00Z,0.5,0.5\n"
    _write(tmp_path, **{"workloads.csv": workloads})
    with pytest.raises(DatasetError, match=r"workloads.csv:2, field 'end'"):
        read_dataset(tmp_path)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_round_trip(tmp_path: Path, fmt: str) -> None:
    (tmp_path / "a").mkdir()
    original = read_dataset(_write(tmp_path / "a"))
    out = write_dataset(original, tmp_path / "b", telemetry_format=fmt)
    again = read_dataset(out)
    pd.testing.assert_frame_equal(original.telemetry, again.telemetry, check_dtype=False)
    pd.testing.assert_frame_equal(original.failures, again.failures, check_dtype=False)
    assert isinstance(again, Dataset)
