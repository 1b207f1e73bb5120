"""`forewarn ingest logs`: real-format log lines into the history database, bad lines quarantined with file and
line, and the error-count features of the instances that logged them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from forewarn.cli import app
from forewarn.features.windows import compute_window_features
from forewarn.store.repository import Repository

SYSLOG = (
    "<3>Mar  1 00:10:00 web-1 kernel: EXT4-fs error (device sda1): ext4_find_entry: reading directory lblock 0\n"
    "<6>Mar  1 00:11:00 web-1 sshd[812]: Accepted publickey for deploy from 10.0.0.5 port 52144\n"
    "this line is not syslog\n"
    "<27>1 2024-03-01T00:20:00.000Z web-2 kernel - - - EDAC MC0: 1 CE memory read error on DIMM_A1\n"
)
JOURNAL = (
    "-- Logs begin at Fri 2024-03-01 00:00:00 UTC, end at Fri 2024-03-01 01:00:00 UTC. --\n"
    "2024-03-01T00:30:00+0000 web-2 sshd[900]: error: connect_to 10.0.0.7 port 22: failed.\n"
    "2024-03-01T00:31:00+0000 web-2 systemd[1]: Started Daily apt upgrade and clean activities.\n"
)
runner = CliRunner()


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("logs")
    (directory / "syslog").write_text(SYSLOG)
    (directory / "journal.txt").write_text(JOURNAL)
    (directory / "README.md").write_text("# Logs of the web tier\n\nCollected by rsyslog.\n")
    return directory


def _ingest(*args: str) -> dict[str, object]:
    result = runner.invoke(app, ["ingest", "logs", *args, "--json"])
    assert result.exit_code == 0, result.output
    summary: dict[str, object] = json.loads(result.output)
    return summary


def test_logs_land_as_errors_once_and_bad_lines_are_quarantined(logs: Path, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'history.db'}"
    first = _ingest(str(logs / "syslog"), "--format", "syslog", "--year", "2024", "--database", database)
    assert first["errors"] == 2 and first["quarantined"] == 1  # warnings and worse; the sshd line is info
    again = _ingest(str(logs / "syslog"), "--format", "syslog", "--year", "2024", "--database", database)
    assert again["errors"] == 0 and again["quarantined"] == 0
    journal = _ingest(str(logs / "journal.txt"), "--format", "journald", "--database", database)
    assert journal["errors"] == 1 and journal["quarantined"] == 0  # the "-- Logs begin" marker is not an error
    repository = Repository(database)
    errors = repository.load_errors()
    assert errors[["instance_id", "category"]].values.tolist() == [
        ["web-1", "disk"],
        ["web-2", "memory"],
        ["web-2", "network"],
    ]
    [bad] = repository.load_quarantine()
    assert (bad.source_file, bad.line, bad.row) == (str(logs / "syslog"), 3, {"text": "this line is not syslog"})
    assert "not a syslog" in bad.reason

    at = pd.to_datetime(["2024-03-01T00:25:00Z", "2024-03-01T00:40:00Z", "2024-03-01T02:00:00Z"], utc=True)
    telemetry = pd.DataFrame(
        {"instance_id": ["web-1"] * 3 + ["web-2"] * 3, "timestamp": list(at) * 2, "cpu": 0.5, "memory": 0.5}
    )
    features = compute_window_features(
        telemetry, errors=repository.errors_between(None, at[-1].to_pydatetime()), metrics=["cpu", "memory"]
    ).set_index(["instance_id", "event_timestamp"])
    assert features.loc[("web-1", at[0]), "err_disk_1h"] == 1
    assert features.loc[("web-1", at[2]), "err_disk_1h"] == 0  # the window has passed
    assert features.loc[("web-1", at[2]), "err_disk_6h"] == 1
    assert features.loc[("web-2", at[0]), ["err_memory_1h", "err_network_1h"]].tolist() == [1, 0]
    assert features.loc[("web-2", at[1]), ["err_memory_1h", "err_network_1h"]].tolist() == [1, 1]
    repository.dispose()


def test_a_directory_is_read_whole_and_the_table_names_the_quarantine(logs: Path, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'history.db'}"
    result = runner.invoke(app, ["ingest", "logs", str(logs), "--year", "2024", "--database", database])
    assert result.exit_code == 0, result.output
    assert "errors stored" in result.output and "rows quarantined" in result.output
    flat = result.output.replace("\n", "")
    assert f"{logs / 'syslog'}: 1 line(s) not parsed" in flat
    assert f"{logs / 'README.md'}: skipped, cannot tell the log format" in flat  # not a log: the others land
    assert re.search(r"errors stored\s*│\s*3\s*│", result.output)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/syslog"], "error: /nonexistent/syslog, field 'paths': no such log file or directory"),
        (["--format", "xml", "."], "unknown log format 'xml' (allowed: syslog, journald, bgl, hdfs"),
        (["--min-severity", "loud", "."], "unknown severity 'loud' (allowed: debug, info, warning"),
    ],
)
def test_a_wrong_path_or_option_is_one_line(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["ingest", "logs", *args, "--database", "sqlite://"])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
