"""A corpus of broken input: each kind is answered with a clear message or a quarantine reason, and every
good row is still stored.

Each case starts from the same small, good dataset (3 instances x 6 steps, a fleet in instances.csv, two
failures) and breaks one thing. Row-level faults must quarantine exactly the broken row, at its line,
with its reason; file-level faults must raise one line naming the file (and line and column where there
is one) and store nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from forewarn.errors import DatasetError
from forewarn.ingest import ingest_files, open_repository
from forewarn.store import Repository

NOW = datetime(2024, 6, 1, tzinfo=UTC)
HEADER = "instance_id,timestamp,cpu,memory,error_count"
GOOD_ROWS = [f"i-{i},2024-01-01T00:{m:02d}:00Z,0.{i}{m // 5},0.5,{i % 2}" for i in (1, 2, 3) for m in range(0, 30, 5)]
FAILURES = "instance_id,timestamp,type,root_cause,recovery_minutes\ni-1,2024-01-01T01:00:00Z,sudden,disk,30\n" + (
    "i-2,2024-01-01T02:00:00Z,memory_leak,leak,45\n"
)


def write(root: Path, rows: list[str], *, header: str = HEADER) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "telemetry.csv").write_text("\n".join([header, *rows]) + "\n")
    (root / "failures.csv").write_text(FAILURES)
    (root / "instances.csv").write_text("instance_id,cpu_capacity,zone\ni-1,2,a\ni-2,4,b\ni-3,8,c\n")


def replace(line: int, text: str) -> Callable[[Path], None]:
    """Replace telemetry line ``line`` (the header is line 1)."""

    def apply(root: Path) -> None:
        rows = list(GOOD_ROWS)
        rows[line - 2] = text
        write(root, rows)

    return apply


def cell(line: int, column: int, value: str) -> Callable[[Path], None]:
    fields = GOOD_ROWS[line - 2].split(",")
    fields[column] = value
    return replace(line, ",".join(fields))


def _ingest(root: Path) -> tuple[Repository, object]:
    repository = open_repository("sqlite://")
    return repository, ingest_files(root, repository=repository, now=NOW)


def _bytes_row(root: Path, line: int, raw: bytes) -> None:
    write(root, GOOD_ROWS)
    lines = [row.encode() for row in [HEADER, *GOOD_ROWS]]
    lines[line - 1] = raw
    (root / "telemetry.csv").write_bytes(b"\n".join(lines) + b"\n")


def _blank_lines_and_crlf(root: Path) -> None:
    write(root, GOOD_ROWS)
    lines = [HEADER, *GOOD_ROWS[:3], "", *GOOD_ROWS[3:], "i-1,bad"]  # the bad row is line 21
    (root / "telemetry.csv").write_text("\r\n".join(lines) + "\r\n")


# kind -> (how to break the dataset, the quarantined line, its reason, telemetry rows that must be stored)
ROW_FAULTS: dict[str, tuple[Callable[[Path], None], int, str, int]] = {
    "nan": (cell(3, 2, "nan"), 3, "cpu is NaN", 17),
    "not UTF-8 in one line": (
        lambda root: _bytes_row(root, 4, "i-\xe9,2024-01-01T00:15:00Z,0.1,0.5,0".encode("latin-1")),
        4,
        "line is not UTF-8 text (byte 0xe9)",
        17,
    ),
    "NUL byte in a cell": (
        lambda root: _bytes_row(root, 5, b"i-1\x00x,2024-01-01T00:20:00Z,0.1,0.5,0"),
        5,
        "NUL byte in the line",
        17,
    ),
    "zone-less timestamp": (
        cell(6, 1, "2024-01-01T00:25:00"),
        6,
        "timestamp has no time zone (RFC 3339 needs Z or +hh:mm)",
        17,
    ),
    "bare date": (cell(7, 1, "2024-01-01"), 7, "timestamp is not an RFC 3339 timestamp", 17),
    "inf": (cell(5, 2, "inf"), 5, "cpu is infinite", 17),
    "negative": (cell(6, 4, "-1"), 6, "error_count is negative", 17),
    "fraction above 1": (cell(7, 3, "1.5"), 7, "memory above 1", 17),
    "future timestamp": (cell(8, 1, "2030-01-01T00:00:00Z"), 8, "timestamp in the future", 17),
    "bad timestamp": (cell(9, 1, "yesterday"), 9, "timestamp is not an RFC 3339 timestamp", 17),
    "empty instance_id": (cell(10, 0, ""), 10, "instance_id is empty", 17),
    "unknown instance": (cell(11, 0, "i-9"), 11, "unknown instance", 17),
    "text in numeric column": (cell(12, 4, "many"), 12, "error_count is not a number", 17),
    "truncated line": (replace(13, "i-2,2024-01-01T00:25:00Z,0.2"), 13, "fewer fields than the header", 17),
    "extra columns": (replace(14, GOOD_ROWS[12] + ",7,8"), 14, "more fields than the header", 17),
    "duplicate row": (
        lambda root: write(root, [*GOOD_ROWS, GOOD_ROWS[0]]),
        20,
        "duplicate (instance_id, timestamp)",
        18,
    ),
    "quoted file": (
        lambda root: write(root, [f'"{r.split(",")[0]}",{r.split(",", 1)[1]}' for r in GOOD_ROWS[:-1]] + ["x"]),
        19,
        "fewer fields than the header",
        17,
    ),
    "blank lines and CRLF": (_blank_lines_and_crlf, 21, "fewer fields than the header", 18),
}


@pytest.mark.parametrize("kind", sorted(ROW_FAULTS))
def test_a_bad_row_is_quarantined_at_its_line_and_the_good_rows_are_stored(kind: str, tmp_path: Path) -> None:
    breaker, line, reason, good = ROW_FAULTS[kind]
    breaker(tmp_path)
    repository, summary = _ingest(tmp_path)
    assert summary.stored == good and len(repository.load_telemetry()) == good  # type: ignore[attr-defined]
    assert summary.quarantined == 1 and summary.reasons[reason] == 1  # type: ignore[attr-defined]
    [record] = repository.load_quarantine()
    assert record.line == line and reason in record.reason.split("; ")
    assert record.source_file.endswith("telemetry.csv") and record.batch_id == summary.batch_id  # type: ignore[attr-defined]
    assert summary.failures == 2 and summary.validation.success  # type: ignore[attr-defined]


FAILURE_FAULTS = {
    "bad recovery_minutes": ("i-3,2024-01-01T03:00:00Z,sudden,x,soon", "recovery_minutes is not a number"),
    "negative recovery_minutes": ("i-3,2024-01-01T03:00:00Z,sudden,x,-5", "recovery_minutes is negative"),
    "bad failure timestamp": ("i-3,03:00 yesterday,sudden,x,5", "timestamp is not an RFC 3339 timestamp"),
    "future failure": ("i-3,2031-01-01T00:00:00Z,sudden,x,5", "timestamp in the future"),
}


@pytest.mark.parametrize("kind", sorted(FAILURE_FAULTS))
def test_a_bad_failure_is_quarantined_and_the_rest_stored(kind: str, tmp_path: Path) -> None:
    row, reason = FAILURE_FAULTS[kind]
    write(tmp_path, GOOD_ROWS)
    (tmp_path / "failures.csv").write_text(FAILURES + row + "\n")
    repository, summary = _ingest(tmp_path)
    assert summary.failures == 2 and len(repository.load_failures()) == 2  # type: ignore[attr-defined]
    assert summary.stored == 18 and summary.reasons == {reason: 1}  # type: ignore[attr-defined]
    [record] = repository.load_quarantine()
    assert record.source_file.endswith("failures.csv") and record.line == 4


def _file(name: str, text: str | bytes) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        write(root, GOOD_ROWS)
        path = root / name
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)

    return apply


def _remove(name: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        write(root, GOOD_ROWS)
        (root / name).unlink()

    return apply


latin1 = "\n".join([HEADER, *GOOD_ROWS[:2], "i-\xe9,2024-01-01T00:00:00Z,0.1,0.5,0"]).encode("latin-1")
FILE_FAULTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "bad header": (
        lambda root: write(root, GOOD_ROWS, header=HEADER.replace("instance_id", "instanceid")),
        r"telemetry.csv:1, field 'instance_id': missing column\(s\) instance_id",
    ),
    "empty file": (_file("telemetry.csv", ""), r"telemetry.csv:1: file is empty"),
    "header only": (_file("telemetry.csv", HEADER + "\n"), r"telemetry.csv:2: has a header but no data rows"),
    "header not UTF-8": (
        _file("telemetry.csv", latin1.replace(b"instance_id", b"instance_\xe9d", 1)),
        r"telemetry.csv:1: header: line is not UTF-8 text \(byte 0xe9\)",
    ),
    "utf-16": (
        _file("telemetry.csv", (HEADER + "\n" + GOOD_ROWS[0]).encode("utf-16")),
        r"telemetry.csv:1: header: line is not UTF-8",
    ),
    "repeated column": (
        lambda root: write(root, [r + ",1" for r in GOOD_ROWS], header=HEADER + ",cpu"),
        r"telemetry.csv:1, field 'cpu': column name appears twice",
    ),
    "blank column name": (
        lambda root: write(root, GOOD_ROWS, header=HEADER.replace("memory", " ")),
        r"telemetry.csv:1: column 4 of the header has no name",
    ),
    "no metric columns": (
        lambda root: write(root, [",".join(r.split(",")[:2]) for r in GOOD_ROWS], header="instance_id,timestamp"),
        r"telemetry.csv:1: no metric columns",
    ),
    "missing failures.csv": (_remove("failures.csv"), r"missing failures.csv"),
    "missing telemetry": (_remove("telemetry.csv"), r"missing telemetry.csv"),
    "bad instances.csv": (
        _file("instances.csv", "instance_id,cpu_capacity\ni-1,2\ni-2,big\n"),
        r"instances.csv:3, field 'cpu_capacity'",
    ),
}


@pytest.mark.parametrize("kind", sorted(FILE_FAULTS))
def test_a_broken_file_is_one_line_naming_it_and_nothing_is_stored(kind: str, tmp_path: Path) -> None:
    breaker, message = FILE_FAULTS[kind]
    breaker(tmp_path)
    repository = open_repository("sqlite://")
    with pytest.raises(DatasetError, match=message) as caught:
        ingest_files(tmp_path, repository=repository, now=NOW)
    assert "\n" not in str(caught.value)
    assert repository.list_batches().empty and repository.load_failures().empty


def test_an_empty_metric_cell_is_a_missing_value_and_the_row_keeps_its_others(tmp_path: Path) -> None:
    cell(4, 3, "")(tmp_path)
    repository, summary = _ingest(tmp_path)
    assert summary.stored == 18 and summary.quarantined == 0  # type: ignore[attr-defined]
    assert summary.samples == 18 * 3 - 1  # type: ignore[attr-defined]
    stored = repository.load_telemetry().set_index(["instance_id", "timestamp"])
    row = stored.iloc[2]  # line 4: i-1 at 00:10
    assert row["memory"] != row["memory"] and row["cpu"] == 0.12 and row["error_count"] == 1


EVENT_FAULTS = {
    "errors.csv: timestamp not a time": (
        "errors.csv",
        "instance_id,timestamp,severity,category,message\ni-1,noon,error,disk,x\ni-2,2024-01-01T00:05:00Z,error,disk,y\n",
        "timestamp is not an RFC 3339 timestamp",
    ),
    "errors.csv: one bad byte": (
        "errors.csv",
        "instance_id,timestamp,severity,category,message\ni-1,2024-01-01T00:00:00Z,error,disk,caf\xe9\n".encode(
            "latin-1"
        )
        + b"i-2,2024-01-01T00:05:00Z,error,disk,y\n",
        "line is not UTF-8 text (byte 0xe9)",
    ),
    "workloads.csv: ends before it starts": (
        "workloads.csv",
        "task_id,instance_id,start,end,cpu,memory\nt1,i-1,2024-01-01T02:00:00Z,2024-01-01T01:00:00Z,0.1,0.1\n"
        "t2,i-2,2024-01-01T02:00:00Z,,0.1,0.1\n",
        "end is before start",
    ),
    "workloads.csv: nan in a NOT NULL cell": (
        "workloads.csv",
        "task_id,instance_id,start,end,cpu,memory\nt1,i-1,2024-01-01T02:00:00Z,,nan,0.1\n"
        "t2,i-2,2024-01-01T02:00:00Z,,0.1,0.1\n",
        "cpu is NaN",
    ),
}


@pytest.mark.parametrize("kind", sorted(EVENT_FAULTS))
def test_a_bad_error_or_workload_row_is_quarantined_and_the_rest_stored(kind: str, tmp_path: Path) -> None:
    name, text, reason = EVENT_FAULTS[kind]
    _file(name, text)(tmp_path)
    repository, summary = _ingest(tmp_path)
    assert summary.stored == 18 and summary.reasons == {reason: 1}  # type: ignore[attr-defined]
    assert (summary.errors if name == "errors.csv" else summary.workloads) == 1  # type: ignore[attr-defined]
    [record] = repository.load_quarantine()
    assert record.source_file.endswith(name) and record.line == 2
    again = ingest_files(tmp_path, repository=repository, now=NOW)
    assert again.stored == again.errors == again.workloads == again.quarantined == 0
    assert len(repository.load_quarantine()) == 1 and len(repository.list_batches()) == 1


def test_the_corpus_has_at_least_twenty_kinds() -> None:
    assert len(ROW_FAULTS) + len(FAILURE_FAULTS) + len(FILE_FAULTS) >= 20
