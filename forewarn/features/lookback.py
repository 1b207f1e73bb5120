"""The look-back cache: the telemetry one materialize step read, kept for the next step.

Each step computes the new rows' window features from the new rows and the :data:`LOOKBACK` before them.
Reading that look-back from the history database at every run costs about 70 times the new rows (six hours
of look-back against a five-minute run). So a step keeps what it read, as one parquet file in the feature
store's directory: the wide rows of ``(mark - LOOKBACK, mark]``, the mark (the ``materialize`` watermark the
step moved to), the highest sample id stored when it read, and the database it read. The next step that
starts from the same mark in the same database reads only

- the new rows, ``(mark, end]``, by the time index, and
- the late rows: samples stored since that id with a time in ``(mark - LOOKBACK, mark]``,

and merges them into the kept rows (a cell stored later wins, as in a full read). Anything else (no file,
another mark, another database, an unreadable file) reads the look-back from the database as before. The
frame is the one a full read gives, save one case: on Postgres a writer that commits a late sample out of id
order (an older id after a newer one was read) leaves that sample out of the windows until it leaves the
look-back; it is in the history and in training all the same.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from forewarn.store.repository import Repository

log = logging.getLogger(__name__)
KEYS = ["instance_id", "timestamp"]
META = b"forewarn.lookback"


@dataclass(frozen=True)
class Kept:
    """What a step read, and where it stood."""

    frame: pd.DataFrame
    mark: datetime
    last_id: int
    database: str


def database_key(repo: Repository) -> str:
    """The database a cache belongs to, without its credentials in the file."""
    return hashlib.sha256(repo.engine.url.render_as_string(hide_password=False).encode()).hexdigest()[:16]


def load(path: Path | None, repo: Repository, mark: datetime | None) -> Kept | None:
    """The cache at ``path`` when it was written at ``mark`` for this database, else None."""
    if path is None or mark is None or not path.exists():
        return None
    try:
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {}).get(META, b"{}"))
        kept = Kept(table.to_pandas(), datetime.fromisoformat(meta["mark"]), int(meta["last_id"]), meta["database"])
    except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
        log.warning("look-back cache %s unreadable (%s): reading the look-back from the database", path, exc)
        return None
    if kept.database != database_key(repo) or kept.mark != mark:
        return None
    return kept


def save(path: Path | None, frame: pd.DataFrame, *, mark: datetime, last_id: int, repo: Repository) -> None:
    """Keep ``frame``'s rows of ``(mark - lookback, mark]`` (the caller trims) for the step after ``mark``."""
    if path is None:
        return
    meta = {"mark": mark.isoformat(), "last_id": last_id, "database": database_key(repo)}
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META: json.dumps(meta).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    pq.write_table(table, partial)
    partial.replace(path)


def merge(kept: pd.DataFrame, late: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """One wide frame sorted by instance and time; of a cell in several parts, the later part's value wins."""
    parts = [p for p in (kept, late, new) if len(p)]
    if not parts:
        return kept.iloc[0:0]
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    twice = frame.duplicated(KEYS, keep=False)
    if twice.any():  # late samples of rows already kept: the later value of each cell, NaN where none is
        merged = frame[twice].groupby(KEYS, sort=False, as_index=False).last()
        frame = pd.concat([frame[~twice], merged], ignore_index=True)
    metrics = sorted(c for c in frame.columns if c not in KEYS and frame[c].notna().any())
    return frame.sort_values(KEYS, kind="stable", ignore_index=True)[[*KEYS, *metrics]]


def read_step(
    repo: Repository, path: Path | None, start: datetime, end: datetime, lookback: timedelta
) -> tuple[pd.DataFrame, int]:
    """The telemetry of ``(start - lookback, end]`` (wide, as :meth:`Repository.telemetry_between` gives it)
    and the highest sample id stored before it was read; from the cache where it holds ``start``."""
    last_id = repo.max_sample_id()  # first: a sample stored during the reads is read again later, never lost
    kept = load(path, repo, start)
    if kept is None:
        return repo.telemetry_between(start - lookback, end), last_id
    late = repo.telemetry_stored_since(kept.last_id, start - lookback, start)
    new = repo.telemetry_between(start, end)
    window = kept.frame[kept.frame["timestamp"] > pd.Timestamp(start - lookback)]
    return merge(window, late, new), last_id


def keep(
    repo: Repository, path: Path | None, frame: pd.DataFrame, *, end: datetime, last_id: int, lookback: timedelta
) -> None:
    """Keep the rows of ``frame`` the step after ``end`` needs as its look-back."""
    if path is not None:
        window = frame[frame["timestamp"] > pd.Timestamp(end - lookback)]
        save(path, window, mark=end, last_id=last_id, repo=repo)
