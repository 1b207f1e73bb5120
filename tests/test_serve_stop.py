"""`make serve-stop` leaves nothing running: a private serve on free ports, a flow run in progress, then stop.

The flow run is an ingest whose one source is a socket that accepts connections and never answers, so its
process is still waiting when stop comes. Whatever happens, the finally clause kills by PID what is left.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forewarn import processes
from forewarn.settings import PROJECT_ROOT
from tests.servers import free_port

pytestmark = pytest.mark.serve  # runs in its own pytest process beside the rest (scripts/run-tests.sh)

SERVE = PROJECT_ROOT / "ops" / "serve.sh"
BIN = Path(os.environ.get("FOREWARN_BIN", Path(sys.executable).parent))


def fleet_service_exists() -> bool:
    """`forewarn fleet serve` is there (it lands with the fleet service); until then serve runs without it."""
    from forewarn.cli import app

    return any(group.name == "fleet" for group in app.registered_groups)


def serve_env(root: Path) -> dict[str, str]:
    port = free_port()
    return {
        **os.environ,
        "FOREWARN_BIN": str(BIN),
        "FOREWARN_SERVE_STATE": str(root / "state"),
        "FOREWARN_PREFECT_PORT": str(port),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",  # for the test's own prefect commands
        "FOREWARN_FLEET_PORT": str(free_port()),
        "FOREWARN_PROMETHEUS_PORT": str(free_port()),
        "FOREWARN_SERVE_WORKER": "1",
        "FOREWARN_SERVE_FLEET": "1" if fleet_service_exists() else "0",
        "FOREWARN_SERVE_PROMETHEUS": "0",
        "FOREWARN_SERVE_TRAIN": "0",
        "FOREWARN_HOME": str(root / "home"),
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    }


def run(argv: list[str], env: dict[str, str], timeout: float = 900) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT)
    assert done.returncode == 0, (
        f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    )
    return done.stdout


def flow_run_process(identity: str, timeout: float = 600) -> int:
    """The PID of a flow-run process (`python -m prefect.engine`) of this serve, once the worker started one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in processes.marked(identity):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"prefect.engine" in cmdline:
                return pid
        time.sleep(1)
    raise AssertionError(f"no flow-run process of {identity} appeared within {timeout:g} s")


def kill_left(pids: set[int], identity: str) -> None:
    """Last resort: SIGKILL, by PID, every process of this serve still running."""
    for pid in pids | set(processes.marked(identity)):
        if processes.alive(pid):
            processes.signal_group(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.integration
def test_stop_leaves_no_process_of_the_serve_running(tmp_path: Path) -> None:
    env = serve_env(tmp_path)
    identity = str((tmp_path / "state").resolve())
    silent = socket.socket()  # accepts connections (the kernel does) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    source = {"kind": "prometheus", "url": f"http://127.0.0.1:{silent.getsockname()[1]}"}
    source |= {"timeout": 600, "attempts": 1, "retries": 0}
    started: set[int] = set()
    try:
        run([str(SERVE)], env)
        started = {entry.pid for entry in processes.read_pidfile(tmp_path / "state" / "serve.pids")}
        names = {entry.name for entry in processes.read_pidfile(tmp_path / "state" / "serve.pids")}
        assert {"server", "worker"} <= names and ("fleet" in names) == (env["FOREWARN_SERVE_FLEET"] == "1")
        job_env = json.dumps({"FOREWARN_SOURCES": json.dumps([source])})
        argv = [str(BIN / "prefect"), "--no-prompt", "deployment", "run", "ingest/ingest"]
        out = run([*argv, "--job-variable", f"env={job_env}"], env)
        assert re.search(r"UUID: [0-9a-f-]{36}", out), out
        flow_run = flow_run_process(identity)
        started.add(flow_run)
        assert processes.alive(flow_run)

        stopped = run([str(SERVE), "stop"], env, timeout=300)

        assert "flow-run process" in stopped, stopped
        assert [pid for pid in started if processes.alive(pid)] == []
        assert processes.marked(identity) == []
        assert processes.mentioning(identity) == []
        assert not (tmp_path / "state" / "serve.pids").exists()
        status = subprocess.run([str(SERVE), "status"], env=env, capture_output=True, text=True, timeout=120)
        assert status.returncode == 1, status.stdout
    finally:
        silent.close()
        kill_left(started, identity)
