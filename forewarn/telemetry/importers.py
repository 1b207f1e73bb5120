"""Public failure data to the dataset format (a directory written with forewarn.dataset.write_dataset).

``run_import(kind, path, out)`` is what ``forewarn import KIND PATH --out DIR`` calls. Each importer reads
the published files in place (``.xz`` included) and says in ``ImportSummary.notes`` what it assumed or
synthesised. Times without a zone in the source (LANL) are taken as UTC. A file that cannot be read is one
:class:`DatasetError` line; the dataset files already in ``out`` are removed before writing, and what was
written is read back with :func:`forewarn.dataset.read_dataset`: an import never leaves a dataset that
``forewarn dataset check`` refuses.
"""

from __future__ import annotations

import lzma
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from forewarn.dataset import Dataset, prepare_folder, read_dataset, write_dataset
from forewarn.errors import DatasetError, InputError
from forewarn.telemetry.importers_hpc import build_fta, build_lanl

Built = tuple[Dataset, list[str]]


class ImportSummary(BaseModel):
    """What an import wrote: counts per table and the notes on what was assumed or synthesised."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    source: str
    out: str
    instances: int
    telemetry_rows: int
    metrics: list[str]
    failures: int
    notes: list[str]


def _backblaze_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError("no such file or directory", file=path)
    files = sorted(path.glob("*.csv"))
    if not files:
        raise InputError("no Backblaze *.csv files in this directory", file=path)
    return files


def _read_backblaze(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, low_memory=False)
    except pd.errors.EmptyDataError:
        raise DatasetError("file is empty; a Backblaze Drive Stats CSV has a header row", file=path) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise DatasetError(f"cannot be read as CSV: {unreadable(exc)}", file=path) from None
    missing = [c for c in ("date", "serial_number", "failure") if c not in frame.columns]
    if missing:
        raise DatasetError(
            f"not a Backblaze Drive Stats file: missing column(s) {', '.join(missing)}",
            file=path,
            row=1,
            field=missing[0],
        )
    dates = pd.to_datetime(frame["date"], format="%Y-%m-%d", errors="coerce", utc=True)
    bad = np.flatnonzero(dates.isna().to_numpy())
    if len(bad):
        raise DatasetError(
            f"'{frame['date'].iloc[bad[0]]}' is not a date (YYYY-MM-DD)", file=path, row=int(bad[0]) + 2, field="date"
        )
    frame["date"] = dates
    return frame


def build_backblaze(path: Path) -> Built:
    """Drive Stats CSVs: one instance per drive serial, SMART columns as metrics, daily timestamps.

    A drive fails on the last date it is flagged ``failure == 1``: in the student ``*_last_10_day_*`` files all
    ten rows of a failed drive carry the flag (SOURCE.txt caveat), and in Backblaze's own files only the
    failure day does, so the last flagged date is right for both.
    """
    files = _backblaze_files(path)
    frame = pd.concat([_read_backblaze(f) for f in files], ignore_index=True)
    frame["serial_number"] = frame["serial_number"].astype(str).str.strip()
    smart = [c for c in frame.columns if str(c).startswith("smart_")]
    keyed = frame.rename(columns={"serial_number": "instance_id", "date": "timestamp"})
    telemetry = keyed.groupby(["instance_id", "timestamp"], sort=True)[smart].first().reset_index()
    telemetry = telemetry.dropna(axis=1, how="all")
    flagged = keyed[pd.to_numeric(keyed["failure"], errors="coerce") == 1]
    failures = flagged.groupby("instance_id")["timestamp"].max().reset_index()
    failures["type"] = "drive_failure"
    failures["root_cause"] = "hardware"
    failures["recovery_minutes"] = np.nan
    static = [c for c in ("model", "capacity_bytes") if c in keyed.columns]
    instances = keyed.groupby("instance_id", sort=True)[static].first().reset_index()
    relabelled = int(len(flagged) - len(failures))
    last_seen = keyed.groupby("instance_id")["timestamp"].max()
    revived = int((last_seen.reindex(failures["instance_id"]).to_numpy() > failures["timestamp"].to_numpy()).sum())
    notes = [
        f"read {len(files)} file(s): {', '.join(f.name for f in files)}",
        f"{len(failures)} failures at each failed drive's last flagged date; {relabelled} earlier failure=1 rows "
        "are the last-10-day relabelling (SOURCE.txt caveat) and are not failures",
        f"{revived} failed drive(s) still report after their failure date; kept as failures (Backblaze's flag)",
        "timestamps are the snapshot dates at 00:00 UTC; a failure shares the timestamp of its last snapshot",
    ]
    dataset = Dataset(
        telemetry=telemetry, failures=failures.sort_values(["timestamp", "instance_id"]), instances=instances
    )
    return dataset, notes


BUILDERS: dict[str, Callable[[Path], Built]] = {
    "backblaze": build_backblaze,
    "lanl": build_lanl,
    "fta": build_fta,
}


def unreadable(exc: BaseException) -> str:
    """The first line of a reader's error, at most 200 characters."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= 200 else text[:200] + "..."


def _build(kind: str, path: Path) -> Built:
    try:
        return BUILDERS[kind](path)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, EOFError, lzma.LZMAError) as exc:
        raise DatasetError(f"cannot be read as a {kind} file: {unreadable(exc)}", file=path) from None
    except OSError as exc:
        raise DatasetError(f"cannot be read: {exc.strerror or unreadable(exc)}", file=path) from None


def _checked(out: Path, kind: str) -> None:
    """Refuse (and remove) what an import wrote when ``dataset check`` would refuse it."""
    try:
        read_dataset(out)
    except DatasetError as exc:
        prepare_folder(out)
        raise DatasetError(f"the {kind} data gives no valid dataset, nothing was written: {exc}", file=out) from None


def _write(kind: str, path: Path, out: Path) -> ImportSummary:
    if kind not in BUILDERS:
        raise InputError(f"unknown import kind '{kind}'", field="kind", allowed=list(BUILDERS))
    path, out = Path(path), Path(out)
    if not path.exists():
        raise InputError("no such file or directory", file=path)
    if out.exists() and not out.is_dir():
        raise DatasetError("is a file; --out must be a directory (it is created if missing)", file=out)
    dataset, notes = _build(kind, path)
    write_dataset(dataset, out)
    _checked(out, kind)
    return ImportSummary(
        kind=kind,
        source=str(path),
        out=str(out),
        instances=len(dataset.instances) if dataset.instances is not None else len(dataset.instance_ids),
        telemetry_rows=len(dataset.telemetry),
        metrics=list(dataset.metrics),
        failures=len(dataset.failures),
        notes=notes,
    )


def run_import(kind: str, path: Path, out: Path) -> ImportSummary:
    """Import public failure data of ``kind`` (backblaze, lanl, fta) from ``path`` into the dataset ``out``."""
    return _write(kind, path, out)


def import_backblaze(path: Path, out: Path) -> Path:
    """Backblaze Drive Stats CSV (a file or a directory of them) to a dataset directory."""
    return Path(_write("backblaze", path, out).out)


def import_lanl(path: Path, out: Path) -> Path:
    """The LANL 1996-2005 failure records (LA-UR-05-7318 CSV, ``.xz`` allowed) to a dataset directory."""
    return Path(_write("lanl", path, out).out)


def import_fta(path: Path, out: Path) -> Path:
    """A Failure Trace Archive trace (directory or ``event_trace.tab[.xz]``) to a dataset directory."""
    return Path(_write("fta", path, out).out)
