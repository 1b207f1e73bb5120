"""Data gates with Great Expectations (1.x, ephemeral context, expectations defined in code).

GX validates a whole batch and says which expectations failed. The telemetry suite is built from the table of
telemetry rules (:mod:`forewarn.telemetry_rules`), from which the row-level quarantine is built too, so the
two agree: :func:`forewarn.telemetry_rules.quarantine` says which rows break the rules, and why.

Great Expectations is imported on first use (the import takes seconds). GX 1.24 ships no usage-statistics
client any more (``analytics_enabled`` is only a config field); it is set off all the same, with
``GX_ANALYTICS_ENABLED=false``, and progress bars are switched off through the context's ``progress_bars``
setting.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from forewarn.errors import ValidationFailed
from forewarn.telemetry_rules import Kind, TelemetryRules, as_utc, telemetry_rules

__all__ = [
    "ValidationReport",
    "require",
    "telemetry_expectations",
    "validate_telemetry",
    "validate_training_frame",
]

_FLOAT_MAX = sys.float_info.max


class ValidationReport(BaseModel):
    """The outcome of one suite on one batch. ``failures`` are readable lines, one per failed expectation."""

    model_config = ConfigDict(extra="forbid")

    success: bool
    suite: str
    failures: list[str] = Field(default_factory=list)
    statistics: dict[str, Any] = Field(default_factory=dict)


@lru_cache(maxsize=1)
def _context() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    context.data_sources.add_pandas("forewarn")
    return context


def _expectations() -> Any:
    import great_expectations.expectations as gxe

    return gxe


def _describe(result: Any) -> str:
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
    column = kwargs.pop("column", None) or kwargs.pop("column_list", None)
    where = f" on column '{column}'" if isinstance(column, str) else (f" on columns {column}" if column else "")
    outcome = result.result or {}
    if config.type == "expect_column_to_exist":
        observed = "column is missing"
    elif result.exception_info and result.exception_info.get("raised_exception"):
        observed = f"error {result.exception_info.get('exception_message')}"
    elif "observed_value" in outcome:
        observed = f"observed {outcome['observed_value']}"
    elif "unexpected_count" in outcome:
        examples = ", ".join(map(str, outcome.get("partial_unexpected_list", [])[:3]))
        observed = f"observed {outcome['unexpected_count']} of {outcome.get('element_count')} rows unexpected"
        observed += f" (e.g. {examples})" if examples else ""
    else:
        observed = "failed"
    # The float-max bounds only rule out infinities; they would read as noise.
    wanted = ", ".join(f"{k}={v}" for k, v in kwargs.items() if v is not None and v not in (_FLOAT_MAX, -_FLOAT_MAX))
    return f"expectation {config.type}{where}: {observed}" + (f" (expected {wanted})" if wanted else "")


def _run(suite_name: str, frame: pd.DataFrame, expectations: list[Any], statistics: dict[str, Any]) -> ValidationReport:
    import great_expectations as gx

    source = _context().data_sources.get("forewarn")
    try:
        asset = source.get_asset(suite_name)
    except LookupError:
        asset = source.add_dataframe_asset(suite_name)
        asset.add_batch_definition_whole_dataframe("whole")
    batch = asset.get_batch_definition("whole").get_batch(batch_parameters={"dataframe": frame})
    suite = gx.ExpectationSuite(name=suite_name, expectations=expectations)
    result = batch.validate(suite)
    failures = [_describe(r) for r in result.results if not r.success]
    return ValidationReport(
        success=bool(result.success),
        suite=suite_name,
        failures=failures,
        statistics={**statistics, "evaluated": len(result.results)},
    )


def _column_checks(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[list[Any], list[str]]:
    """ExpectColumnToExist for each column; returns the expectations and the columns present."""
    gxe = _expectations()
    return [gxe.ExpectColumnToExist(column=c) for c in columns], [c for c in columns if c in frame.columns]


def telemetry_expectations(rules: TelemetryRules, frame: pd.DataFrame) -> list[Any]:
    """The Great Expectations suite of a telemetry rule table (the rules of columns ``frame`` lacks are only
    that they exist): per column exists, not null (a key not blank either), between its bounds, in its
    allowed set; the unique columns unique together; at least ``min_rows`` rows."""
    gxe = _expectations()
    expectations, present = _column_checks(frame, [rule.column for rule in rules.columns])
    expectations.append(gxe.ExpectTableRowCountToBeBetween(min_value=rules.min_rows))
    for rule in (r for r in rules.columns if r.column in present):
        if rule.not_null:
            expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=rule.column))
        if rule.not_null and rule.kind is Kind.KEY:
            expectations.append(gxe.ExpectColumnValuesToNotMatchRegex(column=rule.column, regex=r"^\s*$"))
        if rule.low is not None or rule.high is not None:
            high = rule.high.to_pydatetime() if isinstance(rule.high, pd.Timestamp) else rule.high
            expectations.append(
                gxe.ExpectColumnValuesToBeBetween(column=rule.column, min_value=rule.low, max_value=high)
            )
        if rule.allowed is not None:
            expectations.append(gxe.ExpectColumnValuesToBeInSet(column=rule.column, value_set=sorted(rule.allowed)))
    if set(rules.unique) <= set(present):
        expectations.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(rules.unique)))
    return expectations


def validate_telemetry(
    frame: pd.DataFrame,
    *,
    metrics: Sequence[str],
    now: datetime | None = None,
    fraction_metrics: Sequence[str] | None = None,
    signed_metrics: Sequence[str] = (),
    known_instances: Collection[str] | None = None,
) -> ValidationReport:
    """Gate a telemetry batch (dataset format: ``instance_id``, ``timestamp``, metric columns) with the suite
    of :func:`forewarn.telemetry_rules.telemetry_rules` (arguments as there).

    Checks: the columns exist; keys are not null (nor blank); metrics are present, finite and non-negative
    (except ``signed_metrics``); fractions lie in [0, 1], the others under their kind's bound; no timestamp
    after ``now``; no duplicate (instance_id, timestamp); with ``known_instances``, no other instance; at
    least one row.
    """
    rules = telemetry_rules(
        metrics,
        now=now,
        fraction_metrics=fraction_metrics,
        signed_metrics=signed_metrics,
        known_instances=known_instances,
    )
    expectations = telemetry_expectations(rules, frame)
    return _run("telemetry", frame, expectations, {"rows": len(frame), "metrics": len(metrics)})


def validate_training_frame(
    frame: pd.DataFrame,
    *,
    feature_columns: Sequence[str],
    label_column: str,
    min_rows: int = 100,
    max_null_fraction: float = 0.5,
    sparse_columns: Sequence[str] = (),
    prevalence_range: tuple[float, float] = (0.0005, 0.5),
    max_age: timedelta | None = None,
    now: datetime | None = None,
    time_col: str = "event_timestamp",
) -> ValidationReport:
    """Gate a labelled feature frame before training.

    Checks: the key, feature and label columns exist; at least ``min_rows`` rows; keys not null; each
    feature at most ``max_null_fraction`` null (``sparse_columns``, undefined until an event such as a
    first failure, may be null at any rate) and finite; labels 0/1 and not null; label prevalence in
    ``prevalence_range``; with ``max_age``, the newest row no older than ``now - max_age``.
    """
    gxe = _expectations()
    expectations, present = _column_checks(frame, ["instance_id", time_col, *feature_columns, label_column])
    expectations.append(gxe.ExpectTableRowCountToBeBetween(min_value=min_rows))
    for key in ("instance_id", time_col):
        if key in present:
            expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=key))
    for feature in (c for c in feature_columns if c in present):
        if feature not in sparse_columns:
            expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=feature, mostly=1.0 - max_null_fraction))
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(column=feature, min_value=-_FLOAT_MAX, max_value=_FLOAT_MAX)
        )
    if label_column in present:
        expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=label_column))
        expectations.append(gxe.ExpectColumnValuesToBeInSet(column=label_column, value_set=[0, 1]))
        low, high = prevalence_range
        expectations.append(gxe.ExpectColumnMeanToBeBetween(column=label_column, min_value=low, max_value=high))
    if max_age is not None and time_col in present:
        oldest = as_utc(now) - max_age
        expectations.append(gxe.ExpectColumnMaxToBeBetween(column=time_col, min_value=oldest.to_pydatetime()))
    return _run("training_frame", frame, expectations, {"rows": len(frame), "features": len(feature_columns)})


def require(report: ValidationReport) -> None:
    """Raise ValidationFailed listing the failed expectations unless ``report`` succeeded."""
    if not report.success:
        raise ValidationFailed(f"suite '{report.suite}' failed: " + "; ".join(report.failures))
