"""What tests/test_serve_live.py reads from a running serve: the Prefect API, the journal, the fleet."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from forewarn import processes
from forewarn.settings import PROJECT_ROOT
from tests.servers import free_port

SERVE = PROJECT_ROOT / "ops" / "serve.sh"
BIN = Path(os.environ.get("FOREWARN_BIN", Path(sys.executable).parent))
FINAL = {"SUCCEEDED", "FAILED", "ROLLED_BACK", "CANCELLED", "SHADOW"}
LIVE_RUNS = ["RUNNING", "PENDING", "CANCELLING"]


def serve_env(state: Path, *, speed: float, instances: int = 40) -> dict[str, str]:
    """A private serve on free ports: a failure-prone fleet, fast enough for hours in minutes.

    40 instances, as `make serve`: the default policy touches at most 5% of the fleet per cycle, and a cordon
    with its migration touches two instances.
    """
    port = free_port()
    return {
        **os.environ,
        "FOREWARN_BIN": str(BIN),
        "FOREWARN_SERVE_STATE": str(state),
        "FOREWARN_HOME": str(state / "home"),
        "FOREWARN_PREFECT_PORT": str(port),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "FOREWARN_FLEET_PORT": str(free_port()),
        "FOREWARN_SERVE_PROMETHEUS": "0",
        "FOREWARN_FLEET_INSTANCES": str(instances),
        "FOREWARN_FLEET_HISTORY_DAYS": "2",
        "FOREWARN_FLEET_FAILURE_RATE_PER_DAY": "2",
        "FOREWARN_FLEET_SPEED": f"{speed:g}",
        # Features every wall minute: at most a few fleet minutes older than the policy's 30-minute limit allows.
        "FOREWARN_SERVE_INTERVALS": json.dumps({"materialize": 60}),
        "PREFECT_LOGGING_LEVEL": "INFO",
    }


def run(argv: list[str], env: dict[str, str], timeout: float = 900) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT)
    out = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{out[-4000:]}"
    return out


def kill_left(identity: str, pids: set[int]) -> None:
    """Last resort: SIGKILL, by PID, every process of this serve still running."""
    for pid in pids | set(processes.marked(identity)):
        if processes.alive(pid):
            processes.signal_group(pid, signal.SIGKILL)


def wait_for(what: str, check: Callable[[], bool], timeout: float, every: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(every)


class Api:
    """The Prefect server's REST API, as much as the test reads."""

    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, path: str, body: object | None = None, method: str | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.url}/api{path}", data=data, headers={"Content-Type": "application/json"}, method=method
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def runs(self, flow: str, states: list[str], scheduled: bool = False) -> list[dict[str, Any]]:
        """Flow runs of ``flow`` in ``states``, oldest first (``scheduled``: only those of its deployment)."""
        body: dict[str, Any] = {
            "flows": {"name": {"any_": [flow]}},
            "flow_runs": {"state": {"type": {"any_": states}}},
            "sort": "START_TIME_ASC",
            "limit": 200,
        }
        if scheduled:
            body["flow_runs"]["deployment_id"] = {"is_null_": False}
        return list(self.call("/flow_runs/filter", body))

    def live_runs(self) -> list[dict[str, Any]]:
        return list(self.call("/flow_runs/filter", {"flow_runs": {"state": {"type": {"any_": LIVE_RUNS}}}}))

    def risk_table(self, flow_run_id: str) -> dict[str, float]:
        """Instance -> probability in the risk-table artifact of one flow run (empty when it has none)."""
        body = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}, "key": {"any_": ["risk-table"]}}}
        found = self.call("/artifacts/filter", body)
        if not found:
            return {}
        rows = found[0]["data"]
        rows = json.loads(rows) if isinstance(rows, str) else rows
        return {r["instance"]: float(r["probability"]) for r in rows if r.get("probability") is not None}

    def pause_all(self) -> None:
        for deployment in self.call("/deployments/filter", {}):
            self.call(f"/deployments/{deployment['id']}/pause_deployment", {})


def fleet(url: str, path: str) -> Any:
    with urllib.request.urlopen(f"{url}{path}", timeout=300) as response:
        return json.loads(response.read())


def cloud_file(state: Path) -> dict[str, Any]:
    """The fleet's persisted cloud (rewritten atomically after every change)."""
    return dict(json.loads((state / "fleet" / "cloud.json").read_text()))


def first_pid(state: Path, name: str) -> int:
    return next(e.pid for e in processes.read_pidfile(state / "serve.pids") if e.name == name)
