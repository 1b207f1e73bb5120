"""The open dataset format: a directory of CSV (or parquet) files. See docs/data-format.md.

``read_dataset`` checks every file and raises :class:`DatasetError` naming the file, the line (the header
is line 1) and the column of the first problem. ``write_dataset`` writes the same format back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from forewarn.errors import DatasetError
from forewarn.telemetry_rules import upper_bound

TELEMETRY_KEYS = ("instance_id", "timestamp")
FAILURE_COLUMNS = ("instance_id", "timestamp")
FAILURE_OPTIONAL = ("type", "root_cause", "recovery_minutes")
ERROR_COLUMNS = ("instance_id", "timestamp", "severity", "category", "message")
WORKLOAD_COLUMNS = ("task_id", "instance_id", "start", "end", "cpu", "memory")
WORKLOAD_OPTIONAL = ("kind", "data_size", "expected_duration")
DATASET_FILES = tuple(
    f"{stem}{suffix}"
    for stem in ("telemetry", "failures", "errors", "instances", "workloads")
    for suffix in (".csv", ".parquet")
)
"""Every file name of the dataset format: what a writer removes from its folder before writing."""
MAX_LINE_BYTES = 64 * 1024
"""The longest line a dataset CSV may have; a longer one is refused (checked) or quarantined (ingested)."""
NAN_TEXT = frozenset({"nan", "NaN", "NAN", "NA", "N/A", "null", "NULL", "None"})
"""Texts some tools write for a missing number; the format's missing value is an empty cell."""
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d(:\d\d(\.\d+)?)?([Zz]|[+-]\d\d:?\d\d)$")
"""A timestamp with a date, a time and a zone (seconds optional): bare dates and zone-less times are refused."""
_SCAN_CHUNK = 1 << 20


@dataclass
class Dataset:
    """A dataset in memory. Timestamps are ``datetime64[ns, UTC]``; metric columns are float."""

    telemetry: pd.DataFrame
    failures: pd.DataFrame
    errors: pd.DataFrame | None = None
    instances: pd.DataFrame | None = None
    workloads: pd.DataFrame | None = None
    metrics: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.metrics:
            self.metrics = [c for c in self.telemetry.columns if c not in TELEMETRY_KEYS]

    @property
    def instance_ids(self) -> list[str]:
        """Every instance named in the telemetry, sorted."""
        return sorted(self.telemetry["instance_id"].unique().tolist())

    @property
    def start(self) -> pd.Timestamp:
        return pd.Timestamp(self.telemetry["timestamp"].min())

    @property
    def end(self) -> pd.Timestamp:
        return pd.Timestamp(self.telemetry["timestamp"].max())


def _line(index: int) -> int:
    """The file line of a data row (0-based) when line 1 is the header."""
    return int(index) + 2


def scan_lines(path: Path, max_line: int = MAX_LINE_BYTES) -> None:
    """Refuse a CSV with a NUL byte or a line longer than ``max_line`` bytes, naming the line.

    Streams the file in 1 MiB chunks, so a 64 MB line costs a scan, not a parse: the CSV parser would
    otherwise cut a value at a NUL in silence and hold a huge line in memory several times over.
    """
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise DatasetError(f"cannot be read: {exc.strerror or exc}", file=path) from None
    line, run = 1, 0  # run: bytes of the current line seen so far
    with handle:
        while chunk := handle.read(_SCAN_CHUNK):
            nul = chunk.find(b"\x00")
            if nul >= 0:
                at = line + chunk.count(b"\n", 0, nul)
                raise DatasetError("has a NUL byte; a cell must be text without NUL", file=path, row=at)
            ends = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
            lengths = np.diff(np.r_[-1 - run, ends]) - 1 if len(ends) else np.array([run + len(chunk)])
            long = np.flatnonzero(lengths > max_line)
            if len(long):
                raise DatasetError(f"line is longer than {max_line:,} bytes", file=path, row=line + int(long[0]))
            run = len(chunk) - 1 - int(ends[-1]) if len(ends) else run + len(chunk)
            line += len(ends)
    if run > max_line:
        raise DatasetError(f"line is longer than {max_line:,} bytes", file=path, row=line)


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix != ".parquet" and path.exists():
        scan_lines(path)
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
            return frame.reset_index(drop=True)
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise DatasetError("file not found", file=path) from None
    except pd.errors.EmptyDataError:
        raise DatasetError("file is empty; a header row is required", file=path) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise DatasetError(f"cannot be parsed: {str(exc).strip().splitlines()[0]}", file=path) from None


