"""The telemetry rules are one table: the Great Expectations suite and the row-level quarantine built from it
agree. A row the quarantine keeps passes the suite; a row breaking any rule is quarantined with that rule's
reason and fails the suite's expectation on that column."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forewarn.telemetry_rules import Kind, quarantine, telemetry_rules
from forewarn.validation import validate_telemetry

NOW = datetime(2024, 1, 2, tzinfo=UTC)
METRICS = ["cpu", "disk_read", "net_latency_ms", "error_count", "temperature_delta"]
"""One metric of each kind: a fraction, a level, a latency, a count, and a signed level."""
SIGNED = ["temperature_delta"]
KNOWN = ["vm0", "vm1", "vm2", "vm3"]
ARGS: dict[str, Any] = {"metrics": METRICS, "now": NOW, "signed_metrics": SIGNED, "known_instances": KNOWN}

# (column, bad value, the quarantine's reason, the failed expectation on that column)
CASES: list[tuple[str, Any, str, str]] = [
    ("instance_id", None, "missing instance_id", "expect_column_values_to_not_be_null on column 'instance_id'"),
    ("instance_id", "  ", "missing instance_id", "expect_column_values_to_not_match_regex on column 'instance_id'"),
    ("instance_id", "stranger", "unknown instance", "expect_column_values_to_be_in_set on column 'instance_id'"),
    ("timestamp", pd.NaT, "missing or bad timestamp", "expect_column_values_to_not_be_null on column 'timestamp'"),
    ("timestamp", pd.Timestamp("2030-01-01T00:00Z"), "timestamp in the future",
     "expect_column_values_to_be_between on column 'timestamp'"),
    ("cpu", math.nan, "cpu is NaN", "expect_column_values_to_not_be_null on column 'cpu'"),
    ("cpu", math.inf, "cpu is infinite", "expect_column_values_to_be_between on column 'cpu'"),
    ("cpu", -0.1, "cpu is negative", "expect_column_values_to_be_between on column 'cpu'"),
    ("cpu", 1.5, "cpu above 1", "expect_column_values_to_be_between on column 'cpu'"),
    ("disk_read", -math.inf, "disk_read is infinite", "expect_column_values_to_be_between on column 'disk_read'"),
    ("disk_read", 2e15, "disk_read beyond 1e+15", "expect_column_values_to_be_between on column 'disk_read'"),
    ("net_latency_ms", 2e8, "net_latency_ms beyond 1e+08",
     "expect_column_values_to_be_between on column 'net_latency_ms'"),
    ("error_count", -1.0, "error_count is negative", "expect_column_values_to_be_between on column 'error_count'"),
    ("error_count", 2e12, "error_count beyond 1e+12", "expect_column_values_to_be_between on column 'error_count'"),
    ("temperature_delta", -2e15, "temperature_delta beyond 1e+15",
     "expect_column_values_to_be_between on column 'temperature_delta'"),
    ("temperature_delta", math.nan, "temperature_delta is NaN",
     "expect_column_values_to_not_be_null on column 'temperature_delta'"),
]  # fmt: skip


def telemetry(rows: int = 8) -> pd.DataFrame:
    """Good rows: every value inside its rule, the signed metric negative, values at the bounds included."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "instance_id": [KNOWN[i % 4] for i in range(rows)],
            "timestamp": pd.Timestamp("2024-01-01T00:00Z") + pd.to_timedelta(np.arange(rows) // 4 * 5, unit="min"),
            "cpu": rng.random(rows),
            "disk_read": rng.random(rows) * 1e6,
            "net_latency_ms": rng.random(rows) * 100,
            "error_count": rng.integers(0, 10, rows).astype(float),
            "temperature_delta": rng.normal(size=rows),
        }
    )
    frame.loc[0, ["cpu", "disk_read", "error_count"]] = [1.0, 1e15, 0.0]  # bounds are inclusive
    frame.loc[1, ["temperature_delta", "timestamp"]] = [-1e15, pd.Timestamp(NOW)]
    return frame


def test_every_rule_of_the_table_has_a_breaking_case() -> None:
    rules = telemetry_rules(METRICS, now=NOW, signed_metrics=SIGNED, known_instances=KNOWN)
    assert {rule.column for rule in rules.columns} == {column for column, *_ in CASES}
    assert {rule.kind for rule in rules.columns} == set(Kind)


def test_good_rows_pass_both() -> None:
    frame = telemetry()
    good, bad = quarantine(frame, **ARGS)
    assert bad.empty and len(good) == len(frame)
    report = validate_telemetry(frame, **ARGS)
    assert report.success, report.failures


@pytest.mark.parametrize(("column", "value", "reason", "expectation"), CASES, ids=[c[2] for c in CASES])
def test_a_row_breaking_a_rule_is_quarantined_for_it_and_fails_the_suite_on_it(
    column: str, value: Any, reason: str, expectation: str
) -> None:
    frame = telemetry()
    if column == "timestamp":
        frame[column] = frame[column].astype(object)
    frame.loc[5, column] = value
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    good, bad = quarantine(frame, **ARGS)
    assert list(bad.index) == [5] and reason in bad.loc[5, "reason"].split("; "), bad.get("reason")
    report = validate_telemetry(frame, **ARGS)
    failed = any(f.startswith(f"expectation {expectation}:") for f in report.failures)
    assert not report.success and failed, report.failures
    assert validate_telemetry(good, **ARGS).success  # the rest passes


def test_the_rows_the_quarantine_keeps_pass_the_suite_and_table_rules_fail_it_too() -> None:
    frame = telemetry(40)
    for position, (column, value, _, _) in enumerate(CASES):
        if column == "timestamp":
            frame[column] = frame[column].astype(object)
        frame.loc[2 * position, column] = value
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame.loc[39, ["instance_id", "timestamp"]] = frame.loc[37, ["instance_id", "timestamp"]].to_numpy()
    good, bad = quarantine(frame, **ARGS)
    assert len(bad) == len(CASES) + 1 and "duplicate (instance_id, timestamp)" in set(bad["reason"])
    assert validate_telemetry(good, **ARGS).success
    report = validate_telemetry(frame, **ARGS)
    assert any("compound_columns_to_be_unique" in f for f in report.failures)
    missing = validate_telemetry(good.drop(columns=["error_count"]), **ARGS)
    assert any("column_to_exist on column 'error_count'" in f for f in missing.failures)
    _, lacking = quarantine(good.drop(columns=["error_count"]), **ARGS)
    assert set(lacking["reason"]) == {"no column error_count"} and len(lacking) == len(good)
