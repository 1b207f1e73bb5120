"""Keep only what the history database does not hold yet: error events and workloads.

Telemetry and failures are deduplicated by (instance, time) during screening (:mod:`forewarn.telemetry.screen`)
and again by the repository; error events by (instance, time, message) and workloads by (task, instance,
start), here. Each lookup reads
only the keys inside the batch's own time range (or its task ids), so memory follows the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from sqlalchemy import Engine, select

from forewarn.store.models import ErrorEventRow, WorkloadRow

ERROR_KEY = ["instance_id", "timestamp", "message"]
WORKLOAD_KEY = ["task_id", "instance_id", "start"]
CHUNK = 500


def _keys(frame: pd.DataFrame, columns: Sequence[str]) -> pd.MultiIndex:
    out = frame[list(columns)].copy()
    for column in ("timestamp", "start"):
        if column in out:
            out[column] = pd.to_datetime(out[column], utc=True).astype("datetime64[ns, UTC]")
    return pd.MultiIndex.from_frame(out.astype({c: str for c in columns if c not in ("timestamp", "start")}))


def new_errors(engine: Engine, frame: pd.DataFrame) -> pd.DataFrame:
    """The error events of ``frame`` not stored yet (repeats inside the batch count once)."""
    frame = frame.drop_duplicates(ERROR_KEY).reset_index(drop=True)
    stamps = pd.to_datetime(frame["timestamp"], utc=True).dropna()
    if stamps.empty:
        return frame
    e = ErrorEventRow
    lo, hi = stamps.min().to_pydatetime(), stamps.max().to_pydatetime()
    query = select(e.instance_id, e.timestamp, e.message).where(e.timestamp >= lo, e.timestamp <= hi)
    with engine.connect() as conn:
        stored = pd.DataFrame([tuple(r) for r in conn.execute(query)], columns=ERROR_KEY)
    if stored.empty:
        return frame
    return frame[~_keys(frame, ERROR_KEY).isin(_keys(stored, ERROR_KEY))].reset_index(drop=True)


def new_workloads(engine: Engine, frame: pd.DataFrame) -> pd.DataFrame:
    """The workloads of ``frame`` not stored yet, by (task_id, instance_id, start)."""
    frame = frame.drop_duplicates(WORKLOAD_KEY).reset_index(drop=True)
    ids = sorted(frame["task_id"].astype(str).unique())
    w = WorkloadRow
    rows: list[tuple[object, ...]] = []
    with engine.connect() as conn:
        for first in range(0, len(ids), CHUNK):
            query = select(w.task_id, w.instance_id, w.start).where(w.task_id.in_(ids[first : first + CHUNK]))
            rows.extend(tuple(r) for r in conn.execute(query))
    if not rows:
        return frame
    stored = pd.DataFrame(rows, columns=WORKLOAD_KEY)
    return frame[~_keys(frame, WORKLOAD_KEY).isin(_keys(stored, WORKLOAD_KEY))].reset_index(drop=True)
