"""Intervals by a bootstrap over instances: whole instances are resampled, never single rows.

Rows of one instance are correlated (a failing VM is "positive" for many consecutive samples), so resampling
rows would count them as independent and give intervals far too narrow. A resample here draws the fleet's
instances with replacement; an instance drawn k times contributes all its rows and events k times. It is
computed as weights: one multinomial count per instance per resample, applied to every figure at once, so
the figures of several scorers in one resample are paired (their ratio has its own interval).

Terms:
    RowPart: the known (uncensored, not down) rows of one scorer: instance code, label, score.
    EventPart: per instance, the failures counted, those caught, the true-alert and false-alarm runs, and the
        lead time of every caught failure with its instance.
    interval: the 5th and 95th percentiles of a figure over the resamples (a 90% interval), None when the
        figure is undefined in nearly every resample.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import NamedTuple

import numpy as np

LEVEL = 0.9
RESAMPLES = 1000
CELLS_PER_CHUNK = 1_000_000  # resamples x rows at once: some ten arrays of 8 MB each


class RowPart(NamedTuple):
    """Known rows of one scorer, sorted by score, highest first; ``last`` ends each group of tied scores."""

    instance: np.ndarray
    y: np.ndarray
    last: np.ndarray

    @classmethod
    def of(cls, instance: np.ndarray, y: np.ndarray, p: np.ndarray) -> RowPart:
        order = np.argsort(-np.asarray(p, dtype=float), kind="mergesort")
        sorted_p = np.asarray(p)[order]
        last = np.r_[np.flatnonzero(np.diff(sorted_p) != 0), len(sorted_p) - 1] if len(p) else np.array([], int)
        return cls(np.asarray(instance)[order], np.asarray(y, dtype=bool)[order], last)


class EventPart(NamedTuple):
    """Per-instance event counts (arrays over instance codes) and the lead of every caught failure."""

    failures: np.ndarray
    caught: np.ndarray
    true_runs: np.ndarray
    false_alarms: np.ndarray
    leads: np.ndarray
    lead_instance: np.ndarray


def resamples(n_instances: int, count: int, chunk: int, seed: int) -> Iterator[np.ndarray]:
    """Multinomial instance counts, ``chunk`` resamples (rows) at a time, ``count`` in all."""
    rng = np.random.default_rng(seed)
    uniform = np.full(n_instances, 1.0 / n_instances)
    done = 0
    while done < count:
        size = min(chunk, count - done)
        yield rng.multinomial(n_instances, uniform, size=size).astype(np.float32)
        done += size


def ranking(part: RowPart, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PR-AUC (average precision) and ROC-AUC of each resample; ``weights`` is resamples x instances."""
    if len(part.y) == 0:
        nan = np.full(len(weights), np.nan)
        return nan, nan
    w = weights[:, part.instance]
    starts = np.r_[0, part.last[:-1] + 1]
    pos = np.add.reduceat(np.where(part.y, w, 0.0), starts, axis=1, dtype=np.float64)
    every = np.add.reduceat(w, starts, axis=1, dtype=np.float64)
    del w
    neg = every - pos
    tp, seen = np.cumsum(pos, axis=1), np.cumsum(every, axis=1)
    positives, negatives = tp[:, -1], np.cumsum(neg, axis=1)
    precision = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        gained = np.diff(np.c_[np.zeros(len(tp)), tp], axis=1)
        ap = (gained * precision).sum(axis=1) / positives
        below = negatives[:, -1:] - negatives  # negatives with a strictly lower score
        roc = (pos * (below + 0.5 * neg)).sum(axis=1) / (positives * negatives[:, -1])
    return np.where(positives > 0, ap, np.nan), roc


def event_figures(part: EventPart, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Event recall, alert precision and median lead of each resample."""
    w = weights.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = (w @ part.caught) / (w @ part.failures)
        true_runs = w @ part.true_runs
        precision = true_runs / (true_runs + w @ part.false_alarms)
    return {"event_recall": recall, "alert_precision": precision, "median_lead_minutes": weighted_median(part, w)}


def weighted_median(part: EventPart, weights: np.ndarray) -> np.ndarray:
    """The median of the resampled leads (each lead repeated as often as its instance was drawn)."""
    if len(part.leads) == 0:
        return np.full(len(weights), np.nan)
    order = np.argsort(part.leads, kind="mergesort")
    values = part.leads[order]
    cum = np.cumsum(weights[:, part.lead_instance[order]], axis=1)
    total = cum[:, -1]
    lo, hi = np.floor((total - 1) / 2), np.floor(total / 2)
    top = len(values) - 1
    i_lo = np.minimum((cum <= lo[:, None]).sum(axis=1), top)
    i_hi = np.minimum((cum <= hi[:, None]).sum(axis=1), top)
    return np.where(total > 0, (values[i_lo] + values[i_hi]) / 2, np.nan)


def interval(values: np.ndarray, level: float = LEVEL) -> list[float] | None:
    """The central ``level`` interval of the finite values; None when fewer than half are finite."""
    finite = values[np.isfinite(values)]
    if len(finite) < max(len(values) / 2, 1):
        return None
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return [float(low), float(high)]


def bootstrap(
    rows: Mapping[str, RowPart],
    events: Mapping[str, EventPart],
    n_instances: int,
    *,
    count: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, dict[str, np.ndarray]]:
    """Every figure of every part over the same ``count`` resamples of ``n_instances`` instances.

    Returns ``{name: {figure: values}}``: ``pr_auc`` and ``roc_auc`` under the names of ``rows``, event
    figures under the names of ``events``. The same resamples serve every name, so figures are paired.
    """
    widest = max([len(p.y) for p in rows.values()] + [len(p.leads) for p in events.values()] + [n_instances, 1])
    chunk = max(1, min(count, CELLS_PER_CHUNK // widest))
    out: dict[str, dict[str, list[np.ndarray]]] = {name: {} for name in [*rows, *events]}
    for weights in resamples(n_instances, count, chunk, seed):
        for name, part in rows.items():
            pr, roc = ranking(part, weights)
            out[name].setdefault("pr_auc", []).append(pr)
            out[name].setdefault("roc_auc", []).append(roc)
        for name, ev in events.items():
            for figure, values in event_figures(ev, weights).items():
                out[name].setdefault(figure, []).append(values)
    return {name: {k: np.concatenate(v) for k, v in figures.items()} for name, figures in out.items()}


def untie(p: np.ndarray, seed: int = 0) -> np.ndarray:
    """``p`` with its ties broken at random (a fixed seed), never reordering distinct values.

    Average precision counts a group of tied scores as one threshold, which scores a constant (or two-level)
    scorer below a random ranking of the same rows: an uninformative continuous score would then "beat" a
    constant one. Broken at random, ties score as chance does, so the comparison is between skills.
    """
    p = np.asarray(p, dtype=float)
    values = np.unique(p[np.isfinite(p)])
    gap = float(np.diff(values).min()) if len(values) > 1 else 1.0
    jitter = np.random.default_rng(seed).random(len(p)) * gap * 0.5
    return p + jitter


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Per-resample ratio, NaN where the denominator is zero or undefined."""
    with np.errstate(invalid="ignore", divide="ignore"):
        values = numerator / denominator
    return np.where(np.isfinite(values), values, np.nan)
