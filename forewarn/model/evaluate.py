"""Evaluation: per-sample scores (PR-AUC, Brier) and the event-level view of ARCHITECTURE.md.

Event level, for horizon H and an operating threshold chosen on training data only:
    alert: a score at or above the threshold.
    caught failure: a failure at t with an alert of its instance in [t - H, t); its lead time is t minus
        the first such alert.
    false alarm: an alert followed by no failure of its instance within H; each run of consecutive false
        alerts of an instance (no other sample of that instance between them) counts once.
    alert precision: true-alert runs / (true-alert runs + false alarms), where a true alert is followed by
        a failure within H and runs are counted the same way.
Alerts while an instance is down (after a failure, within its recovery_minutes) are not alerts, and
censored alerts (the window runs past the data) are never false alarms. Failures counted are those in
(first score time, last score time + H]: earlier or later ones could not
have been predicted by these scores. Undefined ratios are None.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from forewarn.errors import InputError
from forewarn.model.labels import censored_column, label_column, make_labels


def pr_auc(y_true: np.ndarray, p: np.ndarray) -> float:
    """Average precision (area under the precision-recall curve); ties in ``p`` form one threshold."""
    y = np.asarray(y_true, dtype=float)
    scores = np.asarray(p, dtype=float)
    positives = y.sum()
    if positives == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    y, scores = y[order], scores[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores) != 0), len(scores) - 1]
    tp = np.cumsum(y)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(y_true: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (the Mann-Whitney statistic, ties counted half); NaN with one class only."""
    y = np.asarray(y_true, dtype=float) > 0.5
    ranks = pd.Series(np.asarray(p, dtype=float)).rank(method="average").to_numpy()
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def brier(y_true: np.ndarray, p: np.ndarray) -> float:
    """Mean squared difference between probability and outcome (lower is better)."""
    y = np.asarray(y_true, dtype=float)
    return float(np.mean((np.asarray(p, dtype=float) - y) ** 2)) if len(y) else float("nan")


