"""Failure labels for entity rows: did the instance fail within H minutes after t?"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from forewarn.errors import InputError

ENTITY_KEYS = ("instance_id", "event_timestamp")


def label_column(horizon_minutes: int) -> str:
    """The name of the label column for a horizon, such as ``label_60m``."""
    return f"label_{int(horizon_minutes)}m"


def censored_column(horizon_minutes: int) -> str:
    """The name of the censoring flag for a horizon, such as ``censored_60m``."""
    return f"censored_{int(horizon_minutes)}m"


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True)


def _check(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    for column in columns:
        if column not in frame.columns:
            raise InputError(f"{name} frame has no column '{column}'", field=column, allowed=list(columns))


def _next_failure(entities: pd.DataFrame, failures: pd.DataFrame) -> pd.Series:
    """For each entity row, the time of the instance's first failure strictly after event_timestamp."""
    left = entities[["instance_id", "event_timestamp", "_row"]].sort_values("event_timestamp")
    right = failures[["instance_id", "timestamp"]].rename(columns={"timestamp": "_next"})
    right = right.assign(_key=right["_next"]).sort_values("_key")
    merged = pd.merge_asof(
        left,
        right,
        left_on="event_timestamp",
        right_on="_key",
        by="instance_id",
        direction="forward",
        allow_exact_matches=False,
    )
    return merged.set_index("_row")["_next"].reindex(entities["_row"]).set_axis(entities.index)


def _in_downtime(entities: pd.DataFrame, failures: pd.DataFrame) -> pd.Series:
    """True where the row falls in [failure, failure + recovery_minutes) of its instance."""
    if "recovery_minutes" not in failures.columns:
        return pd.Series(False, index=entities.index)
    recovery = pd.to_numeric(failures["recovery_minutes"], errors="coerce").fillna(0.0)
    right = pd.DataFrame(
        {
            "instance_id": failures["instance_id"],
            "_key": failures["timestamp"],
            "_up": failures["timestamp"] + pd.to_timedelta(recovery, unit="min"),
        }
    ).sort_values("_key")
    left = entities[["instance_id", "event_timestamp", "_row"]].sort_values("event_timestamp")
    merged = pd.merge_asof(
        left,
        right,
        left_on="event_timestamp",
        right_on="_key",
        by="instance_id",
        direction="backward",
    )
    down = merged["_up"].notna() & (merged["event_timestamp"] < merged["_up"])
    return down.set_axis(merged["_row"]).reindex(entities["_row"]).set_axis(entities.index)


def make_labels(
    entities: pd.DataFrame,
    failures: pd.DataFrame,
    horizons_minutes: Sequence[int],
    *,
    data_end: pd.Timestamp | None = None,
    drop_censored: bool = False,
) -> pd.DataFrame:
    """Label entity rows with failures within each horizon.

    For each H adds ``label_<H>m`` (int 0/1): 1 when the instance has a failure at a time in (t, t+H].
    Adds ``censored_<H>m`` (bool): True when t+H > data_end and no failure was seen in (t, data_end];
    such a row's label is 0 but unknown. With ``drop_censored`` the rows censored for any horizon are
    dropped instead (and the flags are still present, all False). Rows at which the instance is down
    (in [failure, failure + recovery_minutes) when ``failures`` has ``recovery_minutes``) are dropped.

    Args:
        entities: ``instance_id``, ``event_timestamp`` and any other columns, which are kept.
        failures: ``instance_id``, ``timestamp`` (the dataset's failures table); optional ``recovery_minutes``.
        horizons_minutes: the horizons H, positive minutes.
        data_end: the end of observation; default the latest timestamp in ``entities`` or ``failures``.
        drop_censored: drop censored rows rather than flag them.

    Returns:
        A copy of ``entities`` (original order, downtime rows removed) with the new columns.
    """
    _check(entities, ENTITY_KEYS, "entities")
    _check(failures, ("instance_id", "timestamp"), "failures")
    if not horizons_minutes or any(int(h) <= 0 for h in horizons_minutes):
        raise InputError(f"horizons must be positive minutes, got {list(horizons_minutes)}", field="horizons")
    out = entities.copy()
    out["event_timestamp"] = _utc(out["event_timestamp"])
    fails = failures.assign(timestamp=_utc(failures["timestamp"]), instance_id=failures["instance_id"].astype(str))
    out["_row"] = np.arange(len(out))
    out["instance_id"] = out["instance_id"].astype(str)
    end = pd.Timestamp(data_end) if data_end is not None else _default_end(out, fails)
    if end.tzinfo is None:
        end = end.tz_localize("UTC")
    next_failure = _next_failure(out, fails)
    keep = ~_in_downtime(out, fails).astype(bool)
    any_censored = pd.Series(False, index=out.index)
    for horizon in horizons_minutes:
        window = pd.Timedelta(minutes=int(horizon))
        positive = next_failure.notna() & (next_failure <= out["event_timestamp"] + window)
        censored = ~positive & (out["event_timestamp"] + window > end)
        out[label_column(horizon)] = positive.astype(int)
        out[censored_column(horizon)] = censored.astype(bool)
        any_censored |= censored
    if drop_censored:
        keep &= ~any_censored
    out = out.loc[keep].drop(columns="_row")
    return out


def _default_end(entities: pd.DataFrame, failures: pd.DataFrame) -> pd.Timestamp:
    ends = [entities["event_timestamp"].max()]
    if len(failures):
        ends.append(failures["timestamp"].max())
    return pd.Timestamp(max(ends))
