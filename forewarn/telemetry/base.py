"""The telemetry source protocol and the slicing and bucketing every in-memory source shares."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

import pandas as pd

from forewarn.dataset import TELEMETRY_KEYS
from forewarn.errors import InputError


@runtime_checkable
class TelemetrySource(Protocol):
    """Anything that serves telemetry in the dataset format for a time range."""

    def read(
        self,
        start: datetime,
        end: datetime,
        *,
        step_minutes: int,
        instance_ids: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Telemetry with ``timestamp`` in ``[start, end)``, one row per instance and step.

        Returns:
            ``instance_id``, ``timestamp`` (``datetime64[ns, UTC]``, the start of each step), then one float
            column per metric, sorted by instance and time.
        """
        ...


def utc(moment: datetime | pd.Timestamp, *, name: str = "timestamp") -> pd.Timestamp:
    """``moment`` as a UTC pandas Timestamp; naive values are refused rather than guessed."""
    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is None:
        raise InputError("must carry a time zone (for example datetime(..., tzinfo=UTC))", field=name)
    return stamp.tz_convert("UTC")


def check_step(step_minutes: int) -> None:
    if not isinstance(step_minutes, int) or step_minutes <= 0:
        raise InputError(f"{step_minutes!r} is not a positive whole number of minutes", field="step_minutes")


def window(
    frame: pd.DataFrame,
    start: datetime,
    end: datetime,
    *,
    step_minutes: int,
    instance_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Rows of ``frame`` in ``[start, end)`` (and in ``instance_ids``), averaged per instance and step."""
    check_step(step_minutes)
    lo, hi = utc(start, name="start"), utc(end, name="end")
    if hi <= lo:
        raise InputError(f"end {hi.isoformat()} is not after start {lo.isoformat()}", field="end")
    mask = (frame["timestamp"] >= lo) & (frame["timestamp"] < hi)
    if instance_ids is not None:
        mask &= frame["instance_id"].isin(list(instance_ids))
    sliced = frame.loc[mask]
    metrics = [c for c in frame.columns if c not in TELEMETRY_KEYS]
    if sliced.empty:
        return pd.DataFrame(
            {"instance_id": pd.Series(dtype=str), "timestamp": pd.Series(dtype="datetime64[ns, UTC]")}
            | {m: pd.Series(dtype=float) for m in metrics}
        )
    step = sliced["timestamp"].dt.floor(f"{step_minutes}min")
    grouped = sliced[metrics].astype(float).groupby([sliced["instance_id"], step.rename("timestamp")]).mean()
    return grouped.reset_index().sort_values(["instance_id", "timestamp"], kind="stable").reset_index(drop=True)
