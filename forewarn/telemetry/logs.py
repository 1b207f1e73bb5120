"""Error logs to events: parse a log file into ErrorEvent-shaped rows, then count them in windows.

Formats: ``syslog`` (RFC 3164 and 5424), ``journald`` (``journalctl -o short-iso``), and the loghub formats
``bgl`` (also the label-less CFDR Blue Gene/L lines), ``hdfs``, ``openstack``, ``hpc``, ``thunderbird``;
``auto`` picks the format most of the first lines fit. Files ending ``.xz`` or ``.gz`` are decompressed.
No line is dropped silently: every line that does not parse comes back in ``rejected`` with its number
and the reason. Categories and severities follow :mod:`forewarn.telemetry.logformats`.
"""

from __future__ import annotations

import gzip
import lzma
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from forewarn.errors import InputError
from forewarn.telemetry.logformats import CATEGORIES, MARKER, PARSERS, SEVERITIES, Context, Unparsed, categorise

LogFormat = Literal["syslog", "journald", "bgl", "hdfs", "openstack", "hpc", "thunderbird", "auto"]
EVENT_COLUMNS = ("instance_id", "timestamp", "severity", "category", "message")
SNIFF_LINES = 50
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2262, 1, 1, tzinfo=UTC)
"""Events outside [EARLIEST, LATEST) are rejected: pandas keeps times only until 2262, and a log line dated
year 9999 is a broken clock, not an event."""
BLANK = "blank line"
NOT_FAULTS = (BLANK, MARKER)
"""Reasons of lines that hold no event by design: ``rejected`` lists them, the quarantine does not."""
MAX_LINE = 64 * 1024
"""A longer line is rejected (and kept, cut, in ``rejected``)."""


@dataclass
class ParsedLog:
    """The events of a log file (index: 1-based line number) and the lines that did not parse."""

    events: pd.DataFrame
    rejected: pd.DataFrame
    format: str

    @property
    def parsed(self) -> int:
        return len(self.events)

    @property
    def unparsed(self) -> int:
        return len(self.rejected)


def _open(path: Path) -> IO[str]:
    if path.suffix == ".xz":
        return lzma.open(path, "rt", encoding="utf-8", errors="replace")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return path.open("rt", encoding="utf-8", errors="replace")


def _read_lines(path: Path) -> list[str]:
    try:
        with _open(path) as handle:
            return [line.rstrip("\r\n") for line in handle]
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise InputError(f"cannot be read: {exc}", file=path) from None


def detect_format(lines: list[str], ctx: Context, *, path: Path | None = None) -> str:
    """The format that most of the first non-blank lines parse as."""
    sample = [line for line in lines if line.strip()][:SNIFF_LINES]
    scores: dict[str, int] = {}
    for name, parser in PARSERS.items():
        scores[name] = 0
        for line in sample:
            try:
                parser(line, ctx)
                scores[name] += 1
            except Unparsed:
                pass
    best = max(scores, key=lambda name: scores[name])
    if scores[best] == 0:
        raise InputError(
            "cannot tell the log format from its first lines; name it", file=path, field="format", allowed=list(PARSERS)
        )
    return best


def check_timezone(timezone: str) -> str:
    """``timezone`` if it names an IANA zone, else an :class:`InputError`."""
    _zone(timezone)
    return timezone


def _zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"unknown time zone '{timezone}'", field="timezone") from None


def _context(path: Path, year: int | None, timezone: str, default_instance: str | None) -> Context:
    zone = _zone(timezone)
    return Context(year=year or datetime.now(UTC).year, zone=zone, default_instance=default_instance or path.stem)


def log_format(name: str) -> LogFormat:
    """``name`` as a :data:`LogFormat`, or an :class:`InputError` listing the formats."""
    if name != "auto" and name not in PARSERS:
        raise InputError(f"unknown log format '{name}'", field="format", allowed=[*PARSERS, "auto"])
    return cast(LogFormat, name)


