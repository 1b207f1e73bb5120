"""Materialize from the history database, incrementally: what arrived since the ``materialize`` watermark.

Terms:
    new rows: telemetry with a timestamp after the watermark and at or before the cycle's time.
    look-back: the :data:`~forewarn.features.windows.LOOKBACK_MINUTES` before the first new row, read too
        so the longest window of a new row is full; its rows get no feature row of their own.
    metric set: the metric columns present in what a run reads (new rows and look-back), whatever their
        names. The window-feature view is re-typed to it and records it (:func:`with_metrics`); a metric
        with no sample in that span has disappeared, and models trained on it say so when they score.

Each run reads one bounded window per table (at most :data:`CHUNK` of new rows at a time, so a first run
over a long history stays bounded too), computes window features for the new rows only (the look-back is
their windows' input, not output; the values are exactly those of a full computation, see
:func:`~forewarn.features.windows.compute_window_features`'s ``since``), appends them to the offline store as
one part, pushes each instance's latest row online, and then moves the watermark to the end of what it wrote.
A sample that arrives behind the watermark (late) gets no feature row of its own and does not change rows
already written; the rows after it include it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd

from forewarn.features.store import FeatureStoreGlue
from forewarn.features.windows import CLIPPED, LOOKBACK_MINUTES, METRICS, compute_window_features, metrics_of
from forewarn.schemas import VelocityLimits
from forewarn.store.repository import Repository
from forewarn.store.watermarks import WatermarkStore

WATERMARK = "materialize"
CHUNK = timedelta(hours=24)
"""The most new rows one step of a run computes at once (a first run over days goes in such steps)."""
LOOKBACK = timedelta(minutes=LOOKBACK_MINUTES)

OpenGlue = Callable[[list[str]], FeatureStoreGlue]
"""The feature store for a metric set."""


@dataclass
class MaterializeOutcome:
    """What one materialize run read and wrote."""

    since: datetime | None
    until: datetime | None
    new_rows: int = 0
    rows_read: int = 0
    feature_rows: int = 0
    pushed: int = 0
    instances: set[str] = field(default_factory=set)
    metrics: list[str] = field(default_factory=list)
    clipped: int = 0
    """Window feature values that overflowed or exceeded the feature limit and were clipped to it."""

    def summary(self) -> str:
        if not self.new_rows:
            since = self.since.isoformat() if self.since else "the start of the window"
            return f"materialize: no new telemetry since {since}; nothing done"
        return (
            f"materialized {self.feature_rows:,} feature rows for {len(self.instances):,} instances from "
            f"{self.new_rows:,} new telemetry rows ({self.rows_read:,} read with the look-back), metrics "
            f"{', '.join(self.metrics)}; watermark {self.until.isoformat() if self.until else '-'}"
            + (f"; {self.clipped:,} feature value(s) clipped (absurd telemetry)" if self.clipped else "")
        )


def ordered_metrics(found: list[str]) -> list[str]:
    """The default metrics first in their order, then the others by name (a stable order across runs)."""
    return [m for m in METRICS if m in found] + sorted(m for m in found if m not in METRICS)


def _window(
    repo: Repository, start: datetime, end: datetime, velocity: VelocityLimits | None
) -> tuple[pd.DataFrame, int, int, list[str]]:
    """Feature rows of the telemetry in ``(start, end]``, with rows read, new rows and the metric set."""
    telemetry = repo.telemetry_between(start - LOOKBACK, end)
    new = int((telemetry["timestamp"] > pd.Timestamp(start)).sum())
    if not new:
        return pd.DataFrame(), len(telemetry), 0, []
    metrics = ordered_metrics(metrics_of(telemetry))
    features = compute_window_features(
        telemetry,
        errors=repo.errors_between(start - LOOKBACK, end),
        failures=repo.failures_between(start, end, last_before=True),
        instances=repo.instances_frame(),
        workloads=repo.workloads_between(start, end),
        velocity=velocity,
        metrics=metrics,
        since=pd.Timestamp(start),
    )
    return features, len(telemetry), new, metrics


def materialize_history(
    repo: Repository,
    open_glue: OpenGlue,
    *,
    now: datetime,
    velocity: VelocityLimits | None = None,
    backfill: timedelta = timedelta(days=30),
    chunk: timedelta = CHUNK,
) -> MaterializeOutcome:
    """Materialize the telemetry that arrived since the ``materialize`` watermark, up to ``now``.

    Args:
        repo: the history database.
        open_glue: the feature store for a metric set (re-typed views, same working directory).
        now: the cycle's time: rows after it are left for a later run.
        velocity: the concurrency limits in force, for the velocity features.
        backfill: how far back a first run (no watermark yet) starts.
        chunk: the most new rows computed at once.
    """
    marks = WatermarkStore(repo.engine)
    marks.create()
    since = marks.get(WATERMARK)
    outcome = MaterializeOutcome(since=since, until=since)
    start = since if since is not None else now - backfill
    glue: FeatureStoreGlue | None = None
    while start < now:
        end = min(start + chunk, now)
        features, read, new, metrics = _window(repo, start, end, velocity)
        outcome.rows_read += read
        if new:
            if glue is None or glue.metrics != metrics:
                glue = open_glue(metrics)
                if glue.registered_metrics() != metrics:
                    glue.apply()  # the views re-typed for this metric set, which they record
            glue.append_offline(features)
            outcome.pushed = glue.push_online(features)
            outcome.until = marks.advance(WATERMARK, end, note=f"{len(features)} feature rows")
            outcome.new_rows += new
            outcome.feature_rows += len(features)
            outcome.clipped += int(features.attrs.get(CLIPPED, 0))
            outcome.instances.update(features["instance_id"].astype(str))
            outcome.metrics = metrics
        start = end
    return outcome
