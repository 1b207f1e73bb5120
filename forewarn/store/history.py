"""Bulk save and load of the dataset tables (telemetry, failures, errors, workloads) as pandas frames.

Frames use the dataset format of :mod:`forewarn.dataset`: timestamps ``datetime64[ns, UTC]``, telemetry
wide (``instance_id``, ``timestamp``, one column per metric). Inserts go through SQLAlchemy's executemany.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.sql import Executable

from forewarn.errors import InputError
from forewarn.schemas import new_id, utcnow
from forewarn.store.models import ErrorEventRow, FailureEventRow, TelemetryBatchRow, TelemetrySampleRow, WorkloadRow

KEYS = ["instance_id", "timestamp"]
FAILURE_COLUMNS = ["instance_id", "timestamp", "type", "root_cause", "recovery_minutes"]
ERROR_COLUMNS = ["instance_id", "timestamp", "severity", "category", "message"]
WORKLOAD_COLUMNS = ["task_id", "instance_id", "start", "end", "cpu", "memory", "kind", "data_size", "expected_duration"]
TIME_COLUMNS = {"timestamp", "start", "end"}


def _records(frame: pd.DataFrame, columns: Sequence[str], table: str) -> list[dict[str, Any]]:
    """Rows as plain dicts: aware datetimes, None for NaN/NaT."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"frame for {table} lacks column(s) {', '.join(missing)}", field=missing[0])
    out = frame[list(columns)].copy()
    times = {}
    for column in TIME_COLUMNS.intersection(columns):
        stamps = pd.to_datetime(out[column], utc=True)
        converted = pd.Series(stamps.array.to_pydatetime(), index=out.index, dtype=object)  # vectorised
        times[column] = converted.where(stamps.notna(), None)
    objects = out.drop(columns=list(times)).astype(object).where(out.notna(), None)
    for column, values in times.items():
        objects[column] = values
    return objects[list(columns)].to_dict("records")


def _frame(engine: Engine, query: Executable, columns: Sequence[str]) -> pd.DataFrame:
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=list(columns))
    for column in TIME_COLUMNS.intersection(columns):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


class HistoryStore:
    """The dataset half of the repository. Needs ``self.engine``."""

    engine: Engine

    def save_telemetry(
        self, frame: pd.DataFrame, *, source: str, batch_id: str | None = None, quarantined: int = 0
    ) -> str:
        """Store a wide telemetry frame as one batch; returns the batch id. NaN cells (gaps) are not stored."""
        batch_id = batch_id or new_id("batch")
        metrics = [c for c in frame.columns if c not in KEYS]
        long = frame.melt(id_vars=KEYS, value_vars=metrics, var_name="metric", value_name="value").dropna()
        long["metric"] = long["metric"].astype(str)
        long["value"] = long["value"].astype(float)
        times = pd.to_datetime(frame["timestamp"], utc=True)
        batch = {
            "batch_id": batch_id,
            "source": source,
            "row_count": len(frame),
            "quarantined_count": quarantined,
            "start": times.min().to_pydatetime() if len(frame) else None,
            "end": times.max().to_pydatetime() if len(frame) else None,
            "created_at": utcnow(),
        }
        with self.engine.begin() as conn:
            conn.execute(insert(TelemetryBatchRow), [batch])
            rows = _records(long, ["instance_id", "timestamp", "metric", "value"], "telemetry_samples")
            for row in rows:
                row["batch_id"] = batch_id
            if rows:
                conn.execute(insert(TelemetrySampleRow), rows)
        return batch_id

    def load_telemetry(
        self,
        instance_ids: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        """Telemetry, wide, sorted by instance and time; ``start`` and ``end`` are inclusive."""
        t = TelemetrySampleRow
        query = select(t.instance_id, t.timestamp, t.metric, t.value)
        if instance_ids is not None:
            query = query.where(t.instance_id.in_(list(instance_ids)))
        if start is not None:
            query = query.where(t.timestamp >= start)
        if end is not None:
            query = query.where(t.timestamp <= end)
        long = _frame(self.engine, query.order_by(t.id), [*KEYS, "metric", "value"])
        if long.empty:
            return pd.DataFrame({"instance_id": pd.Series(dtype=str), "timestamp": pd.Series(dtype="M8[ns, UTC]")})
        wide = long.pivot_table(index=KEYS, columns="metric", values="value", aggfunc="last", sort=True)
        wide.columns.name = None
        wide = wide.reset_index().sort_values(KEYS, kind="stable").reset_index(drop=True)
        return wide.astype({c: float for c in wide.columns if c not in KEYS})

    def list_batches(self) -> pd.DataFrame:
        b = TelemetryBatchRow
        query = select(b.batch_id, b.source, b.row_count, b.quarantined_count, b.start, b.end).order_by(b.created_at)
        return _frame(self.engine, query, ["batch_id", "source", "row_count", "quarantined_count", "start", "end"])

    def save_failures(self, frame: pd.DataFrame) -> int:
        frame = frame.assign(**{c: frame.get(c, d) for c, d in (("type", "unknown"), ("root_cause", "undetermined"))})
        if "recovery_minutes" not in frame:
            frame = frame.assign(recovery_minutes=np.nan)
        return self._insert(FailureEventRow, frame, FAILURE_COLUMNS)

    def load_failures(self) -> pd.DataFrame:
        f = FailureEventRow
        query = select(f.instance_id, f.timestamp, f.type, f.root_cause, f.recovery_minutes).order_by(f.timestamp, f.id)
        frame = _frame(self.engine, query, FAILURE_COLUMNS)
        frame["recovery_minutes"] = frame["recovery_minutes"].astype(float)
        return frame

    def save_errors(self, frame: pd.DataFrame) -> int:
        return self._insert(ErrorEventRow, frame, ERROR_COLUMNS)

    def load_errors(self) -> pd.DataFrame:
        e = ErrorEventRow
        query = select(e.instance_id, e.timestamp, e.severity, e.category, e.message).order_by(e.timestamp, e.id)
        return _frame(self.engine, query, ERROR_COLUMNS)

    def save_workloads(self, frame: pd.DataFrame) -> int:
        defaults = {"kind": "batch", "data_size": np.nan, "expected_duration": np.nan, "end": pd.NaT}
        frame = frame.assign(**{c: v for c, v in defaults.items() if c not in frame})
        return self._insert(WorkloadRow, frame, WORKLOAD_COLUMNS)

    def load_workloads(self) -> pd.DataFrame:
        w = WorkloadRow
        columns = [getattr(w, c) for c in WORKLOAD_COLUMNS]
        frame = _frame(self.engine, select(*columns).order_by(w.id), WORKLOAD_COLUMNS)
        return frame.astype({c: float for c in ("cpu", "memory", "data_size", "expected_duration")})

    def clear_history(self) -> None:
        """Delete every telemetry batch, sample and event (plans and the journal stay)."""
        with self.engine.begin() as conn:
            for table in (TelemetrySampleRow, TelemetryBatchRow, FailureEventRow, ErrorEventRow, WorkloadRow):
                conn.execute(delete(table))

    def _insert(self, table: type[Any], frame: pd.DataFrame, columns: Sequence[str]) -> int:
        records = _records(frame, columns, table.__tablename__)
        if records:
            with self.engine.begin() as conn:
                conn.execute(insert(table), records)
        return len(records)
