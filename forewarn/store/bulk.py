"""Bulk rows between pandas frames and the database: the conversions both ways, and the transaction every
save of the history joins.

Frames use the dataset format of :mod:`forewarn.dataset`: timestamps ``datetime64[ns, UTC]``. Inserts go
through SQLAlchemy's executemany.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, insert
from sqlalchemy.sql import Executable

from forewarn.errors import InputError

KEYS = ["instance_id", "timestamp"]
TIME_COLUMNS = {"timestamp", "start", "end"}


def frame_records(frame: pd.DataFrame, columns: Sequence[str], table: str) -> list[dict[str, Any]]:
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


def read_frame(bind: Engine | Connection, query: Executable, columns: Sequence[str]) -> pd.DataFrame:
    if isinstance(bind, Connection):
        rows = bind.execute(query).all()
    else:
        with bind.connect() as conn:
            rows = conn.execute(query).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=list(columns))
    for column in TIME_COLUMNS.intersection(columns):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


class Transactional:
    """A store whose writes go through :meth:`transaction`. Needs ``self.engine``.

    Inside a ``with store.transaction():`` block every save (and the reads that decide what is new) shares
    one connection and commits once, so a batch is stored whole or not at all; outside it each save is its
    own transaction.
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

    def _insert(self, table: type[Any], frame: pd.DataFrame, columns: Sequence[str]) -> int:
        records = frame_records(frame, columns, table.__tablename__)
        if records:
            with self.transaction() as conn:
                conn.execute(insert(table), records)
        return len(records)
