"""Telemetry in the history database: batches of samples, stored long, read back as the dataset's wide frame.

Each batch (one import) has a row in ``telemetry_batches``; its samples (instance, time, metric, value) are
rows of ``telemetry_samples``, inserted in bulk (``COPY`` on Postgres). Reads pivot them back to the wide
format (``instance_id``, ``timestamp``, one column per metric); the bounded readers (``*_between``) are one
query each, their memory bounded by the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import repeat
from operator import itemgetter
from typing import Any, cast

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, String, func, insert, select, type_coerce
from sqlalchemy.sql import Executable

from forewarn.redact import redact
from forewarn.schemas import new_id, utcnow
from forewarn.store.bulk import KEYS, Transactional, frame_records, read_frame
from forewarn.store.models import TelemetryBatchRow, TelemetrySampleRow


def empty_wide() -> pd.DataFrame:
    return pd.DataFrame({"instance_id": pd.Series(dtype=str), "timestamp": pd.Series(dtype="M8[ns, UTC]")})


class _Codes:
    """Integer codes for a repeated key (instance, time, metric), given in order of first appearance across
    the chunks of a read, so only the distinct keys are kept as Python objects."""

    def __init__(self) -> None:
        self.index: dict[Any, int] = {}

    def codes(self, column: list[Any]) -> np.ndarray:
        local, uniques = pd.factorize(np.asarray(column, dtype=object))
        known = (self.index.setdefault(u, len(self.index)) for u in uniques)
        return np.fromiter(known, dtype=np.int64, count=len(uniques))[local]

    def in_order(self, codes: np.ndarray) -> tuple[np.ndarray, list[Any]]:
        """The codes renumbered in the keys' sort order (ISO text and datetimes both sort by time)."""
        names = list(self.index)
        order = sorted(range(len(names)), key=names.__getitem__)
        rank = np.empty(len(names), dtype=np.int64)
        rank[order] = np.arange(len(names))
        return rank[codes], [names[i] for i in order]


def telemetry_wide(engine: Engine, query: Executable, chunk: int = 500_000) -> pd.DataFrame:
    """The rows of a telemetry query (id, instance, time, metric, value) as the dataset's wide frame,
    sorted by instance and time, metrics in name order; of repeated (instance, time, metric) rows the one
    stored last wins.

    The driver's rows are fetched a chunk at a time and turned into integer codes and floats at once (no
    row objects, no per-row type conversion, no per-row strings kept), and only the distinct times are
    parsed: memory stays a few numbers per sample.
    """
    keys = {"instance": _Codes(), "time": _Codes(), "metric": _Codes()}
    parts: dict[str, list[np.ndarray]] = {name: [] for name in ("id", "instance", "time", "metric", "value")}
    with engine.connect() as conn:
        cursor = cast(Any, conn.execute(query)).cursor
        while cursor is not None and (rows := cursor.fetchmany(chunk)):
            parts["id"].append(np.fromiter(map(itemgetter(0), rows), dtype=np.int64, count=len(rows)))
            for position, name in enumerate(("instance", "time", "metric"), start=1):
                parts[name].append(keys[name].codes([*map(itemgetter(position), rows)]))
            parts["value"].append(np.fromiter(map(itemgetter(4), rows), dtype=float, count=len(rows)))
    if not parts["id"]:
        return empty_wide()
    instance, instances = keys["instance"].in_order(np.concatenate(parts["instance"]))
    when, moments = keys["time"].in_order(np.concatenate(parts["time"]))
    metric, metrics = keys["metric"].in_order(np.concatenate(parts["metric"]))
    values, ids = np.concatenate(parts["value"]), np.concatenate(parts["id"])
    order = np.lexsort((when, instance))
    first = np.r_[True, (np.diff(instance[order]) != 0) | (np.diff(when[order]) != 0)]
    row = np.empty(len(order), dtype=np.int64)
    row[order] = np.cumsum(first) - 1
    cell = row * len(metrics) + metric
    if np.bincount(cell).max() > 1:  # a sample stored twice: keep the one stored last
        later = np.argsort(ids, kind="stable")
        keep = later[len(later) - 1 - np.unique(cell[later][::-1], return_index=True)[1]]
        row, metric, values = row[keep], metric[keep], values[keep]
    table = np.full((int(first.sum()), len(metrics)), np.nan)
    table[row, metric] = values
    rows_at = order[first]
    text = isinstance(moments[0], str)  # SQLite's stored text; Postgres gives datetimes
    stamps = pd.to_datetime(pd.Series(moments), utc=True, format="ISO8601" if text else None)
    wide = pd.DataFrame(table, columns=[str(m) for m in metrics])
    wide.insert(0, "timestamp", stamps.astype("datetime64[ns, UTC]").iloc[when[rows_at]].reset_index(drop=True))
    wide.insert(0, "instance_id", np.asarray(instances, dtype=object)[instance[rows_at]])
    return wide


SAMPLE_COLUMNS = ("batch_id", "instance_id", "timestamp", "metric", "value")
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"
"""How SQLAlchemy's ``DateTime`` stores a (naive UTC) time on SQLite: the same text its bound parameters use."""