def choose_threshold(y_true: np.ndarray, p: np.ndarray, *, min_precision: float | None = None) -> float:
    """The operating threshold, from training or validation data only.

    Without ``min_precision``: the score that maximises F1. With it: the lowest score (most recall) whose
    precision reaches ``min_precision``, or the most precise threshold when none does.
    """
    y = np.asarray(y_true, dtype=float)
    scores = np.asarray(p, dtype=float)
    if y.sum() == 0:
        raise InputError("cannot choose a threshold: the data has no positive label", field="label")
    order = np.argsort(-scores, kind="mergesort")
    y, scores = y[order], scores[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores) != 0), len(scores) - 1]
    tp = np.cumsum(y)[last_of_tie]
    precision = tp / (last_of_tie + 1)
    recall = tp / y.sum()
    thresholds = scores[last_of_tie]
    if min_precision is not None:
        meets = np.flatnonzero(precision >= min_precision)
        return float(thresholds[meets[-1]] if len(meets) else thresholds[int(np.argmax(precision))])
    f1 = np.where(tp > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return float(thresholds[int(np.argmax(f1))])


def _run_starts(flags: np.ndarray, same_instance: np.ndarray) -> np.ndarray:
    """Where a run of consecutive True flags within an instance starts (rows sorted by instance, time)."""
    previous = np.r_[False, flags[:-1]]
    return flags & ~(previous & same_instance)


class EventFrame(NamedTuple):
    """The threshold-free part of the event-level view: rows sorted by (instance, time), labelled once.

    ``order`` maps sorted rows back to the input rows; ``up`` is False where the instance is down;
    ``truthful`` and ``censored`` are the labels of the horizon; ``counted`` the failures counted.
    """

    instance: np.ndarray
    times: pd.Series
    order: np.ndarray
    up: np.ndarray
    truthful: np.ndarray
    censored: np.ndarray
    same_instance: np.ndarray
    counted: pd.DataFrame
    window: pd.Timedelta


class Events(NamedTuple):
    """What the alerts of one scorer at one threshold did: per row, and per counted failure."""

    alert: np.ndarray
    true_starts: np.ndarray
    false_starts: np.ndarray
    leads: pd.Series


def event_frame(scores: pd.DataFrame, failures: pd.DataFrame, horizon_minutes: int) -> EventFrame:
    """Sort and label the rows of ``scores`` (``instance_id``, ``event_timestamp``) once for any threshold."""
    for column in ("instance_id", "event_timestamp"):
        if column not in scores.columns:
            raise InputError(f"scores frame has no column '{column}'", field=column)
    window = pd.Timedelta(minutes=int(horizon_minutes))
    keys = pd.DataFrame(
        {
            "instance_id": scores["instance_id"].astype(str).to_numpy(),
            "event_timestamp": pd.to_datetime(scores["event_timestamp"], utc=True).to_numpy(),
        }
    )
    order = np.lexsort((keys["event_timestamp"].to_numpy(), keys["instance_id"].to_numpy()))
    frame = keys.iloc[order].reset_index(drop=True)
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    fails = failures.assign(
        instance_id=failures["instance_id"].astype(str), timestamp=pd.to_datetime(failures["timestamp"], utc=True)
    )
    start, end = frame["event_timestamp"].min(), frame["event_timestamp"].max()
    counted = fails[(fails["timestamp"] > start) & (fails["timestamp"] <= end + window)]
    labelled = make_labels(frame, fails, [horizon_minutes])  # drops rows where the instance is down
    up = frame.index.isin(labelled.index)
    truthful = labelled[label_column(horizon_minutes)].reindex(frame.index).fillna(0).to_numpy().astype(bool)
    censored = labelled[censored_column(horizon_minutes)].reindex(frame.index).fillna(False).to_numpy().astype(bool)
    instance = frame["instance_id"].to_numpy()
    same = np.r_[False, instance[1:] == instance[:-1]]
    return EventFrame(instance, frame["event_timestamp"], order, up, truthful, censored, same, counted, window)


def events_at(ef: EventFrame, probability: np.ndarray, threshold: float) -> Events:
    """The alerts at ``threshold`` of scores given in the input order of :func:`event_frame`."""
    alert = (np.asarray(probability)[ef.order] >= threshold) & ef.up
    alerts = pd.DataFrame(
        {"instance_id": ef.instance[alert], "event_timestamp": ef.times[alert].reset_index(drop=True)}
    )
    leads = _lead_times(alerts, ef.counted, ef.window)
    return Events(
        alert=alert,
        true_starts=_run_starts(alert & ef.truthful, ef.same_instance),
        false_starts=_run_starts(alert & ~ef.truthful & ~ef.censored, ef.same_instance),
        leads=leads,
    )


def summarise_events(ef: EventFrame, events: Events, threshold: float) -> dict[str, Any]:
    """Event recall, alert precision, median lead and the raw counts of :func:`events_at`."""
    false_alarms, true_runs = int(events.false_starts.sum()), int(events.true_starts.sum())
    n_caught = int(events.leads.notna().sum())
    n_failures = len(ef.counted)
    return {
        "event_recall": n_caught / n_failures if n_failures else None,
        "alert_precision": true_runs / (true_runs + false_alarms) if true_runs + false_alarms else None,
        "median_lead_minutes": float(events.leads.dropna().median()) if n_caught else None,
        "n_failures": n_failures,
        "n_caught": n_caught,
        "n_false_alarms": false_alarms,
        "n_alerts": int(events.alert.sum()),
        "threshold": float(threshold),
    }


def event_metrics(
    scores: pd.DataFrame, failures: pd.DataFrame, *, threshold: float, horizon_minutes: int
) -> dict[str, Any]:
    """Event recall, alert precision, PR-AUC, median lead time and Brier score of a score frame.

    Args:
        scores: ``instance_id``, ``event_timestamp``, ``probability``.
        failures: ``instance_id``, ``timestamp`` (optional ``recovery_minutes``), the dataset's failures.
        threshold: the operating threshold; scores at or above it are alerts.
        horizon_minutes: H.
    """
    if "probability" not in scores.columns:
        raise InputError("scores frame has no column 'probability'", field="probability")
    ef = event_frame(scores, failures, horizon_minutes)
    probability = scores["probability"].to_numpy(dtype=float)
    out = summarise_events(ef, events_at(ef, probability, threshold), threshold)
    known = ef.up & ~ef.censored
    y, p = ef.truthful[known].astype(float), probability[ef.order][known]
    out["pr_auc"] = pr_auc(y, p) if y.sum() else None
    out["brier"] = brier(y, p) if len(y) else None
    out["n_samples"] = len(y)
    out["prevalence"] = float(y.mean()) if len(y) else None
    return out


def event_lead_times(
    scores: pd.DataFrame, failures: pd.DataFrame, *, threshold: float, horizon_minutes: int
) -> np.ndarray:
    """Lead times in minutes of the caught failures (those counted by :func:`event_metrics`), for plots."""
    ef = event_frame(scores, failures, horizon_minutes)
    leads = events_at(ef, scores["probability"].to_numpy(dtype=float), threshold).leads
    return leads.dropna().to_numpy(dtype=float)


def _lead_times(alerts: pd.DataFrame, failures: pd.DataFrame, window: pd.Timedelta) -> pd.Series:
    """Minutes from the first alert in [t - H, t) to each failure t; NaN when no alert fired there."""
    if failures.empty:
        return pd.Series(dtype=float)
    times = failures["timestamp"].reset_index(drop=True)
    joined = pd.DataFrame({"instance_id": failures["instance_id"].to_numpy(), "failed": times}).reset_index()
    joined = joined.merge(alerts, on="instance_id", how="left")
    inside = (joined["event_timestamp"] >= joined["failed"] - window) & (joined["event_timestamp"] < joined["failed"])
    first = joined[inside].groupby("index")["event_timestamp"].min().reindex(times.index)
    lead = times - first
    return lead.dt.total_seconds() / 60.0


def static_baseline(features: pd.DataFrame, thresholds: Mapping[str, float]) -> pd.DataFrame:
    """A fixed-rule score: 1.0 where any named feature is above its threshold, else 0.0.

    Evaluate it like the model, with ``event_metrics(..., threshold=0.5, ...)``. For example
    ``{"memory_mean": 0.9, "error_rate": 5.0}``.

    Returns:
        ``instance_id``, ``event_timestamp``, ``probability``.
    """
    if not thresholds:
        raise InputError("static baseline needs at least one feature threshold", field="thresholds")
    alert = pd.Series(False, index=features.index)
    for column, limit in thresholds.items():
        if column not in features.columns:
            raise InputError(
                f"feature frame has no column '{column}'",
                field=column,
                allowed=[c for c in features.columns if c not in ("instance_id", "event_timestamp")],
            )
        alert |= features[column].to_numpy(dtype=float) > float(limit)
    return pd.DataFrame(
        {
            "instance_id": features["instance_id"].to_numpy(),
            "event_timestamp": features["event_timestamp"].to_numpy(),
            "probability": alert.astype(float).to_numpy(),
        }
    )
