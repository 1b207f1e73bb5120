"""Importers on the real public data in ../shared/data: counts, then read_dataset reads the output back."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from forewarn.dataset import read_dataset
from forewarn.errors import DatasetError, InputError
from forewarn.settings import shared_data_dir
from forewarn.telemetry.importers import import_backblaze, import_fta, import_lanl, run_import

DATA = shared_data_dir()


def _needs(folder: str) -> Path:
    path = DATA / folder
    if not path.is_dir():
        pytest.skip(f"public data folder {path} is absent")
    return path


def test_backblaze_ten_day_file_fails_each_drive_once_on_its_last_day(tmp_path: Path) -> None:
    source = _needs("backblaze_2019_subsets") / "TOSHIBA MQ01ABF050_last_10_day_all_q_raw.csv"
    out = import_backblaze(source, tmp_path / "bb")
    dataset = read_dataset(out)
    raw = pd.read_csv(source)
    assert dataset.telemetry["instance_id"].nunique() == raw["serial_number"].nunique() == 534
    assert len(dataset.telemetry) == len(raw)
    assert "smart_9_raw" in dataset.metrics and "failure" not in dataset.metrics
    # 78 relabelled drives (SOURCE.txt) plus 57QEWPXKT, flagged once by Backblaze on 2019-04-05
    assert len(dataset.failures) == dataset.failures["instance_id"].nunique() == 79
    last_day = raw.groupby("serial_number")["date"].max()
    relabelled = dataset.failures[dataset.failures["instance_id"] != "57QEWPXKT"]
    assert (
        relabelled["timestamp"].dt.strftime("%Y-%m-%d").to_numpy()
        == last_day.reindex(relabelled["instance_id"]).to_numpy()
    ).all()
    assert dataset.instances is not None and set(dataset.instances.columns) >= {"model", "capacity_bytes"}


def test_backblaze_directory_merges_raw_and_normalised(tmp_path: Path) -> None:
    summary = run_import("backblaze", _needs("backblaze_2019_subsets"), tmp_path / "bb")
    assert summary.instances == 63_149 and summary.failures == 880
    assert {"smart_5_raw", "smart_5_normalized"} <= set(summary.metrics)
    dataset = read_dataset(summary.out)
    assert len(dataset.failures) == summary.failures and len(dataset.telemetry) == summary.telemetry_rows


def test_lanl_records_to_failures_with_causes(tmp_path: Path) -> None:
    summary = run_import("lanl", _needs("lanl_hpc_failures_1996_2005"), tmp_path / "lanl")
    dataset = read_dataset(summary.out)
    assert len(dataset.failures) == 23_739 and summary.instances == 3_577
    assert set(dataset.failures["root_cause"]) == {
        "hardware",
        "software",
        "network",
        "facilities",
        "human",
        "undetermined",
    }
    assert (dataset.failures["recovery_minutes"].dropna() >= 0).all()
    assert dataset.telemetry.groupby("instance_id").size().max() == 1  # one placeholder row per node
    assert any("synthesised" in note for note in summary.notes)
    assert import_lanl(DATA / "lanl_hpc_failures_1996_2005", tmp_path / "again").is_dir()


@pytest.mark.slow
def test_fta_down_intervals_become_failures(tmp_path: Path) -> None:
    source = _needs("grid5000_fta_availability")
    out = import_fta(source, tmp_path / "fta")
    dataset = read_dataset(out)
    assert len(dataset.failures) == 294_318 and len(dataset.telemetry) == 588_463
    assert dataset.telemetry["instance_id"].nunique() == 1_288
    assert set(dataset.telemetry["available"].unique()) == {0.0, 1.0}
    assert (dataset.failures["recovery_minutes"] > 0).mean() > 0.99
    assert dataset.instances is not None and "node_location" in dataset.instances.columns


def test_unknown_kind_lists_the_allowed(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"unknown import kind 'azure' \(allowed: backblaze, lanl, fta\)"):
        run_import("azure", tmp_path, tmp_path / "out")


def test_wrong_file_names_the_missing_column(tmp_path: Path) -> None:
    bad = tmp_path / "drives.csv"
    bad.write_text("date,serial\n2019-01-01,x\n")
    with pytest.raises(DatasetError, match=r"drives.csv:1, field 'serial_number'"):
        run_import("backblaze", bad, tmp_path / "out")
    bad.write_text("date,serial_number,failure\n2019-01-01,x,0\n2019-13-01,y,0\n")
    with pytest.raises(DatasetError, match=r"drives.csv:3, field 'date': '2019-13-01' is not a date"):
        run_import("backblaze", bad, tmp_path / "out")
    with pytest.raises(InputError, match="no such file"):
        run_import("fta", tmp_path / "nowhere", tmp_path / "out")
