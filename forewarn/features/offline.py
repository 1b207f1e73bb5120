"""The offline store's files: a directory of parquet parts that DuckDB reads as one table (a glob).

Terms:
    part: one parquet file of feature rows, written whole under a temporary name and renamed, so a reader
        never sees half a file. A full rewrite (:func:`replace_parts`) leaves one part; each incremental
        materialize adds one (:func:`append_part`), so a run writes only its own rows.
    columns: every part has the same columns in the same order (DuckDB reads parts by position). When new
        feature columns appear (a new metric), the older parts are rewritten once with the new columns
        empty; a column whose metric disappeared stays, empty in newer parts.
    compaction: once :data:`COMPACT_EVERY` small parts have gathered (an hour of 5-minute runs), the next
        append first streams them into one merged part (one part in memory at a time), so the directory
        holds about one file per hour rather than one per run. Like a full rewrite, the merged part is
        renamed in before the small ones are removed: a reader that lists the directory in between reads
        those rows twice (an hourly window of a few milliseconds).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from forewarn.features.windows import KEYS

PATTERN = "*.parquet"
COMPACT_EVERY = 12
"""Small parts merged into one once there are this many."""
MERGED = "-merged"


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


def compact(directory: Path, every: int = COMPACT_EVERY) -> Path | None:
    """Merge the small parts into one once there are ``every`` of them; returns the merged part, if any.

    The parts are streamed into one parquet writer one at a time, so memory is bounded by a part; the
    merged part takes the name of the oldest, so the parts keep their order.
    """
    small = [part for part in parts(directory) if not part.stem.endswith(MERGED)]
    if len(small) < every:
        return None
    target = small[0].with_name(f"{small[0].stem}{MERGED}.parquet")
    temporary = target.with_name(f".{target.name}.tmp")
    schema = pq.read_schema(small[0]).remove_metadata()
    with pq.ParquetWriter(temporary, schema) as writer:
        for part in small:
            writer.write_table(pq.read_table(part).replace_schema_metadata(None).cast(schema))
    temporary.replace(target)
    for part in small:
        part.unlink(missing_ok=True)
    return target


def append_part(directory: Path, frame: pd.DataFrame) -> Path:
    """Add ``frame`` (keys and float feature columns) as a new part, in the table's column order (after
    merging the small parts, :func:`compact`, when enough have gathered)."""
    directory.mkdir(parents=True, exist_ok=True)
    compact(directory)
    columns = _columns(directory, [c for c in frame.columns])
    missing = [c for c in columns if c not in frame.columns and c not in KEYS]
    out = frame.reindex(columns=columns).astype({c: float for c in missing})
    return _write(out, directory / _name())
