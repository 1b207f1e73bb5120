"""A corpus of damaged data: datasets checked and ingested, importer files, Prometheus answers, log lines.

Every case starts from one small, good dataset (3 instances x 6 steps, failures, errors, workloads and a
fleet) or a tiny published file, breaks one thing, and states what must happen: no traceback; a bad file is
one line and exit 2; a bad row is quarantined with its reason while every good row is stored and counted;
and the same directory ingested twice stores nothing twice.
"""

from __future__ import annotations

import json
import lzma
import shutil
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner, Result

from forewarn.cli import app
from forewarn.ingest import ingest_files, open_repository
from forewarn.store import Repository
from forewarn.telemetry.logs import parse_log

RUNNER = CliRunner()
NOW = datetime(2024, 6, 1, tzinfo=UTC)
HEADER = "instance_id,timestamp,cpu,memory,disk_read,net_latency_ms,error_count"
TELEMETRY = [
    f"i-{i},2024-01-01T00:{m:02d}:00Z,0.{i}{m // 5},0.5,{i}.5,1{m},{i % 2}" for i in (1, 2, 3) for m in range(0, 30, 5)
]
FILES = {
    "failures.csv": "instance_id,timestamp,type,root_cause,recovery_minutes\n"
    "i-1,2024-01-01T01:00:00Z,sudden,hardware,30\ni-2,2024-01-01T02:00:00Z,memory_leak,software,45\n",
    "errors.csv": "instance_id,timestamp,severity,category,message\n"
    "i-1,2024-01-01T00:05:00Z,error,disk,sda read error\ni-2,2024-01-01T00:10:00Z,warning,memory,ecc corrected\n"
    "i-3,2024-01-01T00:15:00Z,critical,kernel,panic\n",
    "workloads.csv": "task_id,instance_id,start,end,cpu,memory,kind,data_size,expected_duration\n"
    "t1,i-1,2024-01-01T00:00:00Z,,0.2,0.1,batch,1,30\nt2,i-2,2024-01-01T00:00:00Z,2024-01-01T00:20:00Z,0.3,0.2,batch,2,20\n"
    "t3,i-3,2024-01-01T00:05:00Z,,0.1,0.1,service,,\n",
    "instances.csv": "instance_id,cpu_capacity,memory_capacity,zone\ni-1,2,4,a\ni-2,4,8,b\ni-3,8,16,c\n",
}
Breaker = Callable[[Path], None]


def good(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "telemetry.csv").write_text("\n".join([HEADER, *TELEMETRY]) + "\n")
    for name, text in FILES.items():
        (root / name).write_text(text)


def line(name: str, number: int, raw: bytes | str) -> Breaker:
    """Replace line ``number`` (the header is 1) of file ``name`` of the good dataset."""

    def apply(root: Path) -> None:
        good(root)
        path = root / name
        lines = path.read_bytes().split(b"\n")
        lines[number - 1] = raw.encode() if isinstance(raw, str) else raw
        path.write_bytes(b"\n".join(lines))

    return apply


def cell(name: str, number: int, column: str, value: str) -> Breaker:
    """Set one cell (by column name) of line ``number`` of file ``name``."""
    text = ("\n".join([HEADER, *TELEMETRY]) if name == "telemetry.csv" else FILES[name]).split("\n")
    fields = text[number - 1].split(",")
    fields[text[0].split(",").index(column)] = value
    return line(name, number, ",".join(fields))


def whole(name: str, raw: bytes | str) -> Breaker:
    def apply(root: Path) -> None:
        good(root)
        (root / name).write_bytes(raw.encode() if isinstance(raw, str) else raw)

    return apply


LONG = "i-1,2024-01-01T00:05:00Z," + "9" * 70_000 + ",0.5,1,1,0"
T = "telemetry.csv"

