"""The telemetry rules, declared once as a table, and the row-level quarantine derived from it.

A batch of telemetry (dataset format: ``instance_id``, ``timestamp``, metric columns) obeys one table
(:func:`telemetry_rules`): per column its kind, its bounds, whether it may be null and the values it may take,
then the columns that are unique together and the fewest rows. Two things are built from that table:

* the Great Expectations suite that gates a whole batch (:func:`forewarn.validation.validate_telemetry`);
* the quarantine (:func:`quarantine`), which says which rows break which rule, each in a readable reason.

So a row the quarantine keeps passes the suite, and a row breaking a rule is both quarantined and failed by
the suite (``tests/test_telemetry_rules.py``). Bounds by metric kind: a fraction (cpu, memory... unless the
caller names the fractions) lies in [0, 1], a latency (``*_ms``) under :data:`LATENCY_MAX`, a count
(``*_count``, ``errors_*``) under :data:`COUNT_MAX`, any other metric under :data:`ABSURD`; each at least 0
unless the metric is signed (then above the negative bound).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from forewarn.schemas import utcnow

__all__ = [
    "ABSURD",
    "COUNT_MAX",
    "FRACTION_METRICS",
    "LATENCY_MAX",
    "ColumnRule",
    "Kind",
    "TelemetryRules",
    "quarantine",
    "telemetry_rules",
    "upper_bound",
]

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


class Kind(StrEnum):
    """What a column holds, which decides its rules."""

    KEY = "key"
    TIME = "time"
    FRACTION = "fraction"
    LATENCY = "latency"
    COUNT = "count"
    LEVEL = "level"


BOUND = {Kind.FRACTION: 1.0, Kind.LATENCY: LATENCY_MAX, Kind.COUNT: COUNT_MAX, Kind.LEVEL: ABSURD}
"""The largest value of each metric kind."""


def kind_of(metric: str, fractions: Collection[str] = FRACTION_METRICS) -> Kind:
    """The kind of a metric by its name: a fraction (in ``fractions``), a latency, a count, or a level."""
    if metric in fractions:
        return Kind.FRACTION
    if metric.endswith("_ms"):
        return Kind.LATENCY
    if metric.endswith("_count") or metric.startswith("errors_"):
        return Kind.COUNT
    return Kind.LEVEL


def upper_bound(metric: str, fractions: Collection[str] = FRACTION_METRICS) -> float:
    """The largest sane value of ``metric`` by its kind: 1 for a fraction, then latency, count, any other."""
    return BOUND[kind_of(metric, fractions)]


@dataclass(frozen=True)
class ColumnRule:
    """The rules of one column: it exists, is not null (a key also not blank) when ``not_null``, lies in
    [``low``, ``high``] where they are given, and is one of ``allowed`` when that is given."""

    column: str
    kind: Kind
    low: float | None = None
    high: float | pd.Timestamp | None = None
    not_null: bool = True
    allowed: frozenset[str] | None = None


@dataclass(frozen=True)
class TelemetryRules:
    """The whole table: every column's rules, the columns unique together, and the fewest rows of a batch."""

    columns: tuple[ColumnRule, ...]
    unique: tuple[str, ...] = ("instance_id", "timestamp")
    min_rows: int = 1


def as_utc(moment: datetime | None) -> pd.Timestamp:
    """``moment`` (default now) as a UTC timestamp; a naive one is taken as UTC."""
    stamp = pd.Timestamp(moment or utcnow())
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def telemetry_rules(
    metrics: Sequence[str],
    *,
    now: datetime | None = None,
    fraction_metrics: Sequence[str] | None = None,
    signed_metrics: Collection[str] = (),
    known_instances: Collection[str] | None = None,
) -> TelemetryRules:
    """The rules of a telemetry batch with these metric columns.

    Args:
        metrics: the metric columns.
        now: no timestamp may be after it (default now).
        fraction_metrics: the metrics in [0, 1]; default those of ``metrics`` in :data:`FRACTION_METRICS`.
        signed_metrics: metrics that may be negative (down to minus their kind's bound).
        known_instances: the instance ids allowed; ``None`` allows any.
    """
    fractions = [m for m in metrics if m in FRACTION_METRICS] if fraction_metrics is None else list(fraction_metrics)
    allowed = None if known_instances is None else frozenset(map(str, known_instances))
    columns = [
        ColumnRule("instance_id", Kind.KEY, allowed=allowed),
        ColumnRule("timestamp", Kind.TIME, high=as_utc(now)),
    ]
    for metric in metrics:
        kind = kind_of(metric, fractions)
        high = BOUND[kind]
        columns.append(ColumnRule(metric, kind, low=-high if metric in signed_metrics else 0.0, high=high))
    return TelemetryRules(tuple(columns))