def _insert_samples(conn: Connection, batch_id: str, long: pd.DataFrame) -> None:
    """Bulk insert of long telemetry rows: the driver's executemany of plain tuples on SQLite, ``COPY`` on
    Postgres (psycopg 3), SQLAlchemy's executemany elsewhere; times converted once for the whole frame."""
    stamps = pd.to_datetime(long["timestamp"], utc=True)
    ids, metrics = long["instance_id"].astype(str).tolist(), long["metric"].tolist()
    values = long["value"].astype(float).tolist()
    dialect = conn.dialect.name
    if dialect == "sqlite":
        times = stamps.dt.tz_localize(None).dt.strftime(SQLITE_TIME).tolist()
        marks = ", ".join("?" * len(SAMPLE_COLUMNS))
        statement = f"INSERT INTO telemetry_samples ({', '.join(SAMPLE_COLUMNS)}) VALUES ({marks})"
        conn.exec_driver_sql(statement, list(zip(repeat(batch_id), ids, times, metrics, values, strict=False)))
    elif dialect == "postgresql":
        raw = cast(Any, conn.connection.driver_connection)
        moments = stamps.array.to_pydatetime().tolist()
        with (
            raw.cursor() as cursor,
            cursor.copy(f"COPY telemetry_samples ({', '.join(SAMPLE_COLUMNS)}) FROM STDIN") as copy,
        ):
            for row in zip(repeat(batch_id), ids, moments, metrics, values, strict=False):
                copy.write_row(row)
    else:
        rows = frame_records(long, ["instance_id", "timestamp", "metric", "value"], "telemetry_samples")
        conn.execute(insert(TelemetrySampleRow), [{**row, "batch_id": batch_id} for row in rows])


class TelemetryHistory(Transactional):
    """Telemetry batches and samples: the telemetry half of :class:`forewarn.store.history.HistoryStore`."""

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
            "source": redact(source)[:500],
            "row_count": len(frame),
            "quarantined_count": quarantined,
            "start": times.min().to_pydatetime() if len(frame) else None,
            "end": times.max().to_pydatetime() if len(frame) else None,
            "created_at": utcnow(),
        }
        with self.transaction() as conn:
            conn.execute(insert(TelemetryBatchRow), [batch])
            if len(long):
                _insert_samples(conn, batch_id, long)
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
        long = read_frame(self._bind, query.order_by(t.id), [*KEYS, "metric", "value"])
        if long.empty:
            return empty_wide()
        wide = long.pivot_table(index=KEYS, columns="metric", values="value", aggfunc="last", sort=True)
        wide.columns.name = None
        wide = wide.reset_index().sort_values(KEYS, kind="stable").reset_index(drop=True)
        return wide.astype({c: float for c in wide.columns if c not in KEYS})

    def list_batches(self) -> pd.DataFrame:
        b = TelemetryBatchRow
        query = select(b.batch_id, b.source, b.row_count, b.quarantined_count, b.start, b.end).order_by(b.created_at)
        return read_frame(self._bind, query, ["batch_id", "source", "row_count", "quarantined_count", "start", "end"])

    # -- bounded readers: one query each, memory bounded by the window ----------------------------------
    def telemetry_between(self, start: datetime | None, end: datetime) -> pd.DataFrame:
        """Telemetry with ``start < timestamp <= end`` (``start`` None: from the first), wide, sorted by
        instance and time: one column per metric found in the window, whatever its name."""
        t = TelemetrySampleRow
        raw_time = type_coerce(t.timestamp, String) if self.engine.dialect.name == "sqlite" else t.timestamp
        query = select(t.id, t.instance_id, raw_time, t.metric, t.value).where(t.timestamp <= end)
        if start is not None:
            query = query.where(t.timestamp > start)
        return telemetry_wide(self.engine, query)  # the time index covers the query: no table reads

    def max_sample_id(self) -> int:
        """The highest telemetry sample id stored (0 when none): what a later read of "stored since" starts after."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.max(TelemetrySampleRow.id))).scalar() or 0)

    def telemetry_stored_since(self, after_id: int, start: datetime, end: datetime) -> pd.DataFrame:
        """Telemetry stored after sample ``after_id`` with ``start < timestamp <= end``, wide (late samples)."""
        t = TelemetrySampleRow
        raw_time = type_coerce(t.timestamp, String) if self.engine.dialect.name == "sqlite" else t.timestamp
        query = select(t.id, t.instance_id, raw_time, t.metric, t.value).where(
            t.id > after_id, t.timestamp > start, t.timestamp <= end
        )
        return telemetry_wide(self.engine, query)

    def telemetry_samples_between(self, start: datetime, end: datetime) -> int:
        """How many samples (one metric of one row each) have ``start < timestamp <= end``: an index count."""
        t = TelemetrySampleRow
        query = select(func.count()).select_from(t).where(t.timestamp > start, t.timestamp <= end)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def telemetry_keys_between(self, start: datetime | None, end: datetime) -> pd.DataFrame:
        """The (``instance_id``, ``timestamp``) of every telemetry row with ``start < timestamp <= end``."""
        t = TelemetrySampleRow
        query = select(t.instance_id, t.timestamp).where(t.timestamp <= end)
        if start is not None:
            query = query.where(t.timestamp > start)
        keys = read_frame(self._bind, query.distinct(), KEYS)
        return keys.sort_values(KEYS, kind="stable").reset_index(drop=True)
