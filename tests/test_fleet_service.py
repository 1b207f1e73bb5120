"""``forewarn fleet serve`` as a user runs it: a real service on a free loopback port, stopped by its PID.

What an action does through the API outlives a kill -9; the exposition gives back the fleet's own values
through the shipped PromQL's arithmetic; pulls are deterministic and adjacent windows share no row; fleet time
runs at the speed asked; failures the fleet emits are what its cloud says; and the ``fleet`` source lands rows
in the history through the real ingest flow.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.simulated_remote import RemoteSimulatedAdapter
from forewarn.errors import AdapterError, NotFoundError
from forewarn.fleet_service.client import FleetApi, FleetSource
from forewarn.settings import PROJECT_ROOT
from tests.servers import free_port, start, stop, wait_for_port

pytestmark = pytest.mark.integration
START = "2024-03-04T00:00:00Z"
OPTIONS = ["--size", "6", "--seed", "3", "--failure-rate", "3", "--speed", "60", "--history-days", "1"]


def _serve(state: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-c", "from forewarn.cli import main; main()", "fleet", "serve"]
    argv += ["--state-dir", str(state), "--port", str(port), "--start", START, *OPTIONS]
    process = start(argv, log=log, env={"PYTHONPATH": str(PROJECT_ROOT)})
    try:
        wait_for_port(port, timeout=90, process=process)
    except (RuntimeError, TimeoutError):
        stop(process, sig=signal.SIGKILL)
        raise AssertionError(log.read_text()) from None
    return process


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    where = tmp_path_factory.mktemp("fleet")
    port = free_port()
    process = _serve(where / "state", port, where / "serve.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process, sig=signal.SIGTERM)


def _now(url: str) -> datetime:
    return datetime.fromisoformat(FleetApi(url).get("/api/clock")["now"])


def test_actions_outlive_a_kill_and_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = _serve(tmp_path / "state", port, tmp_path / "serve-1.log")
    try:
        monkeypatch.setenv("FOREWARN_FLEET_URL", url)
        monkeypatch.setenv("FOREWARN_HOME", str(tmp_path / "home"))
        from forewarn.compose import cloud
        from forewarn.service import context

        adapter = cloud(context(dry_run=False))
        assert isinstance(adapter, RemoteSimulatedAdapter)
        adapter.cordon("i-0002", key="plan-1/cordon")
        adapter.reserve("i-0003", 0.25, key="plan-1/reserve")
        before = adapter.scale("i-0004", factor=1.0, key="plan-1/scale")
        with pytest.raises(NotFoundError):
            adapter.cordon("i-9999", key="plan-1/nothing")
    finally:
        stop(process, sig=signal.SIGKILL)
    process = _serve(tmp_path / "state", port, tmp_path / "serve-2.log")
    try:
        again = RemoteSimulatedAdapter(url)
        views = {i.instance_id: i for i in again.list_instances()}
        assert views["i-0002"].state.value in {"cordoned", "failed"} and "i-0002" in again.state.cordoned
        assert views["i-0003"].reserved == pytest.approx(0.25)
        again.cordon("i-0002", key="plan-1/cordon")  # the same key: done already, nothing new
        assert again.scale("i-0004", factor=1.0, key="plan-1/scale") == before
        with pytest.raises(AdapterError, match="already used for cordon"):
            again.uncordon("i-0002", key="plan-1/cordon")
        status = FleetApi(url).get("/api/status")
        assert status["keys"] == 3 and status["cordoned"] == ["i-0002"]
    finally:
        stop(process, sig=signal.SIGTERM)


def _scrape(url: str, at: pd.Timestamp) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = FleetApi(url).get("/metrics", at=at.isoformat())
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _per_instance(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **match: str) -> pd.Series:
    rows = [
        (dict(labels)["instance"], value)
        for (metric, labels), value in samples.items()
        if metric == name and all(dict(labels).get(k) == v for k, v in match.items())
    ]
    frame = pd.DataFrame(rows, columns=["instance", "value"])
    return frame.groupby("instance")["value"].mean()


def test_the_exposition_gives_back_the_fleets_values(fleet: str) -> None:
    t2 = pd.Timestamp(START) - pd.Timedelta(hours=3)
    t1 = t2 - pd.Timedelta(minutes=15)
    first, second = _scrape(fleet, t1), _scrape(fleet, t2)
    seconds = (t2 - t1).total_seconds()
    pulled = FleetSource(fleet).pull(t1.to_pydatetime(), t2.to_pydatetime())
    assert pulled.telemetry is not None
    window = pulled.telemetry.groupby("instance_id").mean(numeric_only=True)
    last = pulled.telemetry[pulled.telemetry["timestamp"] == t2].set_index("instance_id")
    whole = window.loc[window.index.intersection(last.index)]
    whole = whole[pulled.telemetry.groupby("instance_id").size().reindex(whole.index) == 3]
    assert len(whole) >= 3, "too few instances up through the window"

    def rate(name: str, **match: str) -> pd.Series:
        return (_per_instance(second, name, **match) - _per_instance(first, name, **match)) / seconds

    ids = whole.index
    cpu = 1 - rate("node_cpu_seconds_total", mode="idle")
    assert cpu[ids].to_numpy() == pytest.approx(whole["cpu"].to_numpy(), rel=1e-9)
    assert (rate("node_disk_read_bytes_total")[ids] / 1e6).to_numpy() == pytest.approx(whole["disk_read"].to_numpy())
    assert (rate("node_disk_written_bytes_total")[ids] / 1e6).to_numpy() == pytest.approx(
        whole["disk_write"].to_numpy()
    )
    errors = (rate("node_network_receive_errs_total") + rate("node_network_transmit_errs_total")) * 60
    assert errors[ids].to_numpy() == pytest.approx(whole["error_count"].to_numpy())
    available = _per_instance(second, "node_memory_MemAvailable_bytes") / _per_instance(
        second, "node_memory_MemTotal_bytes"
    )
    assert (1 - available[ids]).to_numpy() == pytest.approx(last.loc[ids, "memory"].to_numpy())
    rtt = _per_instance(second, "probe_icmp_duration_seconds", phase="rtt") * 1000
    assert rtt[ids].to_numpy() == pytest.approx(last.loc[ids, "net_latency_ms"].to_numpy())


def test_pulls_are_deterministic_and_adjacent_windows_share_no_row(fleet: str) -> None:
    source = FleetSource(fleet)
    a = datetime.fromisoformat(START) - timedelta(hours=20)
    b, c = a + timedelta(hours=6), a + timedelta(hours=12)
    whole, again = source.pull(a, c), source.pull(a, c)
    first, second = source.pull(a, b), source.pull(b, c)
    for name in ("telemetry", "errors", "failures", "workloads"):
        one, two = getattr(whole, name), getattr(again, name)
        pd.testing.assert_frame_equal(one, two)
        joined = pd.concat([getattr(first, name), getattr(second, name)], ignore_index=True)
        assert len(joined) == len(one), name
    keys = pd.concat([first.telemetry, second.telemetry])[["instance_id", "timestamp"]]  # type: ignore[index]
    assert not keys.duplicated().any() and len(keys) > 0
    opened = first.failures[first.failures["recovery_minutes"].isna()]  # type: ignore[index]
    closed = second.recoveries
    assert closed is not None and set(opened["instance_id"]) <= set(closed["instance_id"])


def test_fleet_time_runs_at_the_speed_asked(fleet: str) -> None:
    one, wall = _now(fleet), time.monotonic()
    time.sleep(1.0)
    two, elapsed = _now(fleet), time.monotonic() - wall
    assert (two - one).total_seconds() == pytest.approx(60 * elapsed, rel=0.2)
    assert _now(fleet) > datetime.fromisoformat(START)


def test_failures_the_fleet_emits_are_what_its_cloud_says(fleet: str) -> None:
    adapter = RemoteSimulatedAdapter(fleet)
    now = _now(fleet)
    pulled = FleetSource(fleet, max_window=timedelta(days=5)).pull(None, now)
    failures = pulled.failures
    assert failures is not None and len(failures) > 0
    state = adapter.state
    now = _now(fleet)
    ends = failures["timestamp"] + pd.to_timedelta(failures["recovery_minutes"].fillna(1e6), unit="min")
    down = failures[ends > pd.Timestamp(now) + pd.Timedelta(minutes=5)]
    for row in down.itertuples():
        assert row.instance_id in state.failed, f"{row.instance_id} failed at {row.timestamp} but is up"
    latest = failures.sort_values("timestamp").groupby("instance_id").tail(1)
    for row in latest.dropna(subset=["recovery_minutes"]).itertuples():
        repaired = row.timestamp + pd.Timedelta(minutes=row.recovery_minutes)
        if repaired < pd.Timestamp(now) - pd.Timedelta(minutes=5):
            assert row.instance_id not in state.failed, f"{row.instance_id} was repaired at {repaired}"
    for iid, at in state.failed.items():
        assert ((failures["instance_id"] == iid) & (failures["timestamp"] == pd.Timestamp(at))).any()
    assert FleetApi(fleet).get("/api/status")["interrupted"] > 0


@pytest.mark.slow
def test_the_fleet_source_lands_rows_through_the_ingest_flow(
    prefect_harness: None, fleet: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.ingest import ingest
    from forewarn.store.repository import Repository
    from forewarn.store.watermarks import WatermarkStore

    database = f"sqlite:///{tmp_path / 'history.db'}"
    monkeypatch.setenv("FOREWARN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FOREWARN_DATABASE_URL", database)
    monkeypatch.setenv("FOREWARN_SOURCES", json.dumps([{"kind": "fleet", "url": fleet, "name": "fleet"}]))
    monkeypatch.setenv("FOREWARN_CLOCK", "fleet")
    monkeypatch.setenv("FOREWARN_FLEET_URL", fleet)
    state = ingest(return_state=True)
    assert state.is_completed(), state.message
    repo = Repository(database)
    mark = WatermarkStore(repo.engine).get("fleet")
    assert mark is not None
    expected = FleetSource(fleet).pull(None, mark)
    assert expected.telemetry is not None and expected.failures is not None
    assert len(repo.load_telemetry()) == len(expected.telemetry) > 0
    assert len(repo.load_failures()) == len(expected.failures) > 0
