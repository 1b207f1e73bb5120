"""Telemetry from a dataset directory on disk (``telemetry.csv`` or ``telemetry.parquet``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd

from forewarn.dataset import read_telemetry
from forewarn.errors import DatasetError
from forewarn.telemetry.base import window


class FileSource:
    """Serves the telemetry of a dataset directory, read (and checked) once on first use.

    Args:
        dataset_dir: a directory in the dataset format; only its telemetry file is read.
    """

    def __init__(self, dataset_dir: str | Path) -> None:
        self.dataset_dir = Path(dataset_dir)
        self._frame: pd.DataFrame | None = None

    def _path(self) -> Path:
        for suffix in (".parquet", ".csv"):
            candidate = self.dataset_dir / f"telemetry{suffix}"
            if candidate.exists():
                return candidate
        raise DatasetError("missing telemetry.csv or telemetry.parquet", file=self.dataset_dir)

    @property
    def frame(self) -> pd.DataFrame:
        """The whole telemetry table, as read from disk."""
        if self._frame is None:
            self._frame = read_telemetry(self._path())
        return self._frame

    def read(
        self,
        start: datetime,
        end: datetime,
        *,
        step_minutes: int,
        instance_ids: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Telemetry in ``[start, end)`` averaged per instance and step (see TelemetrySource)."""
        return window(self.frame, start, end, step_minutes=step_minutes, instance_ids=instance_ids)