# kind -> (breaker, file with the bad row, its line, its reason, stored telemetry, errors, workloads, failures)
INGEST: dict[str, tuple[Breaker, str, int | None, str | None, int, int, int, int]] = {
    "1e200 in a metric": (cell(T, 3, "disk_read", "1e200"), T, 3, "disk_read beyond 1e+15", 17, 3, 3, 2),
    "1e200 in a fraction": (cell(T, 4, "cpu", "1e200"), T, 4, "cpu above 1", 17, 3, 3, 2),
    "absurd count": (cell(T, 5, "error_count", "1e13"), T, 5, "error_count beyond 1e+12", 17, 3, 3, 2),
    "absurd latency": (cell(T, 6, "net_latency_ms", "1e9"), T, 6, "net_latency_ms beyond 1e+08", 17, 3, 3, 2),
    "negative 1e200": (cell(T, 7, "disk_read", "-1e200"), T, 7, "disk_read is negative", 17, 3, 3, 2),
    "literal nan": (cell(T, 8, "cpu", "nan"), T, 8, "cpu is NaN", 17, 3, 3, 2),
    "literal NULL": (cell(T, 9, "memory", "NULL"), T, 9, "memory is NaN", 17, 3, 3, 2),
    "literal inf": (cell(T, 10, "memory", "inf"), T, 10, "memory is infinite", 17, 3, 3, 2),
    "empty metric cell keeps the row": (cell(T, 11, "memory", ""), T, None, None, 18, 3, 3, 2),
    "every metric empty": (line(T, 12, "i-2,2024-01-01T00:25:00Z,,,,,"), T, 12, "every metric is empty", 17, 3, 3, 2),
    "NUL in an instance id": (line(T, 13, b"i-3\x00x,2024-01-01T00:00:00Z,0.3,0.5,3.5,10,1"), T, 13,
                              "NUL byte in the line", 17, 3, 3, 2),
    "zone-less timestamp": (cell(T, 14, "timestamp", "2024-01-01T00:05:00"), T, 14,
                            "timestamp has no time zone (RFC 3339 needs Z or +hh:mm)", 17, 3, 3, 2),
    "bare date": (cell(T, 15, "timestamp", "2024-01-01"), T, 15, "timestamp is not an RFC 3339 timestamp", 17, 3, 3, 2),
    "year 9999": (cell(T, 16, "timestamp", "9999-01-01T00:00:00Z"), T, 16, "timestamp is not an RFC 3339 timestamp",
                  17, 3, 3, 2),
    "a 70 KB line": (line(T, 3, LONG), T, 3, "line is longer than 65,536 bytes", 17, 3, 3, 2),
    "a stray quote": (line(T, 3, '"i-1,2024-01-01T00:05:00Z,0.11,0.5,1.5,15,1'), T, 3,
                      "a quote is never closed on this line", 17, 3, 3, 2),
    "a bad byte in telemetry": (line(T, 17, b"i-3,2024-01-01T00:25:00Z,0.35,0.5,3.5,1\xff,1"), T, 17,
                                "line is not UTF-8 text (byte 0xff)", 17, 3, 3, 2),
    "too few fields": (line(T, 18, "i-3,2024-01-01T00:10:00Z,0.3"), T, 18, "fewer fields than the header",
                       17, 3, 3, 2),
    "errors.csv: one bad byte": (line("errors.csv", 2, b"i-1,2024-01-01T00:05:00Z,error,disk,caf\xe9"), "errors.csv",
                                 2, "line is not UTF-8 text (byte 0xe9)", 18, 2, 3, 2),
    "errors.csv: NUL in a message": (line("errors.csv", 3, b"i-2,2024-01-01T00:10:00Z,warning,memory,e\x00cc"),
                                     "errors.csv", 3, "NUL byte in the line", 18, 2, 3, 2),
    "errors.csv: zone-less time": (cell("errors.csv", 4, "timestamp", "2024-01-01 00:15:00"), "errors.csv", 4,
                                   "timestamp has no time zone (RFC 3339 needs Z or +hh:mm)", 18, 2, 3, 2),
    "errors.csv: empty instance": (cell("errors.csv", 2, "instance_id", ""), "errors.csv", 2, "instance_id is empty",
                                   18, 2, 3, 2),
    "errors.csv: a 70 KB message": (cell("errors.csv", 3, "message", "x" * 70_000), "errors.csv", 3,
                                    "line is longer than 65,536 bytes", 18, 2, 3, 2),
    "workloads.csv: nan in a NOT NULL cell": (cell("workloads.csv", 2, "cpu", "nan"), "workloads.csv", 2,
                                              "cpu is NaN", 18, 3, 2, 2),
    "workloads.csv: negative memory": (cell("workloads.csv", 3, "memory", "-1"), "workloads.csv", 3,
                                       "memory is negative", 18, 3, 2, 2),
    "workloads.csv: ends before it starts": (cell("workloads.csv", 3, "end", "2023-12-31T00:00:00Z"), "workloads.csv",
                                             3, "end is before start", 18, 3, 2, 2),
    "workloads.csv: empty start": (cell("workloads.csv", 4, "start", ""), "workloads.csv", 4,
                                   "start is not an RFC 3339 timestamp", 18, 3, 2, 2),
    "workloads.csv: 1e200 data size": (cell("workloads.csv", 2, "data_size", "1e200"), "workloads.csv", 2,
                                       "data_size beyond 1e+15", 18, 3, 2, 2),
    "failures.csv: bare date": (cell("failures.csv", 3, "timestamp", "2024-01-01"), "failures.csv", 3,
                                "timestamp is not an RFC 3339 timestamp", 18, 3, 3, 1),
}  # fmt: skip


