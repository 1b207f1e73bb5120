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
    if time_col not in frame.columns:
        raise InputError(f"frame has no time column '{time_col}'", field=time_col)
    shares = np.asarray(list(fractions), dtype=float)
    if len(shares) < 2 or (shares <= 0).any() or not np.isclose(shares.sum(), 1.0):
        raise InputError(
            f"fractions must be 2+ positive numbers summing to 1, got {list(fractions)}", field="fractions"
        )
    if frame.empty:
        raise InputError("cannot split an empty frame", field=time_col)
    times = pd.to_datetime(frame[time_col], utc=True)
    ordered = times.sort_values().reset_index(drop=True)
    positions = (np.cumsum(shares)[:-1] * len(ordered)).astype(int)
    cuts = [pd.Timestamp(ordered.iloc[min(p, len(ordered) - 1)]) for p in positions]
    bounds: list[pd.Timestamp | None] = [None, *cuts, None]
    parts = []
    for i in range(len(shares)):
        lower, upper = bounds[i], bounds[i + 1]
        mask = pd.Series(True, index=frame.index)
        if lower is not None:
            mask &= times >= lower
        if upper is not None:
            mask &= times < (upper - gap if gap is not None else upper)
        part = frame.loc[mask]
        if part.empty:
            raise InputError(
                f"time split left part {i + 1} of {len(shares)} empty: {times.nunique()} distinct timestamps "
                f"are too few for fractions {list(fractions)}" + (f" with gap {gap}" if gap is not None else ""),
                field=time_col,
            )
        parts.append(part)
    return tuple(parts)
