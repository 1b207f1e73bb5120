"""Lenient reading of dataset tables for ingestion: a bad row is refused with its reason, not the file.

:mod:`forewarn.dataset` stops at the first bad cell, which suits checking a dataset. Ingestion must instead
keep every good row and set each bad one aside with its line and why (see :mod:`forewarn.ingest`). Here:

* file-level problems still raise :class:`DatasetError` naming file, line and column: a header that is not
  UTF-8, empty, no data rows, a missing, blank or repeated column name, no metric columns;
* a line that is not UTF-8, holds a NUL byte or is longer than :data:`~forewarn.dataset.MAX_LINE_BYTES` is
  refused with that reason (its text kept, cut at :data:`PAYLOAD_CHARS`);
* a line with more or fewer fields than the header is refused ("fewer fields than the header");
* cells are parsed column by column; a row whose key is empty, whose timestamp does not parse or has no
  zone, or whose number is text (``nan`` included: a missing value is an empty cell) gets a reason. Value
  rules (negative, beyond the metric's bound, future, duplicate, unknown instance) are
  :func:`forewarn.telemetry_rules.quarantine`'s, applied by the caller to the rows that parsed.

Line numbers count the header as line 1; blank lines are skipped but counted. In a parquet file a "line"
is the 1-based row number plus one, as if it were a CSV with a header.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forewarn.dataset import MAX_LINE_BYTES, NAN_TEXT, zoned
from forewarn.errors import DatasetError

PAYLOAD_CHARS = 1024
"""The most characters of one refused line or cell kept in the quarantine; the rest is cut with a marker."""
_NO_ZONE = re.compile(r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d(:\d\d(\.\d+)?)?$")


def cap(text: str, limit: int = PAYLOAD_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with a marker saying how many were left out."""
    return text if len(text) <= limit else f"{text[:limit]}...[cut {len(text) - limit:,} characters]"


@dataclass
class Refused:
    """A line that could not be made into a row: its file line, why, and its raw cells."""

    line: int
    reason: str
    row: dict[str, Any]


@dataclass
class RawTable:
    """A table's well-formed data rows as text cells, with the file line of each, and the refused lines."""

    path: Path
    frame: pd.DataFrame
    lines: np.ndarray
    refused: list[Refused] = field(default_factory=list)


def _bad_lines(raw: bytes) -> dict[int, str]:
    """0-based line -> why it is refused: a NUL byte or more than MAX_LINE_BYTES bytes."""
    array = np.frombuffer(raw, dtype=np.uint8)
    ends = np.flatnonzero(array == 10)
    lengths = np.r_[ends, len(raw)] - np.r_[0, ends + 1]
    bad = {int(n): f"line is longer than {MAX_LINE_BYTES:,} bytes" for n in np.flatnonzero(lengths > MAX_LINE_BYTES)}
    if b"\x00" in raw:
        for n in np.unique(np.searchsorted(ends, np.flatnonzero(array == 0))):
            bad.setdefault(int(n), "NUL byte in the line")
    return bad


