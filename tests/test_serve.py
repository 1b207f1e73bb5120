"""`forewarn serve`: what its processes are told, and how stop takes down a worker and the runs it spawned.

The stand-ins are small Python processes: a "worker" that ignores SIGTERM, stops on SIGINT and leaves behind
a "flow run" in a session of its own (as Prefect's process worker does), and a "server" that stops on SIGTERM.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forewarn import processes
from forewarn.serve import ServeSettings, environment, prometheus_config, status, stop

WORKER = """
import signal, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
try:
    time.sleep(600)
except KeyboardInterrupt:
    sys.exit(0)
"""
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"


def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> ServeSettings:
    monkeypatch.setenv("FOREWARN_SERVE_STATE", str(tmp_path / "state"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return ServeSettings()


def test_flow_runs_are_pointed_at_the_fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = settings(tmp_path, monkeypatch, FOREWARN_FLEET_PORT="9555", FOREWARN_PREFECT_PORT="4555")
    env = environment(cfg, base={})

    assert env["FOREWARN_FLEET_URL"] == "http://127.0.0.1:9555"
    # One pull may read the whole pre-filled week (and a day more), so the first model sees all of it.
    fleet = {"kind": "fleet", "url": "http://127.0.0.1:9555", "max_window": "8d"}
    assert json.loads(env["FOREWARN_SOURCES"]) == [fleet]
    assert env["FOREWARN_CLOCK"] == "fleet"
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4555/api"
    assert env["PREFECT_HOME"] == str(cfg.state / "prefect")
    assert env["FOREWARN_HOME"] == str(cfg.state / "home")
    assert env[processes.MARKER] == str(cfg.state)


def test_without_the_fleet_your_own_sources_and_clock_stay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = settings(tmp_path, monkeypatch, FOREWARN_SERVE_FLEET="0")
    env = environment(cfg, base={"FOREWARN_SOURCES": "mine.yaml", "FOREWARN_HOME": "/data/home"})

    assert env["FOREWARN_SOURCES"] == "mine.yaml"
    assert env["FOREWARN_HOME"] == "/data/home"
    assert "FOREWARN_FLEET_URL" not in env and "FOREWARN_CLOCK" not in env


def test_with_prometheus_forewarn_reads_prometheus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("forewarn.serve.shutil.which", lambda name: f"/usr/bin/{name}")
    cfg = settings(tmp_path, monkeypatch, FOREWARN_SERVE_PROMETHEUS="1", FOREWARN_PROMETHEUS_PORT="9777")
    env = environment(cfg, base={})

    kinds = [spec["kind"] for spec in json.loads(env["FOREWARN_SOURCES"])]
    assert kinds == ["prometheus", "cloud"]
    assert json.loads(env["FOREWARN_SOURCES"])[0]["url"] == "http://127.0.0.1:9777"
    assert cfg.speed == 1 and "FOREWARN_CLOCK" not in env
    cfg.state.mkdir(parents=True)
    assert f'"127.0.0.1:{cfg.fleet_port}"' in prometheus_config(cfg).read_text()


@pytest.mark.slow
def test_stop_takes_the_worker_its_flow_runs_and_the_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = settings(tmp_path, monkeypatch, FOREWARN_SERVE_STOP_GRACE="3")
    cfg.logs.mkdir(parents=True)
    env = environment(cfg)
    spawned: list[int] = []
    try:
        for name, code in (("server", "import time; time.sleep(600)"), ("stubborn", STUBBORN), ("worker", WORKER)):
            argv = [sys.executable, "-c", code]
            spawned.append(
                processes.launch(name, argv, env=env, log=cfg.logs / name, pidfile=cfg.pidfile, cwd=tmp_path).pid
            )
        deadline = time.monotonic() + 30
        while len(processes.marked(str(cfg.state))) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        marked = processes.marked(str(cfg.state))
        assert len(marked) == 4, "the worker did not start its flow run"
        spawned += marked
        assert status(cfg)[1]
        lines: list[str] = []

        assert stop(cfg, say=lines.append) == []

        assert [pid for pid in spawned if processes.alive(pid)] == []
        assert "stopped 1 flow-run process(es)" in lines
        assert any(line.startswith("stopped stubborn") and "SIGKILL" in line for line in lines)
        assert not cfg.pidfile.exists()
        assert status(cfg)[1] is False
    finally:
        for pid in spawned:
            if processes.alive(pid):
                processes.signal_group(pid, 9)


def test_stop_never_signals_a_recorded_pid_without_its_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = settings(tmp_path, monkeypatch)
    cfg.state.mkdir(parents=True)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    try:
        cfg.pidfile.write_text(f"server {stranger.pid}\n")  # a PID reused by a process serve did not start

        assert stop(cfg, say=lambda _: None) == []

        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


@pytest.mark.slow
def test_start_after_a_part_died_stops_the_rest_and_starts_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from forewarn import serve

    cfg = settings(tmp_path, monkeypatch, FOREWARN_SERVE_STOP_GRACE="3")
    cfg.logs.mkdir(parents=True)
    env = environment(cfg)
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    spawned = [
        processes.launch(name, sleeper, env=env, log=cfg.logs / name, pidfile=cfg.pidfile, cwd=tmp_path)
        for name in ("fleet", "server", "worker")
    ]
    started: list[ServeSettings] = []
    monkeypatch.setattr(serve, "_start", lambda cfg, env, say: started.append(cfg))
    try:
        spawned[0].kill()  # the fleet service died (kill -9); the server and the worker still run
        spawned[0].wait()
        lines: list[str] = []

        serve.start(cfg, say=lines.append)

        assert "partly running (fleet gone)" in lines[0]
        assert [p.pid for p in spawned if processes.alive(p.pid)] == []
        assert started == [cfg]
    finally:
        for process in spawned:
            if processes.alive(process.pid):
                processes.signal_group(process.pid, 9)
