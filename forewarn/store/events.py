"""Failures, error events and workloads in the history database, as frames of the dataset format.

Failures are kept once per (instance, time): ``save_failures`` drops rows already stored (at microsecond
precision, the database's), so a source may report the same failure on every pull. A failure is *open* while
its ``recovery_minutes`` is NULL; ``record_recoveries`` closes open ones when a source learns the recovery later.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

import numpy as np
import pandas as pd
from sqlalchemy import Table, and_, bindparam, func, or_, select, union_all, update
from sqlalchemy.sql import Executable

from forewarn.store.bulk import KEYS, Transactional, frame_records, read_frame
from forewarn.store.models import ErrorEventRow, FailureEventRow, WorkloadRow

FAILURE_COLUMNS = ["instance_id", "timestamp", "type", "root_cause", "recovery_minutes"]
ERROR_COLUMNS = ["instance_id", "timestamp", "severity", "category", "message"]
WORKLOAD_COLUMNS = ["task_id", "instance_id", "start", "end", "cpu", "memory", "kind", "data_size", "expected_duration"]


class EventHistory(Transactional):
    """Failures, errors and workloads: the events half of :class:`forewarn.store.history.HistoryStore`."""

    def save_failures(self, frame: pd.DataFrame) -> int:
        """Store failures not stored yet (same instance and time); returns how many rows were added."""
        frame = frame.assign(**{c: frame.get(c, d) for c, d in (("type", "unknown"), ("root_cause", "undetermined"))})
        if "recovery_minutes" not in frame:
            frame = frame.assign(recovery_minutes=np.nan)
        return self._insert(FailureEventRow, self._new_failures(frame), FAILURE_COLUMNS)

    def _new_failures(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``frame`` whose (instance, time) is neither stored nor repeated earlier in the frame."""
        if frame.empty:
            return frame
        stamps = pd.to_datetime(frame["timestamp"], utc=True).dt.floor("us")
        frame = frame.assign(timestamp=stamps, instance_id=frame["instance_id"].astype(str))
        frame = frame.drop_duplicates(KEYS, keep="first")
        f = FailureEventRow
        query = select(f.instance_id, f.timestamp).where(
            f.timestamp >= stamps.min().to_pydatetime(), f.timestamp <= stamps.max().to_pydatetime()
        )
        stored = read_frame(self._bind, query, KEYS)
        if stored.empty:
            return frame
        known = pd.MultiIndex.from_frame(stored.assign(timestamp=stored["timestamp"].dt.floor("us")))
        return frame[~pd.MultiIndex.from_frame(frame[KEYS]).isin(known)]

    def record_recoveries(self, frame: pd.DataFrame) -> int:
        """Set ``recovery_minutes`` of stored open failures, matched by (instance_id, timestamp).

        One UPDATE statement for the whole frame (executemany); a failure whose recovery is already known
        keeps it, so a repeated batch changes nothing. Returns how many failures were closed.
        """
        records = frame_records(frame, ["instance_id", "timestamp", "recovery_minutes"], "failure_events")
        records = [
            {"b_instance": r["instance_id"], "b_time": r["timestamp"], "b_minutes": float(r["recovery_minutes"])}
            for r in records
            if r["recovery_minutes"] is not None and r["timestamp"] is not None
        ]
        if not records:
            return 0
        table = cast(Table, FailureEventRow.__table__)
        statement = (
            update(table)
            .where(
                table.c.instance_id == bindparam("b_instance"),
                table.c.timestamp == bindparam("b_time", type_=table.c.timestamp.type),
                table.c.recovery_minutes.is_(None),
            )
            .values(recovery_minutes=bindparam("b_minutes"))
        )
        with self.transaction() as conn:
            result = conn.execute(statement, records)
        return max(int(result.rowcount or 0), 0)

    def load_failures(self) -> pd.DataFrame:
        """Every stored failure in the dataset format (``failures.csv`` columns), oldest first."""
        f = FailureEventRow
        query = select(f.instance_id, f.timestamp, f.type, f.root_cause, f.recovery_minutes).order_by(f.timestamp, f.id)
        frame = read_frame(self._bind, query, FAILURE_COLUMNS)
        frame["recovery_minutes"] = frame["recovery_minutes"].astype(float)
        return frame

    def open_failures(self, since: datetime | None = None) -> pd.DataFrame:
        """Failures with no recovery yet and, with ``since``, also every failure at or after ``since``.

        What a failure detector needs to know to report each failure once: which instances are down as far as
        the history knows, and which recent failures it already holds.
        """
        f = FailureEventRow
        query = select(f.instance_id, f.timestamp, f.type, f.root_cause, f.recovery_minutes)
        if since is not None:
            query = query.where(or_(f.recovery_minutes.is_(None), f.timestamp >= since))
        else:
            query = query.where(f.recovery_minutes.is_(None))
        frame = read_frame(self._bind, query.order_by(f.timestamp, f.id), FAILURE_COLUMNS)
        frame["recovery_minutes"] = frame["recovery_minutes"].astype(float)
        return frame

    def save_errors(self, frame: pd.DataFrame) -> int:
        return self._insert(ErrorEventRow, frame, ERROR_COLUMNS)

    def load_errors(self) -> pd.DataFrame:
        e = ErrorEventRow
        query = select(e.instance_id, e.timestamp, e.severity, e.category, e.message).order_by(e.timestamp, e.id)
        return read_frame(self._bind, query, ERROR_COLUMNS)

    def save_workloads(self, frame: pd.DataFrame) -> int:
        defaults = {"kind": "batch", "data_size": np.nan, "expected_duration": np.nan, "end": pd.NaT}
        frame = frame.assign(**{c: v for c, v in defaults.items() if c not in frame})
        return self._insert(WorkloadRow, frame, WORKLOAD_COLUMNS)

    def load_workloads(self) -> pd.DataFrame:
        w = WorkloadRow
        columns = [getattr(w, c) for c in WORKLOAD_COLUMNS]
        frame = read_frame(self._bind, select(*columns).order_by(w.id), WORKLOAD_COLUMNS)
        return frame.astype({c: float for c in ("cpu", "memory", "data_size", "expected_duration")})

    # -- bounded readers: one query each, memory bounded by the window ----------------------------------
    def failures_between(self, start: datetime | None, end: datetime, *, last_before: bool = False) -> pd.DataFrame:
        """Failures with ``start < timestamp <= end``; with ``last_before`` also each instance's latest
        failure at or before ``start`` (what "minutes since failure" looks back to)."""
        f = FailureEventRow
        columns = (f.instance_id, f.timestamp, f.type, f.root_cause, f.recovery_minutes)
        window = f.timestamp <= end if start is None else and_(f.timestamp > start, f.timestamp <= end)
        query: Executable = select(*columns).where(window)
        if last_before and start is not None:
            latest = (
                select(f.instance_id, func.max(f.timestamp).label("at"))
                .where(f.timestamp <= start)
                .group_by(f.instance_id)
                .subquery()
            )
            joined = and_(f.instance_id == latest.c.instance_id, f.timestamp == latest.c.at)
            query = union_all(select(*columns).where(window), select(*columns).join(latest, joined))
        frame = read_frame(self._bind, query, FAILURE_COLUMNS)
        frame["recovery_minutes"] = frame["recovery_minutes"].astype(float)
        return frame.sort_values(KEYS, kind="stable").reset_index(drop=True)

    def errors_between(self, start: datetime | None, end: datetime) -> pd.DataFrame:
        """Error events with ``start < timestamp <= end``."""
        e = ErrorEventRow
        query = select(e.instance_id, e.timestamp, e.severity, e.category, e.message).where(e.timestamp <= end)
        if start is not None:
            query = query.where(e.timestamp > start)
        return read_frame(self._bind, query.order_by(e.timestamp, e.id), ERROR_COLUMNS)

    def workloads_between(self, start: datetime | None, end: datetime) -> pd.DataFrame:
        """Tasks running at some time of ``(start, end]``: started by ``end``, not ended by ``start``."""
        w = WorkloadRow
        query = select(*[getattr(w, c) for c in WORKLOAD_COLUMNS]).where(w.start <= end)
        if start is not None:
            query = query.where(or_(w.end.is_(None), w.end > start))
        frame = read_frame(self._bind, query.order_by(w.id), WORKLOAD_COLUMNS)
        return frame.astype({c: float for c in ("cpu", "memory", "data_size", "expected_duration")})
