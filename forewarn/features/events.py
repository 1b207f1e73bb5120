"""Features from discrete events: error counts by category, time since the last failure and since boot.

Every feature at ``event_timestamp`` t uses only events strictly before t (failures, boots, recoveries) or
at most t (errors, like the telemetry windows ``(t - w, t]``), so nothing from after t leaks in.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forewarn.telemetry.logformats import CATEGORIES

ERROR_CATEGORIES = CATEGORIES
"""Error categories counted (those the log parser assigns); any other category is counted as ``other``."""

ERROR_WINDOWS = {"1h": 60, "6h": 360}
"""Windows (minutes) over which errors are counted."""

EVENT_FEATURES = ("minutes_since_failure", "minutes_since_boot")


def error_feature_names() -> list[str]:
    """Names of the error-count features, in output order."""
    return [f"err_{category}_{window}" for category in ERROR_CATEGORIES for window in ERROR_WINDOWS]


def _asof(keys: pd.DataFrame, events: pd.DataFrame, column: str, *, offset: pd.Timedelta, exact: bool) -> pd.DataFrame:
    """For each key row, the last event row of the same instance at or before ``event_timestamp - offset``.

    Args:
        keys: ``instance_id``, ``event_timestamp`` (any order); the result is aligned with it.
        events: ``instance_id``, ``column`` (timestamps) and value columns.
        column: the events' time column.
        offset: looked-up time is ``event_timestamp - offset``.
        exact: whether an event exactly at the looked-up time counts.
    """
    left = pd.DataFrame(
        {"instance_id": keys["instance_id"].to_numpy(), "_at": keys["event_timestamp"] - offset, "_row": keys.index}
    )
    left = left.sort_values("_at", kind="stable")
    right = events.sort_values(column, kind="stable")
    merged = pd.merge_asof(
        left,
        right,
        left_on="_at",
        right_on=column,
        by="instance_id",
        direction="backward",
        allow_exact_matches=exact,
    )
    return merged.set_index("_row").reindex(keys.index)


def error_counts(keys: pd.DataFrame, errors: pd.DataFrame | None) -> pd.DataFrame:
    """Errors per category in ``(t - w, t]`` for each window w of :data:`ERROR_WINDOWS`.

    Counts are C(<= t) - C(<= t - w) where C is the instance's cumulative count per category, looked up
    with ``merge_asof``; this stays vectorised for any number of instances.
    """
    names = error_feature_names()
    out = pd.DataFrame(0.0, index=keys.index, columns=names)
    if errors is None or errors.empty:
        return out
    raw = errors["category"] if "category" in errors else pd.Series("other", index=errors.index)
    category = raw.astype(str).str.strip().str.lower()
    category = category.where(category.isin(ERROR_CATEGORIES), "other")
    events = _events(errors["instance_id"], errors["timestamp"])
    for name in ERROR_CATEGORIES:
        events[name] = (category.to_numpy() == name).astype(float)[events.index]
    events = events.sort_values(["instance_id", "_ts"], kind="stable").reset_index(drop=True)
    events[list(ERROR_CATEGORIES)] = events.groupby("instance_id", sort=False)[list(ERROR_CATEGORIES)].cumsum()
    now = _asof(keys, events, "_ts", offset=pd.Timedelta(0), exact=True)
    for window, minutes in ERROR_WINDOWS.items():
        before = _asof(keys, events, "_ts", offset=pd.Timedelta(minutes=minutes), exact=True)
        for name in ERROR_CATEGORIES:
            current = now[name].fillna(0.0).to_numpy()
            past = before[name].fillna(0.0).to_numpy()
            out[f"err_{name}_{window}"] = current - past
    return out


def _minutes_since(keys: pd.DataFrame, events: pd.DataFrame) -> np.ndarray:
    """Minutes from the last event strictly before each key's time (NaN when there is none)."""
    if events.empty:
        return np.full(len(keys), np.nan)
    found = _asof(keys, events, "_ts", offset=pd.Timedelta(0), exact=False)
    delta = keys["event_timestamp"] - found["_ts"]
    return (delta.dt.total_seconds() / 60.0).to_numpy(dtype=float)


def _events(instance_id: pd.Series, timestamp: pd.Series) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "instance_id": instance_id.astype(str).reset_index(drop=True),
            "_ts": pd.to_datetime(timestamp, utc=True).astype("datetime64[ns, UTC]").reset_index(drop=True),
        }
    )
    return frame.dropna(subset=["_ts"])


def event_features(keys: pd.DataFrame, failures: pd.DataFrame | None, instances: pd.DataFrame | None) -> pd.DataFrame:
    """``minutes_since_failure`` and ``minutes_since_boot`` for each key row (NaN when unknown).

    A boot is ``instances.boot_time`` or the end of a recovery (failure time plus ``recovery_minutes``,
    0 when unknown); both only count when strictly before the key's time.
    """
    out = pd.DataFrame(index=keys.index)
    empty = _events(pd.Series([], dtype=str), pd.Series([], dtype="datetime64[ns, UTC]"))
    fail = empty
    ups = [empty]
    if failures is not None and not failures.empty:
        fail = _events(failures["instance_id"], failures["timestamp"])
        recovery = failures.get("recovery_minutes", pd.Series(0.0, index=failures.index))
        minutes = pd.to_numeric(recovery, errors="coerce").fillna(0.0).to_numpy()
        ends = pd.to_datetime(failures["timestamp"], utc=True) + pd.to_timedelta(minutes, unit="min")
        ups.append(_events(failures["instance_id"], ends))
    if instances is not None and "boot_time" in instances:
        boot = pd.to_datetime(instances["boot_time"], utc=True, errors="coerce")
        ups.append(_events(instances["instance_id"], boot))
    out["minutes_since_failure"] = _minutes_since(keys, fail)
    out["minutes_since_boot"] = _minutes_since(keys, pd.concat(ups, ignore_index=True))
    return out
