"""Data gates with Great Expectations (1.x, ephemeral context, expectations defined in code).

GX validates a whole batch and says which expectations failed; :func:`quarantine` (plain pandas) says
which rows break the same telemetry rules, and why. Great Expectations is imported on first use (the
import takes seconds). GX 1.24 ships no usage-statistics client any more (``analytics_enabled`` is only a
config field); it is set off all the same, with ``GX_ANALYTICS_ENABLED=false``, and progress bars are
switched off through the context's ``progress_bars`` setting.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from forewarn.errors import ValidationFailed
from forewarn.schemas import utcnow

__all__ = ["ValidationReport", "quarantine", "require", "validate_telemetry", "validate_training_frame"]

_FLOAT_MAX = sys.float_info.max
FRACTION_METRICS = frozenset(
    {
        "cpu",
        "memory",
        "mem",
        "cpu_util",
        "memory_util",
        "mem_util",
        "cpu_usage",
        "memory_usage",
        "cpu_fraction",
        "memory_fraction",
    }
)
"""Metric names taken as fractions in [0, 1] unless the caller names the fraction metrics itself."""

ABSURD = 1e15
"""The largest value any metric may take (a 48-bit SMART raw counter is 2.8e14): anything larger is a broken
agent or a typo, and its square (in a standard deviation) would overflow the features."""
LATENCY_MAX = 1e8
"""The largest latency in milliseconds (about 28 hours): metrics named ``*_ms``."""
COUNT_MAX = 1e12
"""The largest count per sample: metrics named ``*_count`` or ``errors_*``."""


def upper_bound(metric: str, fractions: Collection[str] = FRACTION_METRICS) -> float:
    """The largest sane value of ``metric`` by its kind: 1 for a fraction, then latency, count, any other."""
    if metric in fractions:
        return 1.0
    if metric.endswith("_ms"):
        return LATENCY_MAX
    if metric.endswith("_count") or metric.startswith("errors_"):
        return COUNT_MAX
    return ABSURD


def _utc(moment: datetime | None) -> pd.Timestamp:
    stamp = pd.Timestamp(moment or utcnow())
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


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


def validate_telemetry(
    frame: pd.DataFrame,
    *,
    metrics: Sequence[str],
    now: datetime | None = None,
    fraction_metrics: Sequence[str] | None = None,
    signed_metrics: Sequence[str] = (),
) -> ValidationReport:
    """Gate a telemetry batch (dataset format: ``instance_id``, ``timestamp``, metric columns).

    Checks: the columns exist; keys are not null; metrics are present, finite and non-negative (except
    ``signed_metrics``); ``fraction_metrics`` (default: those of ``metrics`` named in
    ``FRACTION_METRICS``, such as cpu and memory) lie in [0, 1], the others under their kind's
    :func:`upper_bound` (and above its negative when signed); no timestamp after ``now``; no duplicate
    (instance_id, timestamp); at least one row.
    """
    gxe = _expectations()
    when = _utc(now)
    fractions = [m for m in metrics if m in FRACTION_METRICS] if fraction_metrics is None else list(fraction_metrics)
    expectations, present = _column_checks(frame, ["instance_id", "timestamp", *metrics])
    expectations.append(gxe.ExpectTableRowCountToBeBetween(min_value=1))
    for key in ("instance_id", "timestamp"):
        if key in present:
            expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=key))
    if "timestamp" in present:
        expectations.append(gxe.ExpectColumnValuesToBeBetween(column="timestamp", max_value=when.to_pydatetime()))
    if {"instance_id", "timestamp"} <= set(present):
        expectations.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=["instance_id", "timestamp"]))
    for metric in (m for m in metrics if m in present):
        high = upper_bound(metric, fractions)
        low = -high if metric in signed_metrics else 0.0
        expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=metric))
        expectations.append(gxe.ExpectColumnValuesToBeBetween(column=metric, min_value=low, max_value=high))
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
        oldest = _utc(now) - max_age
        expectations.append(gxe.ExpectColumnMaxToBeBetween(column=time_col, min_value=oldest.to_pydatetime()))
    return _run("training_frame", frame, expectations, {"rows": len(frame), "features": len(feature_columns)})


def require(report: ValidationReport) -> None:
    """Raise ValidationFailed listing the failed expectations unless ``report`` succeeded."""
    if not report.success:
        raise ValidationFailed(f"suite '{report.suite}' failed: " + "; ".join(report.failures))


def quarantine(
    frame: pd.DataFrame,
    *,
    metrics: Sequence[str],
    known_instances: Collection[str] | None = None,
    now: datetime | None = None,
    fraction_metrics: Sequence[str] | None = None,
    signed_metrics: Sequence[str] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split telemetry rows into good ones and bad ones, each bad row with its reasons.

    Rules (the telemetry suite's, row by row): missing instance_id or timestamp, NaN or infinite metric,
    negative metric (except ``signed_metrics``), fraction metric above 1, any other metric above its kind's
    :func:`upper_bound` (or a signed one below its negative), timestamp after ``now``, instance not in
    ``known_instances`` (when given), and a repeated (instance_id, timestamp) (the first is kept).

    Returns:
        ``(good, bad)``: ``bad`` has the rows' columns plus ``reason`` (reasons joined by "; ").
    """
    fractions = [m for m in metrics if m in FRACTION_METRICS] if fraction_metrics is None else list(fraction_metrics)
    reasons: list[pd.Series] = []

    def flag(mask: pd.Series | Any, text: str) -> None:
        reasons.append(pd.Series(np.where(np.asarray(mask, dtype=bool), text, ""), index=frame.index))

    instance = frame["instance_id"] if "instance_id" in frame.columns else pd.Series(None, index=frame.index)
    stamps = pd.to_datetime(frame.get("timestamp", pd.Series(None, index=frame.index)), utc=True, errors="coerce")
    flag(instance.isna() | (instance.astype(str).str.strip() == ""), "missing instance_id")
    flag(stamps.isna(), "missing or bad timestamp")
    flag(stamps > _utc(now), "timestamp in the future")
    for metric in metrics:
        values = pd.to_numeric(frame[metric], errors="coerce") if metric in frame.columns else None
        if values is None:
            flag(np.ones(len(frame)), f"no column {metric}")
            continue
        flag(values.isna(), f"{metric} is NaN")
        flag(np.isinf(values), f"{metric} is infinite")
        if metric not in signed_metrics:
            flag(values < 0, f"{metric} is negative")
        if metric in fractions:
            flag(values > 1, f"{metric} above 1")
        else:
            high = upper_bound(metric, fractions)
            flag(np.isfinite(values) & (values.abs() > high), f"{metric} beyond {high:g}")
    if known_instances is not None:
        flag(instance.notna() & ~instance.astype(str).isin(set(known_instances)), "unknown instance")
    flag(
        pd.DataFrame({"i": instance, "t": stamps}).duplicated(keep="first") & stamps.notna(),
        "duplicate (instance_id, timestamp)",
    )
    joined = pd.Series("", index=frame.index, dtype=object)
    for reason in reasons:
        separator = np.where((joined != "") & (reason != ""), "; ", "")
        joined = joined + separator + reason
    bad_mask = joined != ""
    return frame.loc[~bad_mask], frame.loc[bad_mask].assign(reason=joined[bad_mask])
