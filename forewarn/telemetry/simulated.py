"""Telemetry served from a Dataset already in memory, such as the one the simulator (forewarn.sim) makes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pandas as pd

from forewarn.dataset import Dataset
from forewarn.telemetry.base import window


class SimulatorSource:
    """Serves ``dataset.telemetry`` sliced by time, as a live agent would, without copying it.

    Args:
        dataset: a Dataset whose telemetry timestamps are ``datetime64[ns, UTC]``.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def read(
        self,
        start: datetime,
        end: datetime,
        *,
        step_minutes: int,
        instance_ids: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Telemetry in ``[start, end)`` averaged per instance and step (see TelemetrySource)."""
        return window(self.dataset.telemetry, start, end, step_minutes=step_minutes, instance_ids=instance_ids)
