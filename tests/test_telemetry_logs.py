"""parse_log on syslog/journald lines and on the real loghub samples; error_counts windows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from forewarn.errors import InputError
from forewarn.schemas import ErrorEvent
from forewarn.settings import shared_data_dir
from forewarn.telemetry.logformats import CATEGORIES, categorise
from forewarn.telemetry.logs import error_counts, parse_log

LOGHUB = shared_data_dir() / "loghub_samples"
needs_loghub = pytest.mark.skipif(not LOGHUB.is_dir(), reason=f"public data folder {LOGHUB} is absent")


def _write(tmp_path: Path, text: str, name: str = "log.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_syslog_rfc3164_and_5424_with_priority_severity(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "\n".join(
            [
                "<11>Mar  1 12:00:00 web-1 kernel: EXT4-fs error (device sda1): bad block",
                "Mar  1 12:00:05 web-1 sshd[812]: Connection closed by 10.0.0.9",
                '<164>1 2024-03-01T12:00:09.5Z db-2 postgres 991 ID47 [meta a="1"] out of memory',
                "this is not syslog",
            ]
        )
        + "\n",
    )
    result = parse_log(path, format="syslog", year=2024)
    events = result.events
    assert result.parsed == 3
    assert result.rejected[["line", "reason"]].values.tolist() == [[4, "not a syslog (RFC 3164 or 5424) line"]]
    assert events["instance_id"].tolist() == ["web-1", "web-1", "db-2"]
    assert events["severity"].tolist() == ["error", "info", "warning"]  # PRI 11 % 8 = 3 (err); keywords; 164 % 8 = 4
    assert events["category"].tolist() == ["disk", "network", "memory"]
    assert events["timestamp"].iloc[2] == pd.Timestamp("2024-03-01T12:00:09.5Z")
    assert events.index.tolist() == [1, 2, 3]


def test_journald_short_iso_and_markers_are_rejected_with_reason(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "\n".join(
            [
                "-- Boot 5e2d --",
                "2024-03-01T12:00:00+0100 node-7 kernel: watchdog: BUG: soft lockup - CPU#1 stuck",
                "2024-03-01T12:00:01+0000 node-7 systemd[1]: Started nginx.service.",
                "",
            ]
        )
        + "\n",
    )
    result = parse_log(path)  # auto
    assert result.format == "journald"
    assert result.events["timestamp"].iloc[0] == pd.Timestamp("2024-03-01T11:00:00Z")
    assert result.events["category"].tolist() == ["kernel", "application"]
    assert result.rejected["reason"].tolist() == ["journal marker line", "blank line"]


def test_rows_fit_the_error_event_schema(tmp_path: Path) -> None:
    path = _write(tmp_path, "2024-03-01T12:00:00Z n1 app[3]: request failed with exception\n")
    events = parse_log(path, format="journald").events
    event = ErrorEvent(**events.iloc[0].to_dict())
    assert (event.severity.value, event.category) == ("error", "application")


def test_unknown_format_lists_the_allowed(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"field 'format'.*allowed: syslog, journald, bgl"):
        parse_log(_write(tmp_path, "x\n"), format="xml")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="cannot tell the log format"):
        parse_log(_write(tmp_path, "hello\nworld\n"))


def test_categorise_covers_every_category() -> None:
    samples = ["I/O error on sda", "ECC memory error", "eth0 link down", "kernel panic", "HTTP 500", "hello"]
    assert [categorise(text) for text in samples] == list(CATEGORIES)


# (file, format, parsed, unparsed, categories that must appear, instances at least)
LOGHUB_CASES = [
    ("BGL/BGL_2k.log", "bgl", 2000, 0, {"kernel", "memory", "disk", "network", "application"}, 100),
    ("HDFS/HDFS_2k.log", "hdfs", 2000, 0, {"disk", "application"}, 1),
    ("OpenStack/OpenStack_2k.log", "openstack", 2000, 0, {"application", "disk", "memory", "network"}, 10),
    ("HPC/HPC_2k.log", "hpc", 2000, 0, {"network", "disk", "other"}, 100),
    ("Thunderbird/Thunderbird_2k.log", "thunderbird", 2000, 0, {"kernel", "network", "disk"}, 100),
]


@needs_loghub
@pytest.mark.parametrize(("name", "fmt", "parsed", "unparsed", "categories", "instances"), LOGHUB_CASES)
def test_loghub_samples(name: str, fmt: str, parsed: int, unparsed: int, categories: set[str], instances: int) -> None:
    explicit = parse_log(LOGHUB / name, format=fmt)  # type: ignore[arg-type]
    assert (explicit.parsed, explicit.unparsed) == (parsed, unparsed)
    assert categories <= set(explicit.events["category"])
    assert explicit.events["instance_id"].nunique() >= instances
    assert explicit.events["timestamp"].notna().all()
    assert parse_log(LOGHUB / name).format == fmt  # auto detection agrees


@needs_loghub
def test_bgl_severity_matches_the_level_column_of_the_structured_csv() -> None:
    events = parse_log(LOGHUB / "BGL" / "BGL_2k.log", format="bgl").events
    levels = pd.read_csv(LOGHUB / "BGL" / "BGL_2k.log_structured.csv")["Level"]
    expected = levels.map(
        {
            "INFO": "info",
            "WARNING": "warning",
            "SEVERE": "error",
            "ERROR": "error",
            "FATAL": "critical",
            "FAILURE": "critical",
        }
    )
    assert events["severity"].tolist() == expected.tolist()
    epoch = pd.read_csv(LOGHUB / "BGL" / "BGL_2k.log_structured.csv")["Timestamp"]
    assert (events["timestamp"].astype("int64") // 10**9).tolist() == epoch.tolist()


@needs_loghub
def test_openstack_events_belong_to_nova_instances() -> None:
    events = parse_log(LOGHUB / "OpenStack" / "OpenStack_2k.log", format="openstack").events
    assert events["instance_id"].str.fullmatch(r"[0-9a-f-]{36}").sum() == 535  # lines naming [instance: ...]


def test_error_counts_window_and_step() -> None:
    stamps = pd.to_datetime(["2024-03-01T00:01:00Z", "2024-03-01T00:04:00Z", "2024-03-01T00:12:00Z"])
    events = pd.DataFrame(
        {
            "instance_id": ["a", "a", "a"],
            "timestamp": stamps,
            "severity": ["error", "warning", "info"],
            "category": ["disk", "network", "disk"],
            "message": ["", "", ""],
        }
    )
    counts = error_counts(events, window_minutes=10, step_minutes=5)
    # windows (t-10, t]: 00:05 and 00:10 hold the two warning-or-worse events; 00:15 holds neither
    assert counts["timestamp"].dt.strftime("%H:%M").tolist() == ["00:05", "00:10"]
    assert counts[["errors_disk", "errors_network", "errors_total"]].values.tolist() == [[1, 1, 2], [1, 1, 2]]
    every = error_counts(events, window_minutes=10, step_minutes=5, min_severity="info")
    assert every["errors_total"].tolist() == [2, 2, 1, 1]
    with pytest.raises(InputError, match="field 'window_minutes'"):
        error_counts(events, window_minutes=1, step_minutes=5)


@needs_loghub
def test_error_counts_on_bgl_sum_to_events_times_steps() -> None:
    events = parse_log(LOGHUB / "BGL" / "BGL_2k.log", format="bgl").events
    counts = error_counts(events, window_minutes=60, step_minutes=5)
    assert counts["errors_total"].sum() == (events["severity"] != "info").sum() * 12
    assert set(counts.columns) == {"instance_id", "timestamp", *(f"errors_{c}" for c in CATEGORIES), "errors_total"}