def _decode(path: Path) -> tuple[str, list[Refused]]:
    """The file's text, with each line that cannot be read (not UTF-8, NUL, too long) blanked and refused."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot be read: {exc.strerror or exc}", file=path) from None
    bad = _bad_lines(raw)
    if not bad:
        try:
            return raw.decode("utf-8-sig"), []
        except UnicodeDecodeError:
            pass
    refused: list[Refused] = []
    text: list[str] = []
    for number, line in enumerate(raw.split(b"\n")):
        reason = bad.get(number)
        try:
            decoded = line.decode("utf-8-sig" if number == 0 else "utf-8")
        except UnicodeDecodeError as exc:
            reason = f"line is not UTF-8 text (byte 0x{line[exc.start : exc.start + 1].hex()})"
        if reason is None:
            text.append(decoded)
            continue
        if number == 0:
            raise DatasetError(f"header: {reason}; save the file as UTF-8 text", file=path, row=1)
        shown = line[: PAYLOAD_CHARS * 4].decode("utf-8", errors="replace").replace("\x00", "\\0")
        refused.append(Refused(number + 1, reason, {"text": cap(shown), "bytes": len(line)}))
        text.append("")
    return "\n".join(text), refused


def _header(names: Sequence[str], path: Path, required: Sequence[str]) -> list[str]:
    columns = [name.strip() for name in names]
    for position, name in enumerate(columns, start=1):
        if not name:
            raise DatasetError(f"column {position} of the header has no name", file=path, row=1)
        if columns.index(name) != position - 1:
            raise DatasetError("column name appears twice in the header", file=path, row=1, field=name)
    missing = [c for c in required if c not in columns]
    if missing:
        raise DatasetError(
            f"missing column(s) {', '.join(missing)}; found {', '.join(columns)}", file=path, row=1, field=missing[0]
        )
    return columns


def _split(text: str) -> tuple[list[str], list[tuple[int, list[str]]], list[Refused]]:
    """Header, (line, fields) of each non-blank line, and lines refused for an unclosed quote; plain
    splitting unless the text has quotes."""
    rows: list[tuple[int, list[str]]] = []
    if '"' not in text:
        lines = text.replace("\r\n", "\n").split("\n")
        rows = [(n, line.split(",")) for n, line in enumerate(lines[1:], start=2) if line.strip()]
        return (lines[0].split(",") if lines else []), rows, []
    all_lines = text.split("\n")
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    broken: list[Refused] = []
    offset, done = 0, reader.line_num
    while True:
        restart = None
        try:
            for fields in reader:
                first, done = offset + done + 1, reader.line_num
                if offset + done > first and len(fields) != len(header):
                    restart = first  # a quote left open swallowed the lines after it
                    break
                if any(cell.strip() for cell in fields):
                    rows.append((offset + done, fields))
        except csv.Error:
            restart = offset + done + 1
        if restart is None:
            return header, rows, broken
        shown = cap(all_lines[restart - 1]) if restart <= len(all_lines) else ""
        broken.append(Refused(restart, "a quote is never closed on this line", {"text": shown}))
        reader = csv.reader(io.StringIO("\n".join(all_lines[restart:])))
        offset, done = restart, 0


def _read_csv(path: Path, required: Sequence[str], allow_empty: bool) -> RawTable:
    text, unreadable = _decode(path)
    if not text.strip():
        raise DatasetError("file is empty; a header row is required", file=path, row=1)
    header, rows, broken = _split(text)
    columns = _header(header, path, required)
    unreadable += broken
    if not rows and not unreadable and not allow_empty:
        raise DatasetError("has a header but no data rows", file=path, row=2)
    width = len(columns)
    refused = [
        Refused(
            n,
            "fewer fields than the header" if len(fields) < width else "more fields than the header",
            {"fields": len(fields), "header": width, "text": cap(",".join(fields))},
        )
        for n, fields in rows
        if len(fields) != width
    ]
    refused = sorted([*unreadable, *refused], key=lambda item: item.line)
    good = [(n, fields) for n, fields in rows if len(fields) == width]
    if not good:
        frame = pd.DataFrame({c: pd.Series(dtype=str) for c in columns})
    elif '"' not in text:
        body = "\n".join(",".join(fields) for _, fields in good)
        frame = pd.read_csv(
            io.StringIO(body), header=None, names=columns, dtype=str, keep_default_na=False, na_filter=False
        )
    else:
        frame = pd.DataFrame([fields for _, fields in good], columns=columns, dtype=str)
    lines = np.array([n for n, _ in good], dtype=np.int64)
    return RawTable(path=path, frame=frame.reset_index(drop=True), lines=lines, refused=refused)


def read_raw(path: Path, required: Sequence[str], *, allow_empty: bool = False) -> RawTable:
    """Read a CSV (or parquet) table into text cells (parquet keeps its types), line by line.

    ``allow_empty`` accepts a header without rows (a fleet with no failures has such a failures.csv).
    """
    if path.suffix != ".parquet":
        return _read_csv(path, required, allow_empty)
    try:
        frame = pd.read_parquet(path).reset_index(drop=True)
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise DatasetError(f"cannot be read as parquet: {str(exc).splitlines()[0]}", file=path) from None
    _header([str(c) for c in frame.columns], path, required)
    if frame.empty and not allow_empty:
        raise DatasetError("has no data rows", file=path, row=2)
    return RawTable(path=path, frame=frame, lines=np.arange(len(frame), dtype=np.int64) + 2)


class Reasons:
    """Reasons per row, joined by "; "; rows with none are ''."""

    def __init__(self, index: pd.Index) -> None:
        self.text = pd.Series("", index=index, dtype=object)

    def add(self, mask: pd.Series | np.ndarray, reason: str) -> None:
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            current = self.text[mask]
            self.text[mask] = current.where(current == "", current + "; ") + reason

    @property
    def bad(self) -> pd.Series:
        return self.text != ""


def parse_ids(frame: pd.DataFrame, column: str, reasons: Reasons) -> pd.Series:
    values = frame[column].astype(str).str.strip()
    reasons.add((values == "") | frame[column].isna(), f"{column} is empty")
    return values


def parse_times(frame: pd.DataFrame, column: str, reasons: Reasons, *, blank_ok: bool = False) -> pd.Series:
    """UTC times; text must be RFC 3339 with a zone (:data:`~forewarn.dataset.RFC3339`). With ``blank_ok``
    an empty cell is NaT without a reason."""
    raw = frame[column]
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = pd.to_datetime(raw, utc=True)
        if not blank_ok:
            reasons.add(parsed.isna(), f"{column} is not an RFC 3339 timestamp")
        return parsed.astype("datetime64[ns, UTC]")
    text = raw.astype(str).str.strip()
    blank = text == ""
    ok = zoned(text)
    parsed = pd.to_datetime(text.where(ok), utc=True, errors="coerce", format="ISO8601")
    naive = ~ok & text.str.match(_NO_ZONE)
    reasons.add(naive, f"{column} has no time zone (RFC 3339 needs Z or +hh:mm)")
    reasons.add(parsed.isna() & ~naive & ~(blank & blank_ok), f"{column} is not an RFC 3339 timestamp")
    return parsed.astype("datetime64[ns, UTC]")


def parse_numbers(frame: pd.DataFrame, column: str, reasons: Reasons, *, blank_ok: bool = False) -> pd.Series:
    """Floats; text that is not a number gets a reason, and so does ``nan`` (a missing value is an empty
    cell). An empty cell is NaN, with a reason unless ``blank_ok``."""
    raw = frame[column]
    if pd.api.types.is_numeric_dtype(raw):
        return raw.astype(float)
    text = raw.astype(str).str.strip()
    blank = text == ""
    nan = text.isin(NAN_TEXT)
    values = pd.to_numeric(text.where(~blank & ~nan), errors="coerce").astype(float)
    reasons.add(nan, f"{column} is NaN")
    reasons.add(values.isna() & ~blank & ~nan, f"{column} is not a number")
    if not blank_ok:
        reasons.add(blank, f"{column} is empty")
    return values


def parse_telemetry(table: RawTable) -> tuple[pd.DataFrame, Reasons, list[str]]:
    """Typed telemetry (``instance_id``, ``timestamp`` UTC, float metrics), parse reasons, metric names."""
    frame = table.frame
    metrics = [str(c) for c in frame.columns if c not in ("instance_id", "timestamp")]
    if not metrics:
        raise DatasetError("no metric columns after instance_id and timestamp", file=table.path, row=1)
    reasons = Reasons(frame.index)
    columns = {
        "instance_id": parse_ids(frame, "instance_id", reasons),
        "timestamp": parse_times(frame, "timestamp", reasons),
    }
    columns |= {metric: parse_numbers(frame, metric, reasons, blank_ok=True) for metric in metrics}
    return pd.DataFrame(columns), reasons, metrics  # built whole: a column at a time fragments a wide frame


def parse_failures(table: RawTable) -> tuple[pd.DataFrame, Reasons]:
    """Typed failures (the five columns of failures.csv) and parse reasons per row."""
    frame = table.frame
    reasons = Reasons(frame.index)
    out = pd.DataFrame(
        {
            "instance_id": parse_ids(frame, "instance_id", reasons),
            "timestamp": parse_times(frame, "timestamp", reasons),
        }
    )
    for column, default in (("type", "unknown"), ("root_cause", "undetermined")):
        out[column] = frame[column].astype(str).str.strip() if column in frame else default
    if "recovery_minutes" in frame:
        minutes = parse_numbers(frame, "recovery_minutes", reasons, blank_ok=True)
        reasons.add(np.isinf(minutes), "recovery_minutes is not finite")
        reasons.add(minutes < 0, "recovery_minutes is negative")
        out["recovery_minutes"] = minutes.where(np.isfinite(minutes))
    else:
        out["recovery_minutes"] = np.nan
    return out, reasons
