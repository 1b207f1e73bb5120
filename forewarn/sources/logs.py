"""The ``logs`` source: error events from log files (syslog, journald exports, loghub formats).

Each pull parses the files (:func:`forewarn.telemetry.logs.parse_log`) and returns the events at or above
``min_severity`` with a time in ``(since - overlap, until]``: the last line time the watermark covers.
Events written late within the overlap land; those already stored are dropped by (instance, time, message).
A file not modified since that span began holds nothing new and is not read again. Lines that do not parse
are reported in the pull's notes with their file and line.
"""

from __future__ import annotations

import glob
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from forewarn.telemetry.logformats import SEVERITIES
from forewarn.telemetry.logs import EVENT_COLUMNS, LogFormat, parse_log
from forewarn.telemetry.sources import Pulled


class LogFileSource:
    """A :class:`forewarn.telemetry.sources.Source` over log files named by paths or glob patterns."""

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
        self.format, self.year, self.timezone, self.instance = format, year, timezone, instance
        self.min_rank = SEVERITIES.index(min_severity)
        self.overlap = overlap

    def files(self) -> list[Path]:
        found: list[Path] = []
        for pattern in self.paths:
            matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
            found.extend(Path(m) for m in matches if Path(m).is_file())
        return found

    def pull(self, since: datetime | None, until: datetime) -> Pulled:
        lo = None if since is None else since - self.overlap
        frames: list[pd.DataFrame] = []
        notes: list[str] = []
        files = self.files()
        if not files:
            notes.append(f"no log file matches {', '.join(self.paths)}")
        for path in files:
            if lo is not None and path.stat().st_mtime < lo.timestamp():
                continue
            parsed = parse_log(
                path, format=self.format, year=self.year or until.year, timezone=self.timezone,
                default_instance=self.instance,
            )  # fmt: skip
            rejected = parsed.rejected[parsed.rejected["reason"] != "blank line"]
            if not rejected.empty:
                first = rejected.iloc[0]
                notes.append(
                    f"{path}: {len(rejected)} line(s) not parsed as {parsed.format}; "
                    f"line {int(first['line'])}: {first['reason']}"
                )
            events = parsed.events
            keep = events["severity"].map(SEVERITIES.index) >= self.min_rank
            keep &= events["timestamp"] <= pd.Timestamp(until)
            if lo is not None:
                keep &= events["timestamp"] > pd.Timestamp(lo)
            frames.append(events.loc[keep, list(EVENT_COLUMNS)])
        errors = pd.concat(frames, ignore_index=True) if frames else None
        return Pulled(until=until, errors=errors, notes=notes)
