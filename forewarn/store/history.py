"""Bulk save and load of the dataset tables (telemetry, failures, errors, workloads) as pandas frames.

:class:`HistoryStore` is the dataset half of the repository: telemetry (:mod:`forewarn.store.telemetry`) and
events (:mod:`forewarn.store.events`), sharing one transaction per thread (:mod:`forewarn.store.bulk`).
Frames use the dataset format of :mod:`forewarn.dataset`: timestamps ``datetime64[ns, UTC]``, telemetry
wide (``instance_id``, ``timestamp``, one column per metric).
"""

from __future__ import annotations

from sqlalchemy import delete

from forewarn.store.events import EventHistory
from forewarn.store.models import ErrorEventRow, FailureEventRow, TelemetryBatchRow, TelemetrySampleRow, WorkloadRow
from forewarn.store.telemetry import TelemetryHistory


class HistoryStore(TelemetryHistory, EventHistory):
    """The dataset half of the repository. Needs ``self.engine``.

    Writes go through :meth:`transaction`: inside a ``with store.transaction():`` block every save (and the
    reads that decide what is new) shares one connection and commits once, so a batch is stored whole or
    not at all; outside it each save is its own transaction.
    """

    def clear_history(self) -> None:
        """Delete every telemetry batch, sample and event (plans and the journal stay)."""
        with self.transaction() as conn:
            for table in (TelemetrySampleRow, TelemetryBatchRow, FailureEventRow, ErrorEventRow, WorkloadRow):
                conn.execute(delete(table))