def parse_log(
    path: str | Path,
    *,
    format: LogFormat = "auto",
    year: int | None = None,
    timezone: str = "UTC",
    default_instance: str | None = None,
) -> ParsedLog:
    """Parse a log file into events and rejected lines.

    Args:
        path: the log file (``.xz``/``.gz`` allowed).
        format: one of :data:`LogFormat`.
        year: the year of RFC 3164 timestamps, which carry none (default: this year).
        timezone: the zone of timestamps written without one (RFC 3164, HDFS, OpenStack).
        default_instance: the instance of formats that name no host (HDFS); default the file's stem.

    Returns:
        ``events`` with :data:`EVENT_COLUMNS` indexed by line number, and ``rejected`` with ``line``,
        ``reason`` and ``text``.
    """
    path = Path(path)
    format = log_format(format)
    ctx = _context(path, year, timezone, default_instance)
    lines = _read_lines(path)
    name = detect_format(lines, ctx, path=path) if format == "auto" else format
    parser = PARSERS[name]
    rows: list[tuple[int, str, datetime, str, str, str]] = []
    rejected: list[tuple[int, str, str]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            rejected.append((number, BLANK, line))
            continue
        if len(line) > MAX_LINE:
            rejected.append((number, f"line is longer than {MAX_LINE:,} characters", line[:1024] + "...[cut]"))
            continue
        try:
            event = parser(line, ctx)
        except Unparsed as exc:
            rejected.append((number, str(exc), line))
            continue
        if not EARLIEST <= event.timestamp < LATEST:
            rejected.append((number, f"timestamp {event.timestamp:%Y-%m-%d} is out of range (1900 to 2261)", line))
            continue
        category = categorise(event.message, event.hint)
        rows.append((number, event.instance_id, event.timestamp, event.severity, category, event.message))
    events = pd.DataFrame(rows, columns=["line", *EVENT_COLUMNS]).set_index("line")
    events["timestamp"] = pd.to_datetime(events["timestamp"], utc=True).astype("datetime64[ns, UTC]")
    return ParsedLog(events=events, rejected=pd.DataFrame(rejected, columns=["line", "reason", "text"]), format=name)


def error_counts(
    events: pd.DataFrame,
    *,
    window_minutes: int,
    step_minutes: int,
    min_severity: str = "warning",
) -> pd.DataFrame:
    """Events per category in the window ``(t - window, t]`` ending at each step ``t`` (epoch-aligned).

    Only events at or above ``min_severity`` count. Rows are sparse: an instance gets a row at ``t`` only
    when its window holds at least one event, so a missing row means zero.

    Returns:
        ``instance_id``, ``timestamp``, ``errors_<category>`` for every category, ``errors_total``.
    """
    if step_minutes <= 0 or window_minutes < step_minutes:
        raise InputError(
            f"window {window_minutes} must be at least the step {step_minutes} (> 0) minutes", field="window_minutes"
        )
    if min_severity not in SEVERITIES:
        raise InputError(f"unknown severity '{min_severity}'", field="min_severity", allowed=SEVERITIES)
    columns = [f"errors_{name}" for name in CATEGORIES]
    kept = events[events["severity"].map(SEVERITIES.index).fillna(-1) >= SEVERITIES.index(min_severity)]
    if kept.empty:
        return pd.DataFrame(
            {"instance_id": pd.Series(dtype=str), "timestamp": pd.Series(dtype="datetime64[ns, UTC]")}
            | {c: pd.Series(dtype=int) for c in [*columns, "errors_total"]}
        )
    step = np.int64(step_minutes * 60 * 10**9)
    width = np.int64(window_minutes * 60 * 10**9)
    nanos = pd.to_datetime(kept["timestamp"], utc=True).astype("int64").to_numpy()
    first = -(-nanos // step)  # the first step label at or after the event
    last = -(-(nanos + width) // step)  # one past the last step whose window holds it
    repeats = (last - first).astype(np.int64)
    index = np.repeat(np.arange(len(kept)), repeats)
    offsets = np.arange(len(index)) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    expanded = pd.DataFrame(
        {
            "instance_id": kept["instance_id"].to_numpy()[index],
            "timestamp": pd.to_datetime((first[index] + offsets) * step, utc=True),
            "category": pd.Categorical(kept["category"].to_numpy()[index], categories=CATEGORIES),
        }
    )
    counts = expanded.groupby(["instance_id", "timestamp", "category"], observed=False).size().unstack("category")
    counts = counts.reindex(columns=list(CATEGORIES), fill_value=0).fillna(0).astype(int)
    counts.columns = columns
    counts["errors_total"] = counts.sum(axis=1)
    counts = counts[counts["errors_total"] > 0].reset_index()
    counts["timestamp"] = counts["timestamp"].astype("datetime64[ns, UTC]")
    return counts.sort_values(["instance_id", "timestamp"], kind="stable").reset_index(drop=True)
