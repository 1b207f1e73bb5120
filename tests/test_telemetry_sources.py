"""FileSource and SimulatorSource: slicing by time and instance, averaging to the step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from forewarn.dataset import Dataset, write_dataset
from forewarn.errors import DatasetError, InputError
from forewarn.telemetry import FileSource, SimulatorSource, TelemetrySource

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def _dataset() -> Dataset:
    stamps = pd.date_range(T0, periods=12, freq="1min", tz="UTC")  # 00:00 .. 00:11
    telemetry = pd.DataFrame(
        {
            "instance_id": ["a"] * 12 + ["b"] * 12,
            "timestamp": list(stamps) * 2,
            "cpu": [float(i) for i in range(12)] + [100.0] * 12,
        }
    )
    failures = pd.DataFrame({"instance_id": ["a"], "timestamp": [pd.Timestamp(T0)]})
    return Dataset(telemetry=telemetry, failures=failures)


@pytest.fixture(params=["simulated", "files"])
def source(request: pytest.FixtureRequest, tmp_path: Path) -> TelemetrySource:
    dataset = _dataset()
    if request.param == "simulated":
        return SimulatorSource(dataset)
    return FileSource(write_dataset(dataset, tmp_path / "ds"))


def test_slices_half_open_and_averages_per_step(source: TelemetrySource) -> None:
    assert isinstance(source, TelemetrySource)
    frame = source.read(T0 + timedelta(minutes=1), T0 + timedelta(minutes=10), step_minutes=5)
    a = frame[frame["instance_id"] == "a"]
    assert a["timestamp"].tolist() == [pd.Timestamp(T0), pd.Timestamp(T0 + timedelta(minutes=5))]
    assert a["cpu"].tolist() == [2.5, 7.0]  # minutes 1-4, then 5-9; minute 10 excluded
    assert str(frame["timestamp"].dtype) == "datetime64[ns, UTC]"


def test_filters_instances(source: TelemetrySource) -> None:
    frame = source.read(T0, T0 + timedelta(hours=1), step_minutes=60, instance_ids=["b"])
    assert frame[["instance_id", "cpu"]].values.tolist() == [["b", 100.0]]


def test_empty_window_keeps_the_columns(source: TelemetrySource) -> None:
    frame = source.read(T0 + timedelta(days=1), T0 + timedelta(days=2), step_minutes=5)
    assert frame.empty and list(frame.columns) == ["instance_id", "timestamp", "cpu"]


def test_naive_times_and_bad_ranges_are_input_errors() -> None:
    source = SimulatorSource(_dataset())
    with pytest.raises(InputError, match="field 'start'"):
        source.read(datetime(2024, 3, 1), T0 + timedelta(hours=1), step_minutes=5)
    with pytest.raises(InputError, match="field 'end'"):
        source.read(T0, T0, step_minutes=5)
    with pytest.raises(InputError, match="field 'step_minutes'"):
        source.read(T0, T0 + timedelta(hours=1), step_minutes=0)


def test_file_source_without_telemetry_names_the_directory(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"missing telemetry\.csv"):
        FileSource(tmp_path).read(T0, T0 + timedelta(hours=1), step_minutes=5)
