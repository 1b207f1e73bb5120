"""Materialize from the history database, incrementally: what arrived since the ``materialize`` watermark.

Terms:
    new rows: telemetry with a timestamp after the watermark and at or before the cycle's time.
    look-back: the :data:`~forewarn.features.windows.LOOKBACK_MINUTES` before the first new row, read too
        so the longest window of a new row is full; its rows get no feature row of their own.
    metric set: the metric columns present in what a run reads (new rows and look-back), whatever their
        names. The window-feature view is re-typed to it and records it (:func:`with_metrics`); a metric
        with no sample in that span has disappeared, and models trained on it say so when they score.

Each run reads one bounded window per table, a step of at most :data:`STEP_SAMPLES` new samples (counted on
the time index before reading; a step spans minutes of a large fleet or months of sparse daily data, so a first
run over a long history stays bounded in memory and takes few steps), computes window features for the new
rows only (the look-back is their windows' input, not output; the values are exactly those of a full computation, see
:func:`~forewarn.features.windows.compute_window_features`'s ``since``), appends them to the offline store as
one part, pushes each instance's latest row online, and then moves the watermark to the end of what it wrote.
A sample that arrives behind the watermark (late) gets no feature row of its own and does not change rows
already written; the rows after it include it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from forewarn.features import lookback
from forewarn.features.store import FeatureStoreGlue
from forewarn.features.windows import CLIPPED, LOOKBACK_MINUTES, METRICS, compute_window_features, metrics_of
from forewarn.schemas import VelocityLimits
from forewarn.store.repository import Repository
from forewarn.store.watermarks import WatermarkStore

WATERMARK = "materialize"
CHUNK = timedelta(hours=24)
"""The first span a step tries; it then doubles while the step holds under half of :data:`STEP_SAMPLES`."""
STEP_SAMPLES = 6_000_000
"""The most new samples one step computes at once (100 minutes of 10,000 instances with six metrics)."""
MIN_STEP = timedelta(minutes=1)
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


@dataclass
class _Step:
    features: pd.DataFrame
    telemetry: pd.DataFrame
    new: int
    metrics: list[str]
    last_id: int


def _window(
    repo: Repository, start: datetime, end: datetime, velocity: VelocityLimits | None, cache: Path | None
) -> _Step:
    """Feature rows of the telemetry in ``(start, end]``, with what was read, new rows and the metric set."""
    telemetry, last_id = lookback.read_step(repo, cache, start, end, LOOKBACK)
    new = int((telemetry["timestamp"] > pd.Timestamp(start)).sum())
    if not new:
        return _Step(pd.DataFrame(), telemetry, 0, [], last_id)
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
    return _Step(features, telemetry, new, metrics, last_id)


def _step_end(repo: Repository, start: datetime, now: datetime, first: timedelta, budget: int) -> datetime:
    """The end of the next step from ``start``: ``first`` long, doubled while it holds under half the
    ``budget`` of samples (sparse history), halved while it holds more (a large fleet), never past ``now``."""
    end = min(start + first, now)
    count = repo.telemetry_samples_between(start, end)
    while count > budget and end - start > MIN_STEP:
        end = start + max((end - start) / 2, MIN_STEP)
        count = repo.telemetry_samples_between(start, end)
    while count < budget // 2 and end < now:
        longer = min(start + 2 * (end - start), now)
        more = repo.telemetry_samples_between(start, longer)
        if more > budget:
            break
        end, count = longer, more
    return end


def materialize_history(
    repo: Repository,
    open_glue: OpenGlue,
    *,
    now: datetime,
    velocity: VelocityLimits | None = None,
    backfill: timedelta = timedelta(days=30),
    chunk: timedelta = CHUNK,
    step_samples: int = STEP_SAMPLES,
    cache: Path | None = None,
) -> MaterializeOutcome:
    """Materialize the telemetry that arrived since the ``materialize`` watermark, up to ``now``.

    Args:
        repo: the history database.
        open_glue: the feature store for a metric set (re-typed views, same working directory).
        now: the cycle's time: rows after it are left for a later run.
        velocity: the concurrency limits in force, for the velocity features.
        backfill: how far back a first run (no watermark yet) starts.
        chunk: the first span a step tries (see :func:`_step_end`).
        step_samples: the most new samples one step computes at once.
        cache: where to keep each step's look-back for the next run (:mod:`~forewarn.features.lookback`);
            None reads it from the database every time.
    """
    marks = WatermarkStore(repo.engine)
    since = marks.get(WATERMARK)
    outcome = MaterializeOutcome(since=since, until=since)
    start = since if since is not None else now - backfill
    glue: FeatureStoreGlue | None = None
    while start < now:
        end = _step_end(repo, start, now, chunk, step_samples)
        step = _window(repo, start, end, velocity, cache)
        features = step.features
        outcome.rows_read += len(step.telemetry)
        if step.new:
            if glue is None or glue.metrics != step.metrics:
                glue = open_glue(step.metrics)
                if glue.registered_metrics() != step.metrics:
                    glue.apply()  # the views re-typed for this metric set, which they record
            glue.append_offline(features)
            outcome.pushed = glue.push_online(features)
            outcome.until = marks.advance(WATERMARK, end, note=f"{len(features)} feature rows")
            lookback.keep(repo, cache, step.telemetry, end=end, last_id=step.last_id, lookback=LOOKBACK)
            outcome.new_rows += step.new
            outcome.feature_rows += len(features)
            outcome.clipped += int(features.attrs.get(CLIPPED, 0))
            outcome.instances.update(features["instance_id"].astype(str))
            outcome.metrics = step.metrics
        start = end
    return outcome
