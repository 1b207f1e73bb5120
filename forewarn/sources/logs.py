"""The ``logs`` source: error events from log files (syslog, journald exports, loghub formats).

Each pull parses the files (:func:`forewarn.telemetry.logs.parse_log`) and returns the events at or above
``min_severity`` with a time in ``(since - overlap, until]``: the last line time the watermark covers.
Events written late within the overlap land; those already stored are dropped by (instance, time, message).
A file not modified since that span began holds nothing new and is not read again. A path may name a file,
a glob pattern or a directory (its files, not its subdirectories). A line that does not parse goes to the
quarantine with its file, line number and reason (once: the ingest step skips records it holds already),
and the pull's notes count them.
"""

from __future__ import annotations

import glob
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from forewarn.errors import InputError
from forewarn.schemas import utcnow
from forewarn.store.repository import QuarantineRecord, Repository
from forewarn.telemetry.logformats import SEVERITIES
from forewarn.telemetry.logs import (
    EVENT_COLUMNS,
    NOT_FAULTS,
    LogFormat,
    ParsedLog,
    check_timezone,
    log_format,
    parse_log,
)
from forewarn.telemetry.sources import Pulled

if TYPE_CHECKING:
    from forewarn.ingest import IngestSummary


def _expand(pattern: str) -> list[Path]:
    if glob.has_magic(pattern):
        return [Path(m) for m in sorted(glob.glob(pattern)) if Path(m).is_file()]
    path = Path(pattern)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    return [path] if path.is_file() else []


def check_paths(paths: list[str]) -> None:
    """Raise :class:`InputError` naming the first path (not a glob pattern) that is neither file nor directory."""
    for pattern in paths:
        if not glob.has_magic(pattern) and not Path(pattern).exists():
            raise InputError("no such log file or directory", file=pattern, field="paths")


def _quarantine(path: Path, parsed: ParsedLog) -> list[QuarantineRecord]:
    rejected = parsed.rejected[~parsed.rejected["reason"].isin(NOT_FAULTS)]
    return [
        QuarantineRecord(source_file=str(path), line=int(line), reason=str(reason), row={"text": str(text)})
        for line, reason, text in rejected[["line", "reason", "text"]].itertuples(index=False)
    ]


class LogFileSource:
    """A :class:`forewarn.telemetry.sources.Source` over log files named by paths, directories or globs."""

    kind = "logs"

    def __init__(
        self,
        paths: list[str],
        *,
        name: str | None = None,
        format: LogFormat = "auto",
        year: int | None = None,
        timezone: str = "UTC",
        instance: str | None = None,
        min_severity: str = "warning",
        overlap: timedelta = timedelta(minutes=10),
    ) -> None:
        self.paths = list(paths)
        self.name = name or f"logs:{self.paths[0]}"
        self.format, self.year, self.timezone, self.instance = format, year, check_timezone(timezone), instance
        self.min_rank = SEVERITIES.index(min_severity)
        self.overlap = overlap

    def files(self) -> list[Path]:
        return [path for pattern in self.paths for path in _expand(pattern)]

    def pull(self, since: datetime | None, until: datetime) -> Pulled:
        lo = None if since is None else since - self.overlap
        pulled = Pulled(until=until)
        frames: list[pd.DataFrame] = []
        files = self.files()
        named = {Path(p) for p in self.paths if not glob.has_magic(p) and not Path(p).is_dir()}
        if not files:
            pulled.notes.append(f"no log file matches {', '.join(self.paths)}")
        for path in files:
            if lo is not None and path.stat().st_mtime < lo.timestamp():
                continue
            try:
                parsed = parse_log(
                    path, format=self.format, year=self.year or until.year, timezone=self.timezone,
                    default_instance=self.instance,
                )  # fmt: skip
            except InputError as exc:
                if path in named:
                    raise
                pulled.notes.append(f"{path}: skipped, {exc.reason}")  # a directory's or a pattern's other file
                continue
            records = _quarantine(path, parsed)
            if records:
                pulled.quarantined.extend(records)
                pulled.notes.append(
                    f"{path}: {len(records)} line(s) not parsed as {parsed.format} (quarantined); "
                    f"line {records[0].line}: {records[0].reason}"
                )
            events = parsed.events
            keep = events["severity"].map(SEVERITIES.index) >= self.min_rank
            later = keep & (events["timestamp"] > pd.Timestamp(until))
            if later.any():
                pulled.notes.append(
                    f"{path}: {int(later.sum())} event(s) dated after {until.isoformat(timespec='seconds')} left for "
                    "a later pull (a clock ahead, or a log without years from another year: set year)"
                )
            keep &= ~later
            if lo is not None:
                keep &= events["timestamp"] > pd.Timestamp(lo)
            frames.append(events.loc[keep, list(EVENT_COLUMNS)])
        found = [frame for frame in frames if len(frame)]
        pulled.errors = pd.concat(found, ignore_index=True) if found else (frames[0] if frames else None)
        return pulled


def ingest_logs(
    paths: list[str],
    *,
    format: str = "auto",
    year: int | None = None,
    timezone: str = "UTC",
    instance: str | None = None,
    min_severity: str = "warning",
    repository: Repository | None = None,
    now: datetime | None = None,
) -> IngestSummary:
    """Ingest every event of the log files up to ``now`` once (``forewarn ingest logs``), with no watermark.

    The same parsing, quarantine and store as the ingest flow's ``logs`` source; running it again stores
    nothing twice (events by instance, time and message; quarantined lines by file, line and reason).

    Raises:
        InputError: a path that does not exist, no file at all, an unknown format, severity or time zone.
    """
    from forewarn.ingest import ingest_pulled

    if min_severity not in SEVERITIES:
        raise InputError(f"unknown severity '{min_severity}'", field="min_severity", allowed=SEVERITIES)
    check_paths(paths)
    now = now or utcnow()
    source = LogFileSource(
        paths, format=log_format(format), year=year, timezone=timezone, instance=instance, min_severity=min_severity
    )
    if not source.files():
        raise InputError("no log file matches", file=", ".join(paths), field="paths")
    pulled = source.pull(None, now)
    return ingest_pulled(pulled, source=f"logs {', '.join(paths)}", repository=repository, now=now)
