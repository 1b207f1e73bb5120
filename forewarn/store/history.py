"""Bulk save and load of the dataset tables (telemetry, failures, errors, workloads) as pandas frames.

Frames use the dataset format of :mod:`forewarn.dataset`: timestamps ``datetime64[ns, UTC]``, telemetry
wide (``instance_id``, ``timestamp``, one column per metric). Inserts go through SQLAlchemy's executemany.

Failures are kept once per (instance, time): ``save_failures`` drops rows already stored (at microsecond
precision, the database's), so a source may report the same failure on every pull. A failure is *open* while
its ``recovery_minutes`` is NULL; ``record_recoveries`` closes open ones when a source learns the recovery later.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from itertools import repeat
from operator import itemgetter
from typing import Any, cast

import numpy as np
import pandas as pd
from sqlalchemy import (
    Connection,
    Engine,
    String,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.sql import Executable

from forewarn.errors import InputError
from forewarn.redact import redact
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


def _frame(bind: Engine | Connection, query: Executable, columns: Sequence[str]) -> pd.DataFrame:
    if isinstance(bind, Connection):
        rows = bind.execute(query).all()
    else:
        with bind.connect() as conn:
            rows = conn.execute(query).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=list(columns))
    for column in TIME_COLUMNS.intersection(columns):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def _empty_wide() -> pd.DataFrame:
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


def _telemetry_wide(engine: Engine, query: Executable, chunk: int = 500_000) -> pd.DataFrame:
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
        return _empty_wide()
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
        rows = _records(long, ["instance_id", "timestamp", "metric", "value"], "telemetry_samples")
        conn.execute(insert(TelemetrySampleRow), [{**row, "batch_id": batch_id} for row in rows])


class HistoryStore:
    """The dataset half of the repository. Needs ``self.engine``.

    Writes go through :meth:`transaction`: inside a ``with store.transaction():`` block every save (and the
    reads that decide what is new) shares one connection and commits once, so a batch is stored whole or
    not at all; outside it each save is its own transaction.
    """

    engine: Engine

    @property
    def _open(self) -> dict[int, Connection]:
        """Thread id -> the connection of the transaction that thread has open on this store."""
        if "_transactions" not in self.__dict__:
            self.__dict__["_transactions"] = {}
        return self.__dict__["_transactions"]

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction for everything stored inside the block (nested blocks join the outer one)."""
        key = threading.get_ident()
        if key in self._open:
            yield self._open[key]
            return
        with self.engine.begin() as conn:
            self._open[key] = conn
            try:
                yield conn
            finally:
                del self._open[key]

    @property
    def _bind(self) -> Engine | Connection:
        """The open transaction's connection (its reads see its writes), else the engine."""
        return self._open.get(threading.get_ident(), self.engine)

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
        long = _frame(self._bind, query.order_by(t.id), [*KEYS, "metric", "value"])
        if long.empty:
            return pd.DataFrame({"instance_id": pd.Series(dtype=str), "timestamp": pd.Series(dtype="M8[ns, UTC]")})
        wide = long.pivot_table(index=KEYS, columns="metric", values="value", aggfunc="last", sort=True)
        wide.columns.name = None
        wide = wide.reset_index().sort_values(KEYS, kind="stable").reset_index(drop=True)
        return wide.astype({c: float for c in wide.columns if c not in KEYS})

    def list_batches(self) -> pd.DataFrame:
        b = TelemetryBatchRow
        query = select(b.batch_id, b.source, b.row_count, b.quarantined_count, b.start, b.end).order_by(b.created_at)
        return _frame(self._bind, query, ["batch_id", "source", "row_count", "quarantined_count", "start", "end"])

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
        stored = _frame(self._bind, query, KEYS)
        if stored.empty:
            return frame
        known = pd.MultiIndex.from_frame(stored.assign(timestamp=stored["timestamp"].dt.floor("us")))
        return frame[~pd.MultiIndex.from_frame(frame[KEYS]).isin(known)]

    def record_recoveries(self, frame: pd.DataFrame) -> int:
        """Set ``recovery_minutes`` of stored open failures, matched by (instance_id, timestamp).

        One UPDATE statement for the whole frame (executemany); a failure whose recovery is already known
        keeps it, so a repeated batch changes nothing. Returns how many failures were closed.
        """
        records = _records(frame, ["instance_id", "timestamp", "recovery_minutes"], "failure_events")
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
        frame = _frame(self._bind, query, FAILURE_COLUMNS)
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
        frame = _frame(self._bind, query.order_by(f.timestamp, f.id), FAILURE_COLUMNS)
        frame["recovery_minutes"] = frame["recovery_minutes"].astype(float)
        return frame

    def save_errors(self, frame: pd.DataFrame) -> int:
        return self._insert(ErrorEventRow, frame, ERROR_COLUMNS)

    def load_errors(self) -> pd.DataFrame:
        e = ErrorEventRow
        query = select(e.instance_id, e.timestamp, e.severity, e.category, e.message).order_by(e.timestamp, e.id)
        return _frame(self._bind, query, ERROR_COLUMNS)

    def save_workloads(self, frame: pd.DataFrame) -> int:
        defaults = {"kind": "batch", "data_size": np.nan, "expected_duration": np.nan, "end": pd.NaT}
        frame = frame.assign(**{c: v for c, v in defaults.items() if c not in frame})
        return self._insert(WorkloadRow, frame, WORKLOAD_COLUMNS)

    def load_workloads(self) -> pd.DataFrame:
        w = WorkloadRow
        columns = [getattr(w, c) for c in WORKLOAD_COLUMNS]
        frame = _frame(self._bind, select(*columns).order_by(w.id), WORKLOAD_COLUMNS)
        return frame.astype({c: float for c in ("cpu", "memory", "data_size", "expected_duration")})

    # -- bounded readers: one query each, memory bounded by the window ----------------------------------
    def telemetry_between(self, start: datetime | None, end: datetime) -> pd.DataFrame:
        """Telemetry with ``start < timestamp <= end`` (``start`` None: from the first), wide, sorted by
        instance and time: one column per metric found in the window, whatever its name."""
        t = TelemetrySampleRow
        raw_time = type_coerce(t.timestamp, String) if self.engine.dialect.name == "sqlite" else t.timestamp
        query = select(t.id, t.instance_id, raw_time, t.metric, t.value).where(t.timestamp <= end)
        if start is not None:
            query = query.where(t.timestamp > start)
        return _telemetry_wide(self.engine, query)  # the time index covers the query: no table reads

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
        return _telemetry_wide(self.engine, query)

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
        keys = _frame(self._bind, query.distinct(), KEYS)
        return keys.sort_values(KEYS, kind="stable").reset_index(drop=True)

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
        frame = _frame(self._bind, query, FAILURE_COLUMNS)
        frame["recovery_minutes"] = frame["recovery_minutes"].astype(float)
        return frame.sort_values(KEYS, kind="stable").reset_index(drop=True)

    def errors_between(self, start: datetime | None, end: datetime) -> pd.DataFrame:
        """Error events with ``start < timestamp <= end``."""
        e = ErrorEventRow
        query = select(e.instance_id, e.timestamp, e.severity, e.category, e.message).where(e.timestamp <= end)
        if start is not None:
            query = query.where(e.timestamp > start)
        return _frame(self._bind, query.order_by(e.timestamp, e.id), ERROR_COLUMNS)

    def workloads_between(self, start: datetime | None, end: datetime) -> pd.DataFrame:
        """Tasks running at some time of ``(start, end]``: started by ``end``, not ended by ``start``."""
        w = WorkloadRow
        query = select(*[getattr(w, c) for c in WORKLOAD_COLUMNS]).where(w.start <= end)
        if start is not None:
            query = query.where(or_(w.end.is_(None), w.end > start))
        frame = _frame(self._bind, query.order_by(w.id), WORKLOAD_COLUMNS)
        return frame.astype({c: float for c in ("cpu", "memory", "data_size", "expected_duration")})

    def clear_history(self) -> None:
        """Delete every telemetry batch, sample and event (plans and the journal stay)."""
        with self.transaction() as conn:
            for table in (TelemetrySampleRow, TelemetryBatchRow, FailureEventRow, ErrorEventRow, WorkloadRow):
                conn.execute(delete(table))

    def _insert(self, table: type[Any], frame: pd.DataFrame, columns: Sequence[str]) -> int:
        records = _records(frame, columns, table.__tablename__)
        if records:
            with self.transaction() as conn:
                conn.execute(insert(table), records)
        return len(records)