def _require(frame: pd.DataFrame, columns: Sequence[str], path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DatasetError(
            f"missing column(s) {', '.join(missing)}; found {', '.join(map(str, frame.columns)) or 'none'}",
            file=path,
            row=1,
            field=missing[0],
        )


def _ids(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    values = frame[column].astype(str).str.strip()
    empty = np.flatnonzero((values == "") | (values == "nan"))
    if len(empty):
        raise DatasetError("must not be empty", file=path, row=_line(empty[0]), field=column)
    return values


def _timestamps(frame: pd.DataFrame, column: str, path: Path, *, optional: bool = False) -> pd.Series:
    raw = frame[column]
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = pd.to_datetime(raw, utc=True)
        blank = parsed.isna()
    else:
        text = raw.astype(str).str.strip()
        blank = text == ""
        parsed = pd.to_datetime(text.where(~blank & zoned(text)), utc=True, errors="coerce", format="ISO8601")
    bad = np.flatnonzero(parsed.isna() & ~blank)
    if len(bad):
        value = _shown(raw.iloc[bad[0]])
        raise DatasetError(
            f"'{value}' is not a timestamp with a zone; use RFC 3339 such as 2024-03-01T12:00:00Z",
            file=path,
            row=_line(bad[0]),
            field=column,
        )
    missing = np.flatnonzero(blank)
    if len(missing) and not optional:
        raise DatasetError("timestamp must not be empty", file=path, row=_line(missing[0]), field=column)
    return parsed


def _shown(value: object, limit: int = 40) -> str:
    """A cell as it may appear in a message: at most ``limit`` characters."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def zoned(text: pd.Series) -> pd.Series:
    """True where a timestamp text has a date, a time and a zone (:data:`RFC3339`); checked once per distinct
    text, since telemetry repeats the same times for every instance."""
    codes, uniques = pd.factorize(text)
    good = np.array([bool(RFC3339.match(str(u))) for u in uniques], dtype=bool)
    return pd.Series(good[codes] & (codes >= 0), index=text.index)


def _numbers(frame: pd.DataFrame, column: str, path: Path, *, bound: float | None = None) -> pd.Series:
    """Floats; an empty cell is missing (NaN); text, 'nan', infinity and (with ``bound``) a magnitude above it
    are refused."""
    raw = frame[column]
    if pd.api.types.is_numeric_dtype(raw):
        values = raw.astype(float)
    else:
        text = raw.astype(str).str.strip()
        blank = text == ""
        values = pd.to_numeric(text.where(~blank & ~text.isin(NAN_TEXT)), errors="coerce")
        bad = np.flatnonzero(values.isna() & ~blank)
        if len(bad):
            hint = "; leave the cell empty for a missing value" if text.iloc[bad[0]] in NAN_TEXT else ""
            raise DatasetError(
                f"'{_shown(raw.iloc[bad[0]])}' is not a number{hint}", file=path, row=_line(bad[0]), field=column
            )
    array = values.to_numpy(dtype=float)
    infinite = np.flatnonzero(np.isinf(array))
    if len(infinite):
        raise DatasetError("must be finite", file=path, row=_line(infinite[0]), field=column)
    if bound is not None:
        with np.errstate(invalid="ignore"):
            huge = np.flatnonzero(np.abs(array) > bound)
        if len(huge):
            raise DatasetError(
                f"{array[huge[0]]:g} is beyond the largest sane value of this metric ({bound:g})",
                file=path,
                row=_line(huge[0]),
                field=column,
            )
    return values.astype(float)


def _find(directory: Path, stem: str, *, required: bool) -> Path | None:
    for suffix in (".parquet", ".csv"):
        candidate = directory / f"{stem}{suffix}"
        if candidate.exists():
            return candidate
    if required:
        raise DatasetError(f"missing {stem}.csv or {stem}.parquet", file=directory)
    return None


def read_telemetry(path: Path) -> pd.DataFrame:
    """Read and check ``telemetry.csv|parquet``: keys, timestamps, then numeric metric columns."""
    frame = _read_table(path)
    _require(frame, TELEMETRY_KEYS, path)
    metrics = [c for c in frame.columns if c not in TELEMETRY_KEYS]
    if not metrics:
        raise DatasetError("no metric columns after instance_id and timestamp", file=path, row=1)
    columns = {"instance_id": _ids(frame, "instance_id", path), "timestamp": _timestamps(frame, "timestamp", path)}
    for column in metrics:  # built whole: a column at a time fragments a wide frame
        # the bound of the metric's kind, fractions aside: a dataset of percentages is still a dataset (ingestion,
        # which knows cpu and memory as fractions, quarantines them)
        columns[str(column)] = _numbers(frame, column, path, bound=upper_bound(str(column), fractions=()))
    out = pd.DataFrame(columns)
    return out.sort_values(["instance_id", "timestamp"], kind="stable").reset_index(drop=True)


def read_failures(path: Path) -> pd.DataFrame:
    """Read and check ``failures.csv``."""
    frame = _read_table(path)
    _require(frame, FAILURE_COLUMNS, path)
    out = pd.DataFrame(
        {"instance_id": _ids(frame, "instance_id", path), "timestamp": _timestamps(frame, "timestamp", path)}
    )
    out["type"] = frame["type"].astype(str) if "type" in frame else "unknown"
    out["root_cause"] = frame["root_cause"].astype(str) if "root_cause" in frame else "undetermined"
    if "recovery_minutes" in frame:
        out["recovery_minutes"] = _numbers(frame, "recovery_minutes", path)
        negative = np.flatnonzero(out["recovery_minutes"].fillna(0).to_numpy() < 0)
        if len(negative):
            raise DatasetError("must not be negative", file=path, row=_line(negative[0]), field="recovery_minutes")
    else:
        out["recovery_minutes"] = np.nan
    return out.sort_values(["timestamp", "instance_id"], kind="stable").reset_index(drop=True)


def read_errors(path: Path) -> pd.DataFrame:
    """Read and check ``errors.csv``."""
    frame = _read_table(path)
    _require(frame, ERROR_COLUMNS, path)
    out = pd.DataFrame(
        {"instance_id": _ids(frame, "instance_id", path), "timestamp": _timestamps(frame, "timestamp", path)}
    )
    for column in ("severity", "category", "message"):
        out[column] = frame[column].astype(str)
    return out.sort_values(["timestamp", "instance_id"], kind="stable").reset_index(drop=True)


def read_instances(path: Path) -> pd.DataFrame:
    """Read ``instances.csv``: ``instance_id`` plus any static attributes (numbers where they parse)."""
    frame = _read_table(path)
    _require(frame, ("instance_id",), path)
    frame["instance_id"] = _ids(frame, "instance_id", path)
    duplicated = np.flatnonzero(frame["instance_id"].duplicated().to_numpy())
    if len(duplicated):
        raise DatasetError("duplicate instance_id", file=path, row=_line(duplicated[0]), field="instance_id")
    if "boot_time" in frame.columns:
        frame["boot_time"] = _timestamps(frame, "boot_time", path, optional=True)
    for column in frame.columns:
        if column not in ("instance_id", "boot_time") and frame[column].dtype == object:
            converted = pd.to_numeric(frame[column], errors="coerce")
            if converted.notna().all():
                frame[column] = converted
    return frame


def read_workloads(path: Path) -> pd.DataFrame:
    """Read and check ``workloads.csv``."""
    frame = _read_table(path)
    _require(frame, WORKLOAD_COLUMNS, path)
    out = pd.DataFrame({"task_id": _ids(frame, "task_id", path), "instance_id": _ids(frame, "instance_id", path)})
    out["start"] = _timestamps(frame, "start", path)
    out["end"] = _timestamps(frame, "end", path, optional=True)
    for column in ("cpu", "memory"):
        out[column] = _numbers(frame, column, path)
    out["kind"] = frame["kind"].astype(str) if "kind" in frame else "batch"
    for column in ("data_size", "expected_duration"):
        out[column] = _numbers(frame, column, path) if column in frame else np.nan
    inverted = np.flatnonzero((out["end"] < out["start"]).to_numpy())
    if len(inverted):
        raise DatasetError("end is before start", file=path, row=_line(inverted[0]), field="end")
    return out


def read_dataset(directory: str | Path) -> Dataset:
    """Read a dataset directory, checking every file. Raises DatasetError on the first problem."""
    root = Path(directory)
    if not root.is_dir():
        raise DatasetError("not a directory; a dataset is a directory of telemetry.csv, failures.csv, ...", file=root)
    telemetry_path = _find(root, "telemetry", required=True)
    failures_path = _find(root, "failures", required=True)
    assert telemetry_path is not None and failures_path is not None
    optional = {stem: _find(root, stem, required=False) for stem in ("errors", "instances", "workloads")}
    return Dataset(
        telemetry=read_telemetry(telemetry_path),
        failures=read_failures(failures_path),
        errors=read_errors(optional["errors"]) if optional["errors"] else None,
        instances=read_instances(optional["instances"]) if optional["instances"] else None,
        workloads=read_workloads(optional["workloads"]) if optional["workloads"] else None,
    )


def _rfc3339(series: pd.Series) -> pd.Series:
    return series.dt.strftime("%Y-%m-%dT%H:%M:%SZ").where(series.notna(), "")


def prepare_folder(directory: str | Path) -> Path:
    """Create ``directory`` or empty it of dataset files, so no file of an older dataset (a telemetry.parquet
    beside a new telemetry.csv) is read as part of the new one; other files are left alone."""
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise DatasetError("is a file; the output must be a directory (it is created if missing)", file=root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        for name in DATASET_FILES:
            (root / name).unlink(missing_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot be written: {exc.strerror or exc}", file=root) from None
    return root


def write_dataset(dataset: Dataset, directory: str | Path, *, telemetry_format: str = "csv") -> Path:
    """Write ``dataset`` in the dataset format; telemetry as ``csv`` or ``parquet``. Dataset files already in
    ``directory`` are removed first (:func:`prepare_folder`)."""
    root = prepare_folder(directory)
    telemetry = dataset.telemetry
    if telemetry_format == "parquet":
        telemetry.to_parquet(root / "telemetry.parquet", index=False)
    else:
        out = telemetry.copy()
        out["timestamp"] = _rfc3339(out["timestamp"])
        out.to_csv(root / "telemetry.csv", index=False, float_format="%.6g")
    tables: dict[str, tuple[pd.DataFrame | None, tuple[str, ...]]] = {
        "failures": (dataset.failures, ("timestamp",)),
        "errors": (dataset.errors, ("timestamp",)),
        "instances": (dataset.instances, ()),
        "workloads": (dataset.workloads, ("start", "end")),
    }
    for stem, (frame, time_columns) in tables.items():
        if frame is None:
            continue
        out = frame.copy()
        for column in time_columns:
            out[column] = _rfc3339(pd.to_datetime(out[column], utc=True))
        out.to_csv(root / f"{stem}.csv", index=False, float_format="%.6g")
    return root