def _broken(rule: ColumnRule, frame: pd.DataFrame) -> Iterator[tuple[Any, str]]:
    """Per row, whether it breaks each value rule of ``rule`` (null, bounds), with that rule's reason."""
    name, present = rule.column, rule.column in frame.columns
    if rule.kind is Kind.KEY:
        values = frame[name] if present else pd.Series(None, index=frame.index, dtype=object)
        if rule.not_null:
            yield values.isna() | (values.astype(str).str.strip() == ""), f"missing {name}"
        return
    if rule.kind is Kind.TIME:
        stamps = pd.to_datetime(
            frame[name] if present else pd.Series(None, index=frame.index), utc=True, errors="coerce"
        )
        if rule.not_null:
            yield stamps.isna(), f"missing or bad {name}"
        if rule.high is not None:
            yield stamps > rule.high, f"{name} in the future"
        return
    if not present:
        yield np.ones(len(frame)), f"no column {name}"
        return
    values = pd.to_numeric(frame[name], errors="coerce")
    high, low = float(rule.high or 0.0), float(rule.low or 0.0)
    if rule.not_null:
        yield values.isna(), f"{name} is NaN"
    yield np.isinf(values), f"{name} is infinite"
    if low == 0.0:
        yield values < 0, f"{name} is negative"
    if rule.kind is Kind.FRACTION:
        yield values > high, f"{name} above {high:g}"
        if low < 0.0:
            yield values < low, f"{name} below {low:g}"
    else:
        yield np.isfinite(values) & (values.abs() > high), f"{name} beyond {high:g}"


def _reasons(rules: TelemetryRules, frame: pd.DataFrame) -> Iterator[tuple[Any, str]]:
    """Every (rows breaking it, reason) of the table: value rules column by column, then allowed values,
    then uniqueness (the first of repeated rows is kept)."""
    for rule in rules.columns:
        yield from _broken(rule, frame)
    for rule in rules.columns:
        if rule.allowed is not None:
            values = frame[rule.column] if rule.column in frame.columns else pd.Series(None, index=frame.index)
            yield values.notna() & ~values.astype(str).isin(rule.allowed), "unknown instance"
    keys = {}
    for column in rules.unique:
        values = frame[column] if column in frame.columns else pd.Series(None, index=frame.index)
        keys[column] = pd.to_datetime(values, utc=True, errors="coerce") if column == "timestamp" else values
    dated = keys["timestamp"].notna() if "timestamp" in keys else True
    yield pd.DataFrame(keys).duplicated(keep="first") & dated, f"duplicate ({', '.join(rules.unique)})"


def quarantine(
    frame: pd.DataFrame,
    *,
    metrics: Sequence[str],
    known_instances: Collection[str] | None = None,
    now: datetime | None = None,
    fraction_metrics: Sequence[str] | None = None,
    signed_metrics: Sequence[str] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split telemetry rows into good ones and bad ones, each bad row with its reasons (:func:`telemetry_rules`).

    Reasons: missing instance_id or timestamp, a metric NaN, infinite, negative (unless signed), above 1 (a
    fraction) or beyond its kind's :func:`upper_bound`, a timestamp in the future, an unknown instance (with
    ``known_instances``), a repeated (instance_id, timestamp) (the first is kept).

    Returns:
        ``(good, bad)``: ``bad`` has the rows' columns plus ``reason`` (reasons joined by "; ").
    """
    rules = telemetry_rules(
        metrics,
        now=now,
        fraction_metrics=fraction_metrics,
        signed_metrics=signed_metrics,
        known_instances=known_instances,
    )
    joined = pd.Series("", index=frame.index, dtype=object)
    for mask, text in _reasons(rules, frame):
        reason = pd.Series(np.where(np.asarray(mask, dtype=bool), text, ""), index=frame.index)
        separator = np.where((joined != "") & (reason != ""), "; ", "")
        joined = joined + separator + reason
    bad = joined != ""
    return frame.loc[~bad], frame.loc[bad].assign(reason=joined[bad])
