"""Data gates: Great Expectations suites (few tests; GX imports slowly) and row-level quarantine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forewarn.errors import ValidationFailed
from forewarn.telemetry_rules import quarantine
from forewarn.validation import ValidationReport, require, validate_telemetry, validate_training_frame

NOW = datetime(2024, 1, 2, tzinfo=UTC)
METRICS = ["cpu", "memory", "error_rate"]


def telemetry(rows: int = 20) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "instance_id": [f"vm{i % 4}" for i in range(rows)],
            "timestamp": pd.Timestamp("2024-01-01T00:00Z") + pd.to_timedelta(np.arange(rows) // 4 * 5, unit="min"),
            "cpu": rng.random(rows),
            "memory": rng.random(rows),
            "error_rate": rng.random(rows) * 5,
        }
    )


def training(rows: int = 200, prevalence: float = 0.1) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "instance_id": [f"vm{i % 10}" for i in range(rows)],
            "event_timestamp": pd.Timestamp("2024-01-01T00:00Z") + pd.to_timedelta(np.arange(rows), unit="min"),
            "f1": rng.normal(size=rows),
            "label_60m": (np.arange(rows) < rows * prevalence).astype(int),
        }
    )


def test_telemetry_gate_passes_good_data_and_names_the_column_of_bad_data(capfd: pytest.CaptureFixture[str]) -> None:
    good = validate_telemetry(telemetry(), metrics=METRICS, now=NOW)
    assert good.success, good.failures
    assert "Calculating Metrics" not in capfd.readouterr().err  # progress bars are off

    bad = telemetry()
    bad.loc[3, "memory"] = np.nan
    bad.loc[5, "cpu"] = 1.5
    bad.loc[7, "error_rate"] = -1.0
    bad.loc[8, "timestamp"] = pd.Timestamp("2030-01-01T00:00Z")
    bad.loc[9, ["instance_id", "timestamp"]] = bad.loc[10, ["instance_id", "timestamp"]].to_numpy()
    report = validate_telemetry(bad, metrics=[*METRICS, "disk"], now=NOW)
    assert not report.success
    text = "\n".join(report.failures)
    for expected in (
        "not_be_null on column 'memory'",
        "between on column 'cpu'",
        "between on column 'error_rate'",
        "between on column 'timestamp'",
        "compound_columns_to_be_unique",
        "column_to_exist on column 'disk': column is missing",
    ):
        assert expected in text, text
    with pytest.raises(ValidationFailed, match="memory"):
        require(report)


def test_training_gate_row_count_prevalence_nulls_and_freshness() -> None:
    ok = validate_training_frame(
        training(), feature_columns=["f1"], label_column="label_60m", max_age=timedelta(days=2), now=NOW
    )
    assert ok.success, ok.failures
    require(ok)

    few = validate_training_frame(training(rows=50), feature_columns=["f1"], label_column="label_60m")
    assert not few.success and any("row_count" in f and "observed 50" in f for f in few.failures)

    none = validate_training_frame(training(prevalence=0.0), feature_columns=["f1"], label_column="label_60m")
    assert any("mean_to_be_between on column 'label_60m'" in f for f in none.failures), none.failures

    holes = training().assign(f1=np.nan)
    stale = validate_training_frame(
        holes, feature_columns=["f1"], label_column="label_60m", max_age=timedelta(hours=1), now=NOW
    )
    text = "\n".join(stale.failures)
    assert "not_be_null on column 'f1'" in text and "max_to_be_between on column 'event_timestamp'" in text


def test_quarantine_says_which_rows_and_why() -> None:
    frame = telemetry(12)
    frame.loc[1, "cpu"] = np.nan
    frame.loc[2, "error_rate"] = -3.0
    frame.loc[3, "timestamp"] = pd.Timestamp("2030-01-01T00:00Z")
    frame.loc[4, "instance_id"] = "stranger"
    frame.loc[6, ["instance_id", "timestamp"]] = frame.loc[5, ["instance_id", "timestamp"]].to_numpy()
    frame.loc[7, "memory"] = np.inf
    good, bad = quarantine(frame, metrics=METRICS, known_instances={"vm0", "vm1", "vm2", "vm3"}, now=NOW)
    assert len(good) + len(bad) == len(frame)
    reasons = bad["reason"].to_dict()
    assert reasons == {
        1: "cpu is NaN",
        2: "error_rate is negative",
        3: "timestamp in the future",
        4: "unknown instance",
        6: "duplicate (instance_id, timestamp)",
        7: "memory is infinite; memory above 1",
    }
    assert 5 in good.index and "reason" not in good.columns


def test_report_is_a_strict_model() -> None:
    with pytest.raises(ValueError):
        ValidationReport(success=True, suite="s", extra=1)  # type: ignore[call-arg]


ALIBABA = Path(__file__).resolve().parents[2] / "shared/data/alibaba_2018_machine/machine_usage.csv"
USAGE = [
    "machine_id",
    "time_stamp",
    "cpu_util_percent",
    "mem_util_percent",
    "mem_gps",
    "mkpi",
    "net_in",
    "net_out",
    "disk_io_percent",
]


@pytest.mark.skipif(not ALIBABA.exists(), reason=f"real data file {ALIBABA} is absent")
def test_gates_on_alibaba_machine_usage() -> None:
    """Utilisation in percent passes when not declared a fraction; the empty mem_gps cells are caught."""
    raw = pd.read_csv(ALIBABA, header=None, names=USAGE, nrows=5000)
    frame = raw.rename(columns={"machine_id": "instance_id"}).assign(
        timestamp=pd.Timestamp("2018-01-01T00:00Z") + pd.to_timedelta(raw["time_stamp"], unit="s")
    )
    percent = ["cpu_util_percent", "mem_util_percent", "disk_io_percent"]
    assert validate_telemetry(frame, metrics=percent, fraction_metrics=[], now=NOW).success
    report = validate_telemetry(frame, metrics=[*percent, "mem_gps"], fraction_metrics=[], now=NOW)
    assert any("not_be_null on column 'mem_gps'" in f for f in report.failures), report.failures
    good, bad = quarantine(frame, metrics=[*percent, "mem_gps"], now=NOW)
    assert len(bad) == int(frame["mem_gps"].isna().sum()) > 0
    assert set(bad["reason"]) == {"mem_gps is NaN"} and len(good) > 0
