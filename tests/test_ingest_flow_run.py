"""The ingest flow under Prefect: a real Prometheus backfilled with promtool, the simulated fleet, and a
Prometheus that is down (a closed loopback port): the down one is reported in the flow run (state message
and table artifact) and the others still land; ``forewarn run ingest --at`` runs it from the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forewarn.cli import app
from forewarn.sim import SimConfig, write
from forewarn.store.repository import Repository
from forewarn.store.watermarks import WatermarkStore
from tests.servers import free_port
from tests.test_prometheus import prometheus

__all__ = ["prometheus"]  # fixture
ID_MAP = {"10.0.0.5:9100": "i-0001", "10.0.0.6:9100": "i-0002"}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(SimConfig(instances=4, days=0.2, seed=1), tmp_path_factory.mktemp("fleet") / "data")


def _configure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, specs: list[dict[str, object]]) -> str:
    database = f"sqlite:///{tmp_path / 'history.db'}"
    monkeypatch.setenv("FOREWARN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FOREWARN_DATABASE_URL", database)
    monkeypatch.setenv("FOREWARN_SOURCES", json.dumps(specs))
    return database


@pytest.mark.integration
@pytest.mark.slow
def test_a_source_that_times_out_is_reported_and_the_others_land(
    prefect_harness: None,
    prometheus: tuple[str, int],
    fleet: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.artifacts import Artifact

    from flows.ingest import ARTIFACT_KEY, ingest

    url, end = prometheus
    down = f"http://127.0.0.1:{free_port()}"
    specs: list[dict[str, object]] = [
        {"kind": "simulated", "dataset": str(fleet), "name": "fleet"},
        {"kind": "prometheus", "url": url, "step": "5m", "lookback": "1h", "instances": ID_MAP, "name": "node"},
        {"kind": "prometheus", "url": down, "timeout": 0.5, "attempts": 1, "retries": 1, "backoff": 0.05},
    ]
    database = _configure(monkeypatch, tmp_path, specs)
    at = datetime.fromtimestamp(end, UTC)
    state = ingest(at=at.isoformat(), return_state=True)
    assert state.is_failed()
    down_name = f"prometheus:{down.removeprefix('http://')}"
    assert state.message is not None and "1 of 3 source(s) did not land" in state.message
    assert down_name in state.message
    marks = WatermarkStore(Repository(database).engine)
    assert marks.get("fleet") is not None and marks.get("node") == at and marks.get(down_name) is None
    stored = Repository(database).load_telemetry()
    from_prometheus = stored[stored["timestamp"] >= at - timedelta(hours=1)]
    assert sorted(from_prometheus["instance_id"].unique()) == ["i-0001", "i-0002"]
    assert len(from_prometheus) == 2 * 12  # an hour at 5 minutes for the two mapped instances
    artifact = Artifact.get(ARTIFACT_KEY)
    assert artifact is not None
    rows = {row["source"]: row for row in json.loads(str(artifact.data))}
    assert rows[down_name]["landed"] == "NO" and "failed" in rows[down_name]["note"]
    assert rows["node"]["landed"] == "yes" and rows["node"]["rows stored"] == 24

    again = ingest(at=(at + timedelta(minutes=10)).isoformat(), return_state=True)
    assert again.is_failed()
    later = Repository(database).load_telemetry()
    assert not later.duplicated(["instance_id", "timestamp"]).any()
    assert marks.get("node") == at + timedelta(minutes=10)


@pytest.mark.slow
def test_forewarn_run_ingest_from_the_cli(
    prefect_harness: None, fleet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "one.csv").write_text("instance_id,timestamp,cpu\nvm-9,2024-03-01T00:00:00Z,0.5\n")
    database = _configure(monkeypatch, tmp_path, [{"kind": "drop", "directory": str(drop)}])
    result = CliRunner().invoke(app, ["run", "ingest", "--at", "2024-03-01T01:00:00Z"])
    assert result.exit_code == 0, result.output
    assert "1 source(s) landed, 1 telemetry rows stored" in result.output
    assert len(Repository(database).load_telemetry()) == 1 and (drop / "done" / "one.csv").exists()
    monkeypatch.setenv("FOREWARN_SOURCES", '[{"kind": "drop"}]')
    bad = CliRunner().invoke(app, ["run", "ingest"])
    assert bad.exit_code == 2
    assert "field 'FOREWARN_SOURCES[0].directory': entry 1 (drop): Field required" in bad.output
