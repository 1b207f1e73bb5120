"""The ``simulated`` source: a dataset directory revealed up to the cycle's time, as a live fleet would be.

The replay and the demo's stand-in for a fleet: each pull returns the telemetry, failures, errors and
workloads (by start) with a time in ``(since, until]`` (``since`` = ``until - lookback``, or everything, on
the first pull), at most ``max_window`` of it, and the fleet's instances on the first pull.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from forewarn.dataset import Dataset, read_dataset
from forewarn.dataset_fleet import instances_from
from forewarn.schemas import Instance
from forewarn.telemetry.sources import Pulled


def _between(frame: pd.DataFrame | None, column: str, lo: pd.Timestamp | None, hi: pd.Timestamp) -> pd.DataFrame | None:
    if frame is None or frame.empty:
        return None
    stamps = pd.to_datetime(frame[column], utc=True)
    mask = stamps <= hi if lo is None else (stamps > lo) & (stamps <= hi)
    return frame.loc[mask].reset_index(drop=True)


class DatasetReplaySource:
    """A :class:`forewarn.telemetry.sources.Source` over a dataset directory (read once per process)."""

    kind = "simulated"

    def __init__(
        self,
        dataset_dir: str | Path,
        *,
        name: str | None = None,
        lookback: timedelta | None = None,
        max_window: timedelta = timedelta(days=1),
    ) -> None:
        self.dataset_dir = Path(dataset_dir)
        self.name = name or f"simulated:{self.dataset_dir}"
        self.lookback, self.max_window = lookback, max_window
        self._dataset: Dataset | None = None

    @property
    def dataset(self) -> Dataset:
        if self._dataset is None:
            self._dataset = read_dataset(self.dataset_dir)
        return self._dataset

    def _instances(self) -> list[Instance]:
        return instances_from(self.dataset)

    def pull(self, since: datetime | None, until: datetime) -> Pulled:
        data = self.dataset
        first = since is None
        if since is None and self.lookback is not None:
            since = until - self.lookback
        if since is None:
            begin = data.telemetry["timestamp"].min() if not data.telemetry.empty else pd.Timestamp(until)
            since = (pd.Timestamp(begin) - pd.Timedelta(microseconds=1)).to_pydatetime()
        end = min(until, since + self.max_window)
        lo = pd.Timestamp(since)
        hi = pd.Timestamp(end)
        lower = None if first and self.lookback is None else lo
        return Pulled(
            until=end,
            telemetry=_between(data.telemetry, "timestamp", lower, hi),
            failures=_between(data.failures, "timestamp", lower, hi),
            errors=_between(data.errors, "timestamp", lower, hi),
            workloads=_between(data.workloads, "start", lower, hi),
            instances=self._instances() if first else [],
        )