def _rows(repository: Repository) -> dict[str, int]:
    return {
        "telemetry": len(repository.load_telemetry()),
        "errors": len(repository.load_errors()),
        "workloads": len(repository.load_workloads()),
        "failures": len(repository.load_failures()),
        "quarantine": len(repository.load_quarantine()),
        "batches": len(repository.list_batches()),
    }


def _clean(result: Result) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.output


RERUN = {
    "1e200 in a metric",
    "a stray quote",
    "empty metric cell keeps the row",
    "errors.csv: one bad byte",
    "workloads.csv: nan in a NOT NULL cell",
    "failures.csv: bare date",
}
"""Cases ingested twice (one per file kind; each run costs a Great Expectations validation)."""


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty history database at the newest migration, copied by each case (migrating takes a second)."""
    path = tmp_path_factory.mktemp("template") / "history.db"
    open_repository(f"sqlite:///{path}").dispose()
    return path


@pytest.mark.parametrize("kind", sorted(INGEST))
def test_ingest_quarantines_the_bad_row_keeps_the_rest_and_stores_nothing_twice(
    kind: str, tmp_path: Path, migrated: Path
) -> None:
    breaker, name, number, reason, telemetry, errors, workloads, failures = INGEST[kind]
    breaker(tmp_path / "data")
    shutil.copyfile(migrated, tmp_path / "history.db")
    url = f"sqlite:///{tmp_path / 'history.db'}"
    result = RUNNER.invoke(app, ["ingest", "file", str(tmp_path / "data"), "--database", url])
    assert result.exit_code == 0, _clean(result)
    assert "telemetry rows stored" in _clean(result)
    repository = open_repository(url)
    stored = _rows(repository)
    assert (stored["telemetry"], stored["errors"], stored["workloads"], stored["failures"]) == (
        telemetry,
        errors,
        workloads,
        failures,
    )
    records = repository.load_quarantine()
    if reason is None:
        assert records == []
    else:
        [record] = records
        assert record.source_file.endswith(name) and record.line == number and reason in record.reason.split("; ")
        assert all(len(str(value)) < 1100 for value in record.row.values())  # the payload is capped
    if kind in RERUN:
        again = ingest_files(tmp_path / "data", repository=repository, now=NOW)
        assert (again.stored, again.errors, again.workloads, again.failures, again.quarantined) == (0, 0, 0, 0, 0)
        assert _rows(repository) == stored


def test_an_empty_cell_is_missing_and_the_other_values_of_its_row_are_stored(tmp_path: Path) -> None:
    cell(T, 11, "memory", "")(tmp_path)
    repository = open_repository("sqlite://")
    summary = ingest_files(tmp_path, repository=repository, now=NOW)
    assert summary.stored == 18 and summary.samples == 18 * 5 - 1 and summary.quarantined == 0
    row = repository.load_telemetry().iloc[9]  # line 11: i-2 at 00:15
    assert row["instance_id"] == "i-2" and row["memory"] != row["memory"] and row["cpu"] == pytest.approx(0.23)


# kind -> (breaker, what the one line must say)
CHECK: dict[str, tuple[Breaker, str]] = {
    "1e200": (cell(T, 3, "disk_read", "1e200"), "telemetry.csv:3, field 'disk_read': 1e+200 is beyond"),
    "1e16 in a fraction": (cell(T, 4, "cpu", "1e16"), "telemetry.csv:4, field 'cpu': 1e+16 is beyond"),
    "absurd count": (cell(T, 5, "error_count", "1e13"), "telemetry.csv:5, field 'error_count'"),
    "literal nan": (cell(T, 6, "cpu", "nan"), "'nan' is not a number; leave the cell empty"),
    "infinity": (cell(T, 7, "memory", "inf"), "telemetry.csv:7, field 'memory': must be finite"),
    "text": (cell(T, 8, "memory", "high"), "telemetry.csv:8, field 'memory': 'high' is not a number"),
    "NUL byte": (line(T, 9, b"i-2\x00,2024-01-01T00:10:00Z,0.2,0.5,2.5,10,0"), "telemetry.csv:9: has a NUL byte"),
    "zone-less timestamp": (cell(T, 10, "timestamp", "2024-01-01T00:05:00"), "is not a timestamp with a zone"),
    "bare date": (cell(T, 11, "timestamp", "2024-01-01"), "telemetry.csv:11, field 'timestamp'"),
    "year 9999": (cell(T, 12, "timestamp", "9999-01-01T00:00:00Z"), "telemetry.csv:12, field 'timestamp'"),
    "a 70 KB line": (line(T, 3, LONG), "telemetry.csv:3: line is longer than 65,536 bytes"),
    "a 70 KB last line without newline": (whole(T, "\n".join([HEADER, *TELEMETRY[:2], LONG])), "telemetry.csv:4"),
    "stray quote": (line(T, 3, '"i-1,2024-01-01T00:05:00Z,0.11,0.5,1.5,15,1'), "telemetry.csv: cannot be parsed"),
    "not UTF-8": (line(T, 4, b"i-1,2024-01-01T00:10:00Z,0.12,0.5,1.5,1\xff,1"), "telemetry.csv: cannot be parsed"),
    "empty telemetry": (whole(T, ""), "telemetry.csv: file is empty"),
    "errors.csv zone-less": (cell("errors.csv", 2, "timestamp", "2024-01-01 00:05:00"), "errors.csv:2, field"),
    "workloads.csv nan cpu": (cell("workloads.csv", 2, "cpu", "nan"), "workloads.csv:2, field 'cpu'"),
    "failures.csv NA recovery": (cell("failures.csv", 2, "recovery_minutes", "NA"), "failures.csv:2, field"),
}


@pytest.mark.parametrize("kind", sorted(CHECK))
def test_dataset_check_refuses_a_damaged_dataset_in_one_line(kind: str, tmp_path: Path) -> None:
    breaker, message = CHECK[kind]
    breaker(tmp_path)
    result = RUNNER.invoke(app, ["dataset", "check", str(tmp_path)])
    output = _clean(result)
    assert result.exit_code == 2 and message in output.replace("\n", "") and output.count("\n") == 1, output


def test_dataset_check_accepts_the_good_dataset(tmp_path: Path) -> None:
    good(tmp_path)
    result = RUNNER.invoke(app, ["dataset", "check", str(tmp_path)])
    assert result.exit_code == 0 and "18 telemetry rows for 3 instances" in _clean(result).replace("\n", "")


BACKBLAZE = "date,serial_number,model,capacity_bytes,failure,smart_9_raw\n"
BB_ROWS = "2024-01-01,A1,m,100,0,5\n2024-01-02,A1,m,100,1,6\n2024-01-01,B2,m,100,0,7\n"
LANL = (
    "System,nodenumz,Prob Started,Prob Fixed,Down Time,Facilities,Hardware,Human Error,Network,Undetermined,Software\n"
)


def _xz_truncated(text: str) -> bytes:
    return lzma.compress(text.encode())[:30]


# kind -> (importer, file name, file content, what the one line must say)
IMPORTS: dict[str, tuple[str, str, bytes | str, str]] = {
    "backblaze empty": ("backblaze", "drives.csv", "", "file is empty"),
    "backblaze not UTF-8": ("backblaze", "drives.csv", BACKBLAZE.encode() + b"2024-01-01,A\xff,m,1,0,5\n", "cannot be"),
    "backblaze unclosed quote": ("backblaze", "drives.csv", BACKBLAZE + '2024-01-01,"A1,m,1,0,5\n', "cannot be read"),
    "backblaze missing columns": ("backblaze", "drives.csv", "date,model\n2024-01-01,m\n", "missing column(s)"),
    "backblaze bad date": ("backblaze", "drives.csv", BACKBLAZE + "01/01/2024,A1,m,1,0,5\n", "is not a date"),
    "backblaze 1e200": ("backblaze", "drives.csv", BACKBLAZE + "2024-01-01,A1,m,1,0,1e200\n", "smart_9_raw"),
    "lanl truncated xz": ("lanl", "lanl-failure-data.csv.xz", _xz_truncated(LANL + "20,1,01/01/2004 10:00,,5,,x,,,,\n"),
                          "cannot be read"),
    "lanl empty": ("lanl", "lanl-failure-data.csv", "", "cannot be read"),
    "lanl not UTF-8": ("lanl", "lanl-failure-data.csv", LANL.encode() + b"2\xff,1,01/01/2004 10:00,,5,,x,,,,\n",
                       "cannot be read"),
    "lanl missing column": ("lanl", "lanl-failure-data.csv", "System,nodenumz\n1,2\n", "not a LANL failure file"),
    "fta not UTF-8": ("fta", "event_trace.tab", b"# node_name event_type\n\xff\t1\n", "cannot be"),
    "fta empty": ("fta", "event_trace.tab", "", "not an FTA table"),
    "fta bad event type": ("fta", "event_trace.tab",
                           "# node_name event_type event_start_time event_stop_time\nn1\t7\t1\t2\n", "event_type"),
    "fta truncated xz": ("fta", "event_trace.tab.xz", _xz_truncated("# node_name event_type\nn1\t1\n"), "cannot be"),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(IMPORTS))
def test_an_importer_given_a_damaged_file_says_one_line_and_writes_nothing(kind: str, tmp_path: Path) -> None:
    importer, name, content, message = IMPORTS[kind]
    source = tmp_path / name
    source.write_bytes(content.encode() if isinstance(content, str) else content)
    result = RUNNER.invoke(app, ["import", importer, str(source), "--out", str(tmp_path / "out")])
    output = _clean(result)
    assert result.exit_code == 2 and message in output.replace("\n", ""), output
    assert not (tmp_path / "out" / "telemetry.csv").exists()


def test_an_importer_refuses_an_out_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "drives.csv").write_text(BACKBLAZE + BB_ROWS)
    (tmp_path / "taken").write_text("mine")
    result = RUNNER.invoke(app, ["import", "backblaze", str(tmp_path / "drives.csv"), "--out", str(tmp_path / "taken")])
    assert result.exit_code == 2 and "is a file" in _clean(result) and (tmp_path / "taken").read_text() == "mine"


def test_importing_or_simulating_over_an_old_dataset_removes_its_files(tmp_path: Path) -> None:
    import pandas as pd

    out = tmp_path / "out"
    out.mkdir()
    stale = pd.DataFrame({"instance_id": ["old"], "timestamp": [pd.Timestamp(NOW)], "smart_9_raw": [1.0]})
    stale.to_parquet(out / "telemetry.parquet")
    (out / "notes.txt").write_text("kept")
    (tmp_path / "drives.csv").write_text(BACKBLAZE + BB_ROWS)
    result = RUNNER.invoke(app, ["import", "backblaze", str(tmp_path / "drives.csv"), "--out", str(out)])
    assert result.exit_code == 0, _clean(result)
    assert not (out / "telemetry.parquet").exists() and (out / "notes.txt").read_text() == "kept"
    checked = RUNNER.invoke(app, ["dataset", "check", str(out)])
    assert checked.exit_code == 0 and "for 2 instances" in _clean(checked)
    stale.to_parquet(out / "telemetry.parquet")
    simulated = RUNNER.invoke(app, ["simulate", "--out", str(out), "--instances", "3", "--days", "0.1"])
    assert simulated.exit_code == 0, _clean(simulated)
    assert not (out / "telemetry.parquet").exists() and (out / "telemetry.csv").exists()


class _Prometheus(BaseHTTPRequestHandler):
    """Answers every query_range with ``server.answer`` (bytes), or a good matrix when it is None."""

    def do_GET(self) -> None:
        answer = self.server.answer  # type: ignore[attr-defined]
        if answer is None:
            start = float(parse_qs(urlsplit(self.path).query)["start"][0])
            series = [{"metric": {"instance": "i-1"}, "values": [[start, "0.5"]]}]
            answer = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": series}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def prometheus() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Prometheus)
    server.answer = None  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def _matrix(values: object, labels: object = None) -> bytes:
    series = [{"metric": labels if labels is not None else {"instance": "i-1"}, "values": values}]
    return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": series}}).encode()


# kind -> (the answer, what the one line must say)
ANSWERS: dict[str, tuple[bytes, str]] = {
    "a text value": (_matrix([[1700000000, "abc"]]), "time and value must be numbers"),
    "a list body": (b"[1, 2]", "a JSON list, not an object"),
    "data null": (b'{"status": "success", "data": null}', "'data: None', not an object"),
    "a timestamp of 1e20": (_matrix([[1e20, "1"]]), "is not a Unix time before the year 2262"),
    "a pair without a value": (_matrix([[1700000000]]), "not a (time, value) pair"),
    "values not a list": (_matrix("many"), "not a list of (time, value) pairs"),
    "labels not a mapping": (_matrix([[1700000000, "1"]], labels=[1, 2]), "not names to text"),
    "a label that is a list": (_matrix([[1700000000, "1"]], labels={"instance": ["a"]}), "not names to text"),
    "result not a list": (b'{"status": "success", "data": {"resultType": "matrix", "result": {}}}', "not a list"),
    "not JSON": (b"<html>hello</html>", "without JSON"),
    "a vector": (b'{"status": "success", "data": {"resultType": "vector", "result": []}}', "got vector"),
    "an error with a huge text": (
        json.dumps({"status": "error", "error": "x" * 20_000}).encode(),
        "rejected the query",
    ),
}


@pytest.mark.parametrize("kind", sorted(ANSWERS))
def test_a_malformed_prometheus_answer_is_one_line(kind: str, prometheus: ThreadingHTTPServer, tmp_path: Path) -> None:
    answer, message = ANSWERS[kind]
    prometheus.answer = answer  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{prometheus.server_address[1]}"
    database = f"sqlite:///{tmp_path / 'h.db'}"
    result = RUNNER.invoke(app, ["ingest", "prometheus", "--url", url, "--since", "1h", "--database", database])
    output = _clean(result)
    assert result.exit_code == 2 and message in output.replace("\n", "") and len(output) < 600, output
    assert open_repository(database).list_batches().empty


def test_a_good_prometheus_answer_is_stored(prometheus: ThreadingHTTPServer, tmp_path: Path) -> None:
    prometheus.answer = None  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{prometheus.server_address[1]}"
    database = f"sqlite:///{tmp_path / 'h.db'}"
    result = RUNNER.invoke(
        app, ["ingest", "prometheus", "--url", url, "--since", "1h", "--step", "5m", "--database", database]
    )
    assert result.exit_code == 0, _clean(result)
    assert len(open_repository(database).load_telemetry()) == 1


# kind -> (the arguments after `ingest prometheus`, what the one line must say)
FLAGS: dict[str, tuple[list[str], str]] = {
    "an ftp URL": (["--url", "ftp://127.0.0.1/x"], "is not an http(s) URL"),
    "a URL without a host": (["--url", "http://"], "is not an http(s) URL"),
    "--since 999999999w": (["--url", "http://127.0.0.1:9", "--since", "999999999w"], "is longer than 366 days"),
    "--since 5000d": (["--url", "http://127.0.0.1:9", "--since", "5000d"], "is longer than 366 days"),
    "--step 0m": (["--url", "http://127.0.0.1:9", "--step", "0m"], "must be longer than zero"),
    "--since text": (["--url", "http://127.0.0.1:9", "--since", "soon"], "is not a duration"),
}


@pytest.mark.parametrize("kind", sorted(FLAGS))
def test_a_bad_prometheus_flag_is_one_line(kind: str, tmp_path: Path) -> None:
    arguments, message = FLAGS[kind]
    database = f"sqlite:///{tmp_path / 'h.db'}"
    result = RUNNER.invoke(app, ["ingest", "prometheus", *arguments, "--database", database])
    output = _clean(result)
    assert result.exit_code == 2 and message in output.replace("\n", ""), output


GOOD_LOG = "2024-03-01T12:00:00+00:00 host1 kernel: disk error on sda\n2024-03-01T12:01:00+00:00 host1 kernel: ok\n"
# kind -> (a log file with one damaged line among good ones, the format, the reason the line is rejected)
LOGS: dict[str, tuple[bytes, str, str]] = {
    "journald year 9999": (b"9999-12-31T23:59:59+00:00 host1 kernel: disk error\n", "journald", "out of range"),
    "journald year 9999 behind UTC": (b"9999-12-31T23:59:59-05:00 host1 kernel: x\n", "journald", "bad timestamp"),
    "RFC 5424 year 9999": (b"<11>1 9999-12-31T23:59:59Z host1 app - - - disk failed\n", "syslog", "out of range"),
    "BGL epoch in the year 5138": (
        b"- 99999999999 2005.06.03 R02-M1 2005-06-03-15.42.50.363779 R02-M1 RAS KERNEL INFO x\n",
        "bgl",
        "out of range",
    ),
    "a 100 KB line": (b"2024-03-01T12:02:00+00:00 host1 kernel: " + b"x" * 100_000 + b"\n", "journald", "longer than"),
    "a NUL byte": (b"2024-03-01T12:02:00+00:00 host1\x00 kernel x\n", "journald", "not a journalctl"),
}


@pytest.mark.parametrize("kind", sorted(LOGS))
def test_the_log_parser_rejects_a_damaged_line_and_keeps_the_others(kind: str, tmp_path: Path) -> None:
    damaged, fmt, reason = LOGS[kind]
    path = tmp_path / "host1.log"
    head = GOOD_LOG if fmt == "journald" else ""
    path.write_bytes(head.encode() + damaged)
    parsed = parse_log(path, format=fmt)  # type: ignore[arg-type]
    assert parsed.parsed == (2 if head else 0) and parsed.unparsed == 1
    assert reason in parsed.rejected["reason"].iloc[0]
    assert len(parsed.rejected["text"].iloc[0]) < 2_000


def test_the_corpus_has_at_least_sixty_cases() -> None:
    assert len(INGEST) + len(CHECK) + len(IMPORTS) + len(ANSWERS) + len(FLAGS) + len(LOGS) >= 60


def test_one_absurd_value_sends_its_instance_to_the_fallback_and_the_fleet_is_scored(tmp_path: Path) -> None:
    """A value of 1e200 already in the history (stored before the bounds) reaches the features: they are
    clipped and counted, the model scores every other instance, and that one is left to the fallback with
    the reason in the plan's notes."""
    import numpy as np
    import pandas as pd
    import xgboost as xgb

    from forewarn import compose
    from forewarn.cycle import FrameScoring, run_cycle
    from forewarn.dataset import Dataset
    from forewarn.features.windows import CLIPPED, compute_window_features
    from forewarn.model.calibrate import Calibrator
    from forewarn.model.scoring import TrainedModel
    from forewarn.replay import model_scorer
    from forewarn.service import Context
    from forewarn.settings import Settings

    ids = [f"i{n}" for n in range(5)]
    stamps = pd.date_range("2024-03-01", periods=24, freq="5min", tz="UTC")
    rng = np.random.default_rng(1)
    telemetry = pd.DataFrame(
        {
            "instance_id": np.repeat(ids, len(stamps)),
            "timestamp": np.tile(stamps, len(ids)),
            "cpu": rng.uniform(0.1, 0.9, len(ids) * len(stamps)),
            "disk_read": rng.uniform(0, 5, len(ids) * len(stamps)),
        }
    )
    telemetry.loc[(telemetry["instance_id"] == "i2") & (telemetry["timestamp"] == stamps[-3]), "disk_read"] = 1e200
    failures = pd.DataFrame({"instance_id": pd.Series(dtype=str), "timestamp": pd.Series(dtype="M8[ns, UTC]")})
    dataset = Dataset(telemetry=telemetry, failures=failures)
    features = compute_window_features(telemetry, metrics=["cpu", "disk_read"])
    assert features.attrs[CLIPPED] > 0
    names = [c for c in features.columns if c not in ("instance_id", "event_timestamp")]
    assert np.isfinite(features[names].fillna(0).to_numpy()).all()

    train = features[features["instance_id"] != "i2"]
    matrix = xgb.DMatrix(train[names].astype(np.float32), label=(train["cpu_mean_1h"] > 0.5).astype(int))
    booster = xgb.train({"nthread": 1, "objective": "binary:logistic"}, matrix, num_boost_round=5)
    calibrator = Calibrator(knots_x=[0.0, 1.0], knots_y=[0.0, 1.0])
    model = TrainedModel(booster, calibrator, feature_names=names, horizon_minutes=60, version="m-test")

    ctx = Context(settings=Settings(home=tmp_path, database_url=""), dry_run=True)
    now = stamps[-1].to_pydatetime()
    cloud = compose.cloud(ctx, dataset, at=now)
    result = run_cycle(ctx, cloud, now, scoring=FrameScoring(features, model_scorer(model)), model_version="m-test")
    assert sorted(s.instance_id for s in result.scores) == ["i0", "i1", "i3", "i4"]
    assert {s.model_version for s in result.scores} == {"m-test"} and result.stale == ["i2"]
    assert result.plan is not None
    [note] = [n for n in ctx.journal.get(result.plan.plan_id).notes if n.startswith("i2:")]
    assert "not scored by the model" in note and "disk_read" in note and "fallback" in note
