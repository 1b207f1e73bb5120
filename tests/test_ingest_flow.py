"""The ingest flow's sources and step, without the engine: several sources into SQLite behind watermarks.

Incremental pulls advance each watermark and store nothing twice; a late sample lands once; a drop
directory takes a good file and rejects a broken one; a syslog export becomes error events; a bad
FOREWARN_SOURCES entry is one line naming the file, the entry and the field.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from forewarn.dataset import read_dataset
from forewarn.errors import ConfigError, TransientAdapterError
from forewarn.ingest import ingest_files, open_repository
from forewarn.sim import SimConfig, write
from forewarn.sources.drop import DropDirectorySource
from forewarn.sources.logs import LogFileSource
from forewarn.sources.prometheus import PrometheusPull
from forewarn.sources.replay import DatasetReplaySource
from forewarn.sources.specs import load_specs
from forewarn.sources.step import ingest_source
from forewarn.store.repository import Repository
from forewarn.store.watermarks import WatermarkStore
from tests.servers import free_port

T0 = datetime(2024, 3, 1, tzinfo=UTC)
SYSLOG = (
    "Mar  1 00:10:00 i-0001 kernel: EXT4-fs error (device sda1): I/O error\n"
    "Mar  1 00:11:00 i-0002 sshd[12]: Accepted password for bob\n"
    "garbage line\n"
    "Mar  1 01:30:00 i-0003 kernel: EDAC MC0: memory ECC error on DIMM 2\n"
)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(SimConfig(instances=4, days=0.2, seed=1), tmp_path_factory.mktemp("fleet") / "data")


@pytest.fixture
def repository(tmp_path: Path) -> Repository:
    return open_repository(f"sqlite:///{tmp_path / 'history.db'}")


def _drop(directory: Path, name: str, rows: list[str]) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text("instance_id,timestamp,cpu,memory\n" + "".join(f"{r}\n" for r in rows))
    return path


def test_several_sources_land_incrementally_and_never_twice(
    fleet: Path, tmp_path: Path, repository: Repository
) -> None:
    (tmp_path / "syslog").write_text(SYSLOG)
    drop = tmp_path / "drop"
    _drop(drop, "late.csv", ["i-0001,2024-03-01T00:02:30Z,0.5,0.5"])
    sources = [
        DatasetReplaySource(fleet, name="fleet"),
        LogFileSource([str(tmp_path / "sys*")], name="syslog", year=2024),
        DropDirectorySource(drop, name="drop"),
    ]
    expected = read_dataset(fleet)
    marks = WatermarkStore(repository.engine)
    for step, now in enumerate([T0 + timedelta(hours=1), T0 + timedelta(hours=2), T0 + timedelta(hours=2)]):
        reports = [ingest_source(s, repository=repository, now=now, retries=0) for s in sources]
        assert all(r.landed for r in reports)
        assert marks.get("fleet") == marks.get("syslog") == now
        visible = expected.telemetry[expected.telemetry["timestamp"] <= pd.Timestamp(now)]
        assert len(repository.load_telemetry()) == len(visible) + 1  # the dropped late sample, once
        if step == 2:
            assert reports[0].summary is not None and reports[0].summary.stored == 0
    errors = repository.load_errors()
    from_log = errors[errors["message"].str.contains("EXT4|ECC")]
    assert sorted(from_log["instance_id"]) == ["i-0001", "i-0003"]  # warnings and worse, each once
    assert (
        len(errors) == len(expected.errors[expected.errors["timestamp"] <= pd.Timestamp(T0 + timedelta(hours=2))]) + 2
    )
    workloads = repository.load_workloads()
    assert not workloads.duplicated(["task_id", "instance_id", "start"]).any()
    assert (drop / "done" / "late.csv").exists()


def test_a_late_sample_before_the_watermark_lands_once(fleet: Path, tmp_path: Path, repository: Repository) -> None:
    drop = tmp_path / "drop"
    replay = DatasetReplaySource(fleet, name="fleet")
    ingest_source(replay, repository=repository, now=T0 + timedelta(hours=1), retries=0)
    before = len(repository.load_telemetry())
    source = DropDirectorySource(drop, name="drop")
    _drop(drop, "a.csv", ["i-0002,2024-03-01T00:07:00Z,0.25,0.5", "i-0002,2024-03-01T00:05:00Z,0.9,0.9"])
    first = ingest_source(source, repository=repository, now=T0 + timedelta(hours=1), retries=0)
    assert first.summary is not None and first.summary.stored == 1 and first.summary.already_stored == 1
    _drop(drop, "b.csv", ["i-0002,2024-03-01T00:07:00Z,0.25,0.5"])  # the same late sample again
    again = ingest_source(source, repository=repository, now=T0 + timedelta(hours=1), retries=0)
    assert again.summary is not None and again.summary.stored == 0 and again.summary.already_stored == 1
    assert len(repository.load_telemetry()) == before + 1


def test_drop_directory_takes_the_good_file_and_rejects_the_broken_one(tmp_path: Path, repository: Repository) -> None:
    drop = tmp_path / "drop"
    _drop(drop, "good.csv", ["vm-1,2024-03-01T00:00:00Z,0.5,0.5", "vm-1,2024-03-01T00:05:00Z,lots,0.5"])
    (drop / "broken.csv").write_text("just some text\n")
    (drop / "partial.csv.tmp").write_text("still being written")
    source = DropDirectorySource(drop)
    report = ingest_source(source, repository=repository, now=T0 + timedelta(hours=1), retries=0)
    assert report.landed and report.summary is not None and report.summary.stored == 1
    assert any("rejected broken.csv" in note for note in report.summary.notes)
    assert (drop / "rejected" / "broken.csv").exists() and (drop / "rejected" / "broken.csv.reason").exists()
    assert (drop / "done" / "good.csv").exists() and (drop / "partial.csv.tmp").exists()
    quarantined = repository.load_quarantine()
    assert [(q.line, q.reason) for q in quarantined] == [(3, "cpu is not a number")]
    assert quarantined[0].source_file.endswith("good.csv")
    nothing = ingest_source(source, repository=repository, now=T0 + timedelta(hours=2), retries=0)
    assert nothing.summary is not None and nothing.summary.stored == 0 and nothing.summary.quarantined == 0


def test_a_syslog_export_becomes_error_events(tmp_path: Path, repository: Repository) -> None:
    log = tmp_path / "messages"
    log.write_text(SYSLOG)
    source = LogFileSource([str(log)], year=2024, min_severity="info")
    pulled = source.pull(None, T0 + timedelta(hours=1))
    assert pulled.errors is not None
    assert pulled.errors[["instance_id", "category"]].values.tolist() == [["i-0001", "disk"], ["i-0002", "other"]]
    assert any("line 3" in note for note in pulled.notes)  # the garbage line, reported
    report = ingest_source(source, repository=repository, now=T0 + timedelta(hours=1), retries=0)
    assert report.summary is not None and report.summary.errors == 2
    later = ingest_source(source, repository=repository, now=T0 + timedelta(hours=3), retries=0)
    assert later.summary is not None and later.summary.errors == 1  # the 01:30 line; the others not again
    assert len(repository.load_errors()) == 3


def test_ingesting_a_directory_twice_stores_errors_and_workloads_once(fleet: Path, repository: Repository) -> None:
    first = ingest_files(fleet, repository=repository)
    assert first.errors > 0 and first.workloads > 0
    again = ingest_files(fleet, repository=repository)
    assert again.errors == 0 and again.workloads == 0
    assert len(repository.load_errors()) == first.errors and len(repository.load_workloads()) == first.workloads


def test_a_source_that_is_down_is_retried_and_keeps_its_watermark(repository: Repository) -> None:
    source = PrometheusPull(f"http://127.0.0.1:{free_port()}", name="down", timeout=0.5, attempts=1)
    with pytest.raises(TransientAdapterError, match=r"Prometheus at http://127\.0\.0\.1"):
        ingest_source(source, repository=repository, now=T0, retries=2, backoff=0.01)
    assert WatermarkStore(repository.engine).get("down") is None


def test_credentials_never_name_a_source() -> None:
    [spec] = load_specs('[{"kind": "prometheus", "url": "https://bob:s3cret@prom.example:9090/"}]')
    assert spec.source_name == "prometheus:prom.example:9090"
    source = PrometheusPull("https://bob:s3cret@prom.example:9090/")
    assert "s3cret" not in source.name and "s3cret" not in source.reader.url


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- kind: cloud\n- kind: prometheus\n  url: http://x\n  step: 30s\n", ":2, field 'step': entry 2 (prometheus)"),
        ("- kind: logs\n  paths: [a]\n  format: xml\n", "field 'format': entry 1 (logs): 'xml' is not allowed"),
        (
            "- kind: dropbox\n",
            "entry 1: unknown kind (allowed: prometheus, cloudwatch, logs, drop, simulated, fleet, cloud)",
        ),
        ("- kind: drop\n  directory: d\n  dir: d\n", "field 'dir': entry 1 (drop): unknown field (allowed: backoff,"),
        (
            "- kind: fleet\n  frames: [failures, alerts]\n",
            "field 'frames.1': entry 1 (fleet): 'alerts' is not allowed (allowed: telemetry, errors, failures,",
        ),
    ],
)
def test_a_bad_spec_names_file_entry_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_specs(str(path))
    assert str(caught.value).startswith(str(path)) and message in str(caught.value)


def test_a_bad_json_setting_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"FOREWARN_SOURCES\[0\]\.url': entry 1 \(prometheus\): Field required"):
        load_specs('[{"kind": "prometheus"}]')


def test_a_fleet_source_lands_only_the_frames_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """With telemetry from a Prometheus scraping the fleet, the fleet source brings its failures only."""
    from forewarn.fleet_service.client import FleetApi, FleetSource
    from forewarn.fleet_service.wire import pulled_to_json
    from forewarn.telemetry.sources import Pulled

    at = pd.Timestamp("2024-03-01T00:00:00Z")
    whole = Pulled(
        until=at.to_pydatetime(),
        telemetry=pd.DataFrame({"instance_id": ["i-1"], "timestamp": [at], "cpu": [0.5]}),
        failures=pd.DataFrame(
            {
                "instance_id": ["i-1"],
                "timestamp": [at],
                "type": ["crash"],
                "root_cause": ["x"],
                "recovery_minutes": [1.0],
            }
        ),
        recoveries=pd.DataFrame({"instance_id": ["i-2"], "timestamp": [at], "recovery_minutes": [5.0]}),
    )
    monkeypatch.setattr(FleetApi, "get", lambda self, path, **params: pulled_to_json(whole))
    since = at.to_pydatetime()
    only = FleetSource(frames=["failures"]).pull(since, since + timedelta(hours=1))
    assert only.telemetry is None and only.failures is not None and only.recoveries is not None
    assert len(only.failures) == 1 and len(only.recoveries) == 1
    no_failures = FleetSource(frames=["telemetry"]).pull(since, since + timedelta(hours=1))
    assert no_failures.failures is None and no_failures.recoveries is None and no_failures.telemetry is not None


def test_an_overlapping_run_leaves_the_source_to_the_one_ingesting_it(fleet: Path, repository: Repository) -> None:
    from forewarn.sources.step import LEASE_TTL
    from forewarn.store.lease import HOST, LeaseStore

    source = DatasetReplaySource(fleet, name="fleet")
    leases = LeaseStore(repository.engine)
    assert leases.acquire("ingest:fleet", f"{HOST}:1:other-run", ttl=LEASE_TTL)  # PID 1 runs: a live holder

    skipped = ingest_source(source, repository=repository, now=T0 + timedelta(hours=1), retries=0)

    assert skipped.landed and skipped.watermark is None and len(repository.load_telemetry()) == 0
    assert skipped.summary is not None and "another run is ingesting" in skipped.summary.notes[0]
    leases.release("ingest:fleet", f"{HOST}:1:other-run")
    landed = ingest_source(source, repository=repository, now=T0 + timedelta(hours=1), retries=0)
    assert landed.summary is not None and landed.summary.stored == len(repository.load_telemetry()) > 0
