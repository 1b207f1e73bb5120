"""The backtest's figures with their intervals, at each scorer's own operating point and at a matched budget.

Terms:
    alert budget: the share of instance-time spent alerting (alerting rows over scored rows). Each scorer's
        matched threshold is the one whose alert share on the training rows is closest to the budget; the
        budget is the static rules' share on the training rows (what an operator's rules cost today) unless
        given. Event recall, alert precision and lead at the matched thresholds compare like with like.
    ratio: the model's PR-AUC over a baseline's, with its interval from the same (paired) resamples. The
        model "cannot be told apart" from a baseline when that interval contains 1.
    champion: the scorer the train flow's race rule (:func:`forewarn.model.champion.decide`) picks from the
        evaluated part's figures: the simplest one that no other clearly beats.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from forewarn.model import bootstrap as bs
from forewarn.model.champion import decide, verdict_of
from forewarn.model.evaluate import EventFrame, Events

EVENT_KEYS = ("event_recall", "alert_precision", "median_lead_minutes")
CI_KEYS = ("pr_auc", "roc_auc", *EVENT_KEYS)
RACE = ("static", "logistic", "model")
"""The backtest's scorers, simplest first, as the champion race orders them."""


def alert_share(p: np.ndarray, threshold: float) -> float:
    """The share of rows alerting at ``threshold``."""
    return float(np.mean(np.asarray(p) >= threshold)) if len(p) else 0.0


def budget_threshold(p_train: np.ndarray, budget: float) -> float:
    """The threshold whose share of alerting training rows is closest to ``budget`` (ties: the higher one)."""
    scores = np.sort(np.asarray(p_train, dtype=float))[::-1]
    if len(scores) == 0 or budget <= 0:
        return math.inf
    last = np.r_[np.flatnonzero(np.diff(scores) != 0), len(scores) - 1]
    shares = (last + 1) / len(scores)
    gaps = np.r_[budget, np.abs(shares - budget)]  # the first option alerts on nothing
    pick = int(np.argmin(gaps))
    return math.inf if pick == 0 else float(scores[last[pick - 1]])


def instance_codes(ef: EventFrame) -> dict[str, int]:
    """A code per instance of the evaluated rows or of a counted failure: the units the bootstrap draws."""
    names = np.unique(np.r_[ef.instance, ef.counted["instance_id"].to_numpy(dtype=str)])
    return {str(name): k for k, name in enumerate(names)}


def row_part(ef: EventFrame, p: np.ndarray, codes: dict[str, int]) -> bs.RowPart:
    """The known rows of ``ef`` (not down, not censored) with the scores ``p`` (input order)."""
    known = ef.up & ~ef.censored
    instance = np.fromiter((codes[i] for i in ef.instance[known]), dtype=np.int64, count=int(known.sum()))
    return bs.RowPart.of(instance, ef.truthful[known], np.asarray(p)[ef.order][known])


def event_part(ef: EventFrame, events: Events, codes: dict[str, int]) -> bs.EventPart:
    """Per-instance counts of ``events`` for the bootstrap."""
    n = len(codes)
    row_codes = np.fromiter((codes[i] for i in ef.instance), dtype=np.int64, count=len(ef.instance))
    fail_codes = np.fromiter((codes[str(i)] for i in ef.counted["instance_id"]), dtype=np.int64)
    caught = events.leads.notna().to_numpy()
    return bs.EventPart(
        failures=np.bincount(fail_codes, minlength=n).astype(float),
        caught=np.bincount(fail_codes[caught], minlength=n).astype(float),
        true_runs=np.bincount(row_codes[events.true_starts], minlength=n).astype(float),
        false_alarms=np.bincount(row_codes[events.false_starts], minlength=n).astype(float),
        leads=events.leads.to_numpy(dtype=float)[caught],
        lead_instance=fail_codes[caught],
    )


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def with_intervals(
    figures: dict[str, dict[str, Any]],
    rows: dict[str, bs.RowPart],
    own: dict[str, bs.EventPart],
    matched: dict[str, bs.EventPart],
    n_instances: int,
    *,
    count: int,
    seed: int,
) -> tuple[dict[str, dict[str, Any]], tuple[str, str]]:
    """Add ``<figure>_ci`` to ``figures[name]`` and to ``figures[name]["matched"]``, and the model's ratios.

    ``figures`` maps each scorer to its point figures (with a ``matched`` dict); ``rows``, ``own`` and
    ``matched`` hold the bootstrap parts under the same scorer names. Also returns the champion and the
    reason, by the train flow's rule (:func:`forewarn.model.champion.decide`) on the same resamples.
    """
    events = {**{f"{k}/own": v for k, v in own.items()}, **{f"{k}/matched": v for k, v in matched.items()}}
    draws = bs.bootstrap(rows, events, n_instances, count=count, seed=seed)
    for name, figure in figures.items():
        for key in ("pr_auc", "roc_auc"):
            figure[f"{key}_ci"] = bs.interval(draws[name][key])
        for key in EVENT_KEYS:
            figure[f"{key}_ci"] = bs.interval(draws[f"{name}/own"][key])
            figure["matched"][f"{key}_ci"] = bs.interval(draws[f"{name}/matched"][key])
    for name, base in (("model", "static"), ("model", "logistic"), ("logistic", "static")):
        top, bottom = figures[name]["pr_auc"], figures[base]["pr_auc"]
        point = top / bottom if top is not None and bottom else None
        ci = bs.interval(bs.ratio(draws[name]["pr_auc"], draws[base]["pr_auc"]))
        figures[name][f"ratio_to_{base}"] = {"pr_auc": _clean(point), "ci": ci}
    points = {name: figures[name]["pr_auc"] for name in RACE}
    champion, reason, _ = decide(RACE, points, {name: draws[name]["pr_auc"] for name in RACE})
    return figures, (champion, reason)


def verdict(ratio: dict[str, Any]) -> str:
    """``better``, ``worse`` or ``indistinguishable``: where the ratio's interval lies against 1."""
    return verdict_of(ratio.get("ci"), ratio.get("pr_auc"))
