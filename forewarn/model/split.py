"""Splits by time, never at random: the model is always judged on a period after the one it learnt from."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from forewarn.errors import InputError


def time_split(
    frame: pd.DataFrame,
    *,
    time_col: str = "event_timestamp",
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    gap: pd.Timedelta | None = None,
) -> tuple[pd.DataFrame, ...]:
    """Cut ``frame`` into consecutive periods: by default train, validation (+calibration), test.

    Cut points are quantiles of the rows' times, so each part holds about its fraction of the rows, and all
    rows of one timestamp fall in the same part. Every time of a part is strictly before every time of the
    next. With ``gap`` (use the label horizon H) the rows of the last ``gap`` before each cut are purged
    from the earlier part, so that no label window of an earlier part reaches into a later one.

    Raises:
        InputError: fractions that are not positive or do not sum to 1, a missing column, or a part left
            empty (too few distinct timestamps).
    """
    shares = _shares(frame, time_col, fractions)
    times = pd.to_datetime(frame[time_col], utc=True)
    return _cut(frame, times, _cut_times(times, shares), time_col, fractions, gap)


def _shares(frame: pd.DataFrame, time_col: str, fractions: Sequence[float]) -> np.ndarray:
    if time_col not in frame.columns:
        raise InputError(f"frame has no time column '{time_col}'", field=time_col)
    shares = np.asarray(list(fractions), dtype=float)
    if len(shares) < 2 or (shares <= 0).any() or not np.isclose(shares.sum(), 1.0):
        raise InputError(
            f"fractions must be 2+ positive numbers summing to 1, got {list(fractions)}", field="fractions"
        )
    if frame.empty:
        raise InputError("cannot split an empty frame", field=time_col)
    return shares


def _cut_times(times: pd.Series, shares: np.ndarray) -> list[pd.Timestamp]:
    """The times at the cumulative ``shares`` quantiles of ``times`` (one per boundary between parts)."""
    ordered = times.sort_values().reset_index(drop=True)
    positions = (np.cumsum(shares)[:-1] * len(ordered)).astype(int)
    return [pd.Timestamp(ordered.iloc[min(p, len(ordered) - 1)]) for p in positions]


def _cut(
    frame: pd.DataFrame,
    times: pd.Series,
    cuts: list[pd.Timestamp],
    time_col: str,
    fractions: Sequence[float],
    gap: pd.Timedelta | None,
) -> tuple[pd.DataFrame, ...]:
    bounds: list[pd.Timestamp | None] = [None, *cuts, None]
    parts = []
    for i in range(len(cuts) + 1):
        lower, upper = bounds[i], bounds[i + 1]
        mask = pd.Series(True, index=frame.index)
        if lower is not None:
            mask &= times >= lower
        if upper is not None:
            mask &= times < (upper - gap if gap is not None else upper)
        part = frame.loc[mask]
        if part.empty:
            raise InputError(
                f"time split left part {i + 1} of {len(cuts) + 1} empty: {times.nunique()} distinct timestamps "
                f"are too few for fractions {list(fractions)}" + (f" with gap {gap}" if gap is not None else ""),
                field=time_col,
            )
        parts.append(part)
    return tuple(parts)


def failure_split(
    frame: pd.DataFrame,
    label_column: str,
    *,
    time_col: str = "event_timestamp",
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    gap: pd.Timedelta | None = None,
) -> tuple[pd.DataFrame, ...]:
    """Like :func:`time_split`, but cut at quantiles of the failure-labelled rows' times, so that each part
    holds about its fraction of the failures rather than of the rows.

    For data whose rows crowd into one period (Backblaze's healthy drives all report in the last ten days
    of the year, its failed drives throughout it), where cuts by rows leave a period without failures.
    """
    shares = _shares(frame, time_col, fractions)
    positive = pd.to_numeric(frame[label_column], errors="coerce") == 1
    times = pd.to_datetime(frame[time_col], utc=True)
    if times[positive].nunique() < len(fractions):
        raise InputError(
            f"failures at {times[positive].nunique()} distinct times are too few to give each of "
            f"{len(fractions)} periods some; more data or a longer horizon is needed",
            field=label_column,
        )
    return _cut(frame, times, _cut_times(times[positive], shares), time_col, fractions, gap)
