"""Feedback into training: failures and the journal's action outcomes label the next training set.

Forewarn's own actions change what is observed. When work is migrated off an instance (or it is cordoned or
scaled back) the instance is not healed: it is labelled by what then happened to it.
    failed after the drain: a failure within (t, t+H] makes the row positive, as for any instance.
    healthy after the drain: no failure and the instance was still observed at t+H: the row is negative.
    unknown after the drain: no failure, but the instance left observation (its telemetry stopped, say it
        was retired) before t+H: the row is censored, its label unknown. It is kept and flagged, never
        assumed healthy; training leaves censored rows out of the fit as it does at the end of the data.
Actions that did not take effect (failed, skipped in dry-run, reverted) change nothing: their instances are
labelled like any other. An action's time is its plan's ``created_at`` (simulated time in replays).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from forewarn.model.labels import censored_column, label_column, make_labels
from forewarn.schemas import ActionState, ActionType, Plan

INTERVENTIONS = frozenset({ActionType.MIGRATE, ActionType.CORDON, ActionType.SCALE_BACK})
OUTCOME = "drain_outcome"


def journal_actions(plans: Iterable[Plan]) -> pd.DataFrame:
    """The journal's actions as a frame: ``instance_id``, ``timestamp``, ``type``, ``state``, ``action_id``."""
    rows = [
        {
            "instance_id": action.instance_id,
            "timestamp": pd.Timestamp(plan.created_at),
            "type": action.type.value,
            "state": action.state.value,
            "action_id": action.action_id,
        }
        for plan in plans
        for action in plan.actions
    ]
    columns = ["instance_id", "timestamp", "type", "state", "action_id"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


def drains(actions: pd.DataFrame) -> pd.Series:
    """Instance -> time of its first drain that took effect (a succeeded migrate, cordon or scale-back)."""
    kinds = {t.value for t in INTERVENTIONS}
    took = actions[actions["type"].isin(kinds) & (actions["state"] == ActionState.SUCCEEDED.value)]
    times = pd.to_datetime(took["timestamp"], utc=True)
    return times.groupby(took["instance_id"].astype(str)).min()


def feedback_labels(
    entities: pd.DataFrame,
    failures: pd.DataFrame,
    actions: pd.DataFrame,
    horizons_minutes: Sequence[int],
    *,
    data_end: pd.Timestamp | None = None,
    last_seen: Mapping[str, pd.Timestamp] | None = None,
) -> pd.DataFrame:
    """:func:`make_labels`, then the rows of drained instances relabelled by what happened after the drain.

    Args:
        entities: ``instance_id``, ``event_timestamp`` (other columns are kept).
        failures: ``instance_id``, ``timestamp`` (optional ``recovery_minutes``): every failure seen.
        actions: the journal's actions (:func:`journal_actions`).
        horizons_minutes: the horizons H.
        data_end: end of observation of the fleet; default the latest time in ``entities`` or ``failures``.
        last_seen: instance -> its last observation (last telemetry); default its last row in ``entities``.

    Returns:
        Like :func:`make_labels`, plus ``drain_outcome``: ``failed``, ``healthy`` or ``unknown`` for rows
        whose first horizon's window (t, t+H] reaches past their instance's drain, else empty.
    """
    out = make_labels(entities, failures, horizons_minutes, data_end=data_end)
    out[OUTCOME] = ""
    drained = drains(actions)
    if drained.empty:
        return out
    instance = out["instance_id"]
    drain_at = instance.map(drained)
    seen = out.groupby("instance_id")["event_timestamp"].transform("max")
    if last_seen:
        given = instance.map({str(k): pd.Timestamp(v) for k, v in last_seen.items()})
        seen = pd.to_datetime(given, utc=True).fillna(seen)
    for position, horizon in enumerate(horizons_minutes):
        end = out["event_timestamp"] + pd.Timedelta(minutes=int(horizon))
        after = drain_at.notna() & (end > drain_at)
        label, censored = label_column(horizon), censored_column(horizon)
        unknown = after & (out[label] == 0) & (end > seen)
        out[censored] = out[censored] | unknown
        if position == 0:
            outcome = np.where(out[label] == 1, "failed", np.where(out[censored], "unknown", "healthy"))
            out[OUTCOME] = np.where(after, outcome, "")
    return out
