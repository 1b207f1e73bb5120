"""The ``drop`` source: files in the dataset format dropped into a directory, each taken in once.

An entry of the directory is a dataset directory (``telemetry.csv`` or ``.parquet``, and optionally
``failures``, ``errors``, ``workloads``, ``instances``) or a single telemetry file (``*.csv``, ``*.parquet``).
Write an entry elsewhere and move it in; names starting with ``.`` or ending ``.tmp``/``.part`` are left
alone. A pull reads up to ``max_files`` entries, oldest first; once their rows are committed the entries move
to ``done/``. An entry that cannot be read at all moves to ``rejected/`` with a ``.reason`` file beside it,
and is reported: it is never retried. Rows that do not parse (of telemetry, failures, errors and workloads)
go to the quarantine with file and line.
A crash before the move makes the next pull read the entry again; the stores drop what they already hold.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from forewarn.dataset import TELEMETRY_KEYS
from forewarn.errors import InputError
from forewarn.schemas import Instance, new_id
from forewarn.store.repository import QuarantineRecord
from forewarn.telemetry.instances import read_fleet
from forewarn.telemetry.rows import parse_failures, parse_telemetry, read_raw
from forewarn.telemetry.screen import json_safe
from forewarn.telemetry.sources import Pulled
from forewarn.telemetry.tables import read_errors_lenient, read_workloads_lenient

DONE, REJECTED = "done", "rejected"
SKIPPED_SUFFIXES = (".tmp", ".part", ".reason")


@dataclass
class _Read:
    telemetry: list[pd.DataFrame] = field(default_factory=list)
    failures: list[pd.DataFrame] = field(default_factory=list)
    errors: list[pd.DataFrame] = field(default_factory=list)
    workloads: list[pd.DataFrame] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list)
    quarantined: list[QuarantineRecord] = field(default_factory=list)


def _find(root: Path, stem: str) -> Path | None:
    for suffix in (".parquet", ".csv"):
        if (root / f"{stem}{suffix}").is_file():
            return root / f"{stem}{suffix}"
    return None


def _refused(path: Path, raw: pd.DataFrame, lines: np.ndarray, reasons: pd.Series) -> list[QuarantineRecord]:
    bad = np.flatnonzero((reasons != "").to_numpy())
    rows = raw.iloc[bad].to_dict("records")
    return [
        QuarantineRecord(source_file=str(path), line=int(lines[i]), reason=str(reasons.iloc[i]), row=json_safe(r))
        for i, r in zip(bad.tolist(), rows, strict=True)
    ]


def _read_telemetry(path: Path, out: _Read) -> None:
    table = read_raw(path, TELEMETRY_KEYS)
    frame, parsed, _ = parse_telemetry(table)
    out.quarantined.extend(_refused(path, table.frame, table.lines, parsed.text))
    out.quarantined.extend(
        QuarantineRecord(source_file=str(path), line=r.line, reason=r.reason, row=r.row) for r in table.refused
    )
    out.telemetry.append(frame[~parsed.bad])


def _read_entry(entry: Path, out: _Read) -> None:
    if entry.is_file():
        _read_telemetry(entry, out)
        return
    telemetry = _find(entry, "telemetry")
    if telemetry is None:
        raise InputError("holds no telemetry.csv or telemetry.parquet", file=entry)
    _read_telemetry(telemetry, out)
    if (failures := _find(entry, "failures")) is not None:
        table = read_raw(failures, TELEMETRY_KEYS, allow_empty=True)
        frame, parsed = parse_failures(table)
        out.quarantined.extend(_refused(failures, table.frame, table.lines, parsed.text))
        out.failures.append(frame[~parsed.bad])
    for stem, reader, frames in (
        ("errors", read_errors_lenient, out.errors),
        ("workloads", read_workloads_lenient, out.workloads),
    ):
        if (path := _find(entry, stem)) is not None:
            frame, records = reader(path)
            frames.append(frame)
            out.quarantined.extend(records)
    if (instances := _find(entry, "instances")) is not None:
        out.instances.extend(read_fleet(instances))


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame | None:
    kept = [f for f in frames if not f.empty]
    return pd.concat(kept, ignore_index=True) if kept else None


class DropDirectorySource:
    """A :class:`forewarn.telemetry.sources.Source` (and ``Acknowledging``) over a drop directory."""

    kind = "drop"

    def __init__(self, directory: str | Path, *, name: str | None = None, max_files: int = 20) -> None:
        self.directory = Path(directory)
        self.name = name or f"drop:{self.directory}"
        self.max_files = max_files
        self._taken: list[Path] = []

    def entries(self) -> list[Path]:
        if not self.directory.is_dir():
            raise InputError("the drop directory does not exist", file=self.directory)
        found = [
            p
            for p in self.directory.iterdir()
            if p.name not in (DONE, REJECTED) and not p.name.startswith(".") and not p.name.endswith(SKIPPED_SUFFIXES)
            and (p.is_dir() or p.suffix in (".csv", ".parquet"))
        ]  # fmt: skip
        return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))[: self.max_files]

    def pull(self, since: datetime | None, until: datetime) -> Pulled:
        self._taken = []
        out = _Read()
        notes: list[str] = []
        for entry in self.entries():
            one = _Read()
            try:
                _read_entry(entry, one)
            except InputError as exc:
                notes.append(f"rejected {entry.name}: {exc}")
                self._move(entry, REJECTED, reason=str(exc))
                continue
            for name in ("telemetry", "failures", "errors", "workloads", "instances", "quarantined"):
                getattr(out, name).extend(getattr(one, name))
            self._taken.append(entry)
        if self._taken:
            notes.append(f"took {', '.join(p.name for p in self._taken)}")
        return Pulled(
            until=until,
            telemetry=_concat(out.telemetry),
            failures=_concat(out.failures),
            errors=_concat(out.errors),
            workloads=_concat(out.workloads),
            instances=out.instances,
            notes=notes,
            quarantined=out.quarantined,
        )

    def committed(self, pulled: Pulled) -> None:
        """Move the entries of the last pull to ``done/``: their rows are in the history database."""
        for entry in self._taken:
            self._move(entry, DONE)
        self._taken = []

    def _move(self, entry: Path, where: str, *, reason: str | None = None) -> None:
        target_dir = self.directory / where
        target_dir.mkdir(exist_ok=True)
        target = target_dir / entry.name
        if target.exists():
            target = target_dir / f"{entry.stem}-{new_id('again')}{entry.suffix}"
        shutil.move(str(entry), str(target))
        if reason is not None:
            target.with_name(target.name + ".reason").write_text(reason + "\n", encoding="utf-8")
