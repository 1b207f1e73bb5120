"""The offline store's files: a directory of parquet parts that DuckDB reads as one table (a glob).

Terms:
    part: one parquet file of feature rows, written whole under a temporary name and renamed, so a reader
        never sees half a file. A full rewrite (:func:`replace_parts`) leaves one part; each incremental
        materialize adds one (:func:`append_part`), so a run writes only its own rows.
    columns: every part has the same columns in the same order (DuckDB reads parts by position). When new
        feature columns appear (a new metric), the older parts are rewritten once with the new columns
        empty; a column whose metric disappeared stays, empty in newer parts.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from forewarn.features.windows import KEYS

PATTERN = "*.parquet"


def parts(directory: Path) -> list[Path]:
    """The parts of the table, oldest first."""
    return sorted(directory.glob(PATTERN)) if directory.is_dir() else []


def stored_columns(directory: Path) -> list[str]:
    """The columns the parts hold (from the newest part's schema; no data is read)."""
    found = parts(directory)
    return list(pq.read_schema(found[-1]).names) if found else []


def _write(frame: pd.DataFrame, path: Path) -> Path:
    temporary = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(temporary, index=False)
    temporary.replace(path)
    return path


def _name() -> str:
    return f"part-{pd.Timestamp.now(tz='UTC').value:020d}-{uuid.uuid4().hex[:8]}.parquet"


def _columns(directory: Path, wanted: Sequence[str]) -> list[str]:
    """The stored columns followed by any of ``wanted`` they lack; older parts are widened to match."""
    stored = stored_columns(directory)
    if not stored:
        return list(wanted)
    extra = [c for c in wanted if c not in stored]
    if not extra:
        return stored
    columns = [*stored, *extra]
    for part in parts(directory):
        frame = pd.read_parquet(part)
        _write(frame.reindex(columns=columns).astype({c: float for c in extra}), part)
    return columns


def replace_parts(directory: Path, frame: pd.DataFrame) -> Path:
    """Make ``frame`` the whole table: one part, then the older parts removed."""
    directory.mkdir(parents=True, exist_ok=True)
    old = parts(directory)
    _write(frame, directory / _name())
    for part in old:
        part.unlink(missing_ok=True)
    return directory


def append_part(directory: Path, frame: pd.DataFrame) -> Path:
    """Add ``frame`` (keys and float feature columns) as a new part, in the table's column order."""
    directory.mkdir(parents=True, exist_ok=True)
    columns = _columns(directory, [c for c in frame.columns])
    missing = [c for c in columns if c not in frame.columns and c not in KEYS]
    out = frame.reindex(columns=columns).astype({c: float for c in missing})
    return _write(out, directory / _name())
