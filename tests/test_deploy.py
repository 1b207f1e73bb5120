"""`make serve` for real: ops/serve.sh starts a Prefect server and deploys prefect.yaml; a process worker runs
the score-and-allocate deployment once, and the run leaves its artifacts on the server.

The fixture is session-scoped so the UI test (tests/test_ui.py) looks at the same run. The server's
scheduler is off here so no scheduled run competes with the one the test starts.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pandas as pd
import pytest
import yaml

from forewarn.settings import PROJECT_ROOT
from tests.servers import free_port, start, stop

pytestmark = pytest.mark.serve  # runs in its own pytest process beside the rest (scripts/run-tests.sh)

BIN = PROJECT_ROOT / ".venv" / "bin"
SERVE = PROJECT_ROOT / "ops" / "serve.sh"
DEPLOYMENTS = {d["name"] for d in yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())["deployments"]}
assert {"materialize", "train", "score-and-allocate", "apply-plan", "backtest"} <= DEPLOYMENTS


@dataclass
class Served:
    url: str
    api: str
    env: dict[str, str]
    flow_run_id: UUID
    root: Path


def run(argv: list[str], env: dict[str, str], timeout: float = 600) -> str:
    """Run a command to completion; its output is in the failure message when it fails."""
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT)
    assert done.returncode == 0, (
        f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    )
    return done.stdout


def serve_env(root: Path) -> dict[str, str]:
    port = free_port()
    return {
        **os.environ,
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "FOREWARN_PREFECT_PORT": str(port),
        "FOREWARN_SERVE_STATE": str(root / "state"),
        "FOREWARN_SERVE_WORKER": "0",
        "FOREWARN_SERVE_FLEET": "0",  # this test reads a dataset and trains itself
        "FOREWARN_SERVE_TRAIN": "0",
        "FOREWARN_BIN": str(BIN),
        "FOREWARN_HOME": str(root / "home"),
        "FOREWARN_DATASET": str(root / "data"),
    }


def prime_history(env: dict[str, str]) -> None:
    """What the ingest flow would have landed by the data's end: the dataset into the history database, then
    the materialize and train flows as of that end (the history, not the directory, feeds them)."""
    from forewarn.dataset import read_dataset

    at = read_dataset(env["FOREWARN_DATASET"]).end.isoformat()
    run([str(BIN / "forewarn"), "ingest", "file", env["FOREWARN_DATASET"]], env)
    run([str(BIN / "forewarn"), "run", "materialize", "--at", at], env)
    run([str(BIN / "forewarn"), "run", "train", "--at", at], env)


def run_deployment_once(env: dict[str, str], root: Path) -> UUID:
    """`prefect deployment run` as of the end of the simulated data (its model and features are fresh then;
    at the wall clock they are days old and the fallback would decide), then a process worker with
    --run-once; SIGINT if it lingers."""
    from forewarn.dataset import read_dataset

    at = read_dataset(env["FOREWARN_DATASET"]).end.isoformat()
    argv = [str(BIN / "prefect"), "--no-prompt", "deployment", "run", "score-and-allocate/score-and-allocate"]
    out = run([*argv, "--param", f"at={at}"], env)
    found = re.search(r"UUID: ([0-9a-f-]{36})", out)
    assert found, out
    worker_argv = [str(BIN / "prefect"), "worker", "start", "--pool", "forewarn-process", "--run-once"]
    worker = start(worker_argv, log=root / "worker.log", env=env)
    try:
        worker.wait(timeout=600)
    except subprocess.TimeoutExpired:
        pass
    finally:
        stop(worker, sig=signal.SIGINT, timeout=30)  # the worker stops on SIGINT, not SIGTERM
    return UUID(found.group(1))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


_LIVE: list[Served] = []
"""The one served instance; tests/test_ui.py imports the fixture, which would otherwise start a second."""


@contextmanager
def serving(root: Path) -> Iterator[Served]:
    env = serve_env(root)
    simulate = ["simulate", "--instances", "40", "--days", "3", "--seed", "1", "--out", env["FOREWARN_DATASET"]]
    run([str(BIN / "forewarn"), *simulate], env)
    run([str(SERVE)], env)
    pids = [int(line.split()[1]) for line in (root / "state" / "serve.pids").read_text().splitlines()]
    try:
        prime_history(env)
        flow_run_id = run_deployment_once(env, root)
        port = env["FOREWARN_PREFECT_PORT"]
        yield Served(f"http://127.0.0.1:{port}", env["PREFECT_API_URL"], env, flow_run_id, root)
    finally:
        subprocess.run([str(SERVE), "stop"], env=env, capture_output=True, timeout=120, check=False)
    assert not [pid for pid in pids if alive(pid)], "ops/serve.sh stop left processes running"


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A Prefect server with every deployment, a trained model, and one score-and-allocate run done."""
    if _LIVE:
        yield _LIVE[0]
        return
    with serving(tmp_path_factory.mktemp("serve")) as live:
        _LIVE.append(live)
        try:
            yield live
        finally:
            _LIVE.clear()


@pytest.mark.slow
@pytest.mark.integration
def test_every_deployment_of_prefect_yaml_is_deployed(served: Served) -> None:
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(served.api) as client:
        names = {d.name for d in client.read_deployments()}
        pool = client.read_work_pool("forewarn-process")
    assert names == DEPLOYMENTS
    assert pool.type == "process"


@pytest.mark.slow
@pytest.mark.integration
def test_the_worker_completes_the_run_and_it_leaves_its_artifacts(served: Served) -> None:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with SyncPrefectClient(served.api) as client:
        flow_run = client.read_flow_run(served.flow_run_id)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[served.flow_run_id]))
        )
    assert flow_run.state is not None and flow_run.state.is_completed(), (served.root / "worker.log").read_text()
    by_key = {a.key: a for a in artifacts}
    assert {"risk-table", "plan"} <= set(by_key)
    table = by_key["risk-table"].data
    rows = table if isinstance(table, list) else json.loads(str(table))
    assert rows and {"instance", "probability", "band", "top features"} <= set(rows[0])
    # Every instance with features fresher than the policy's 30 minutes is scored by the model; one that is down
    # at the data's end has none and goes to the fallback, without a probability.
    from forewarn.dataset import read_dataset

    data = read_dataset(served.env["FOREWARN_DATASET"])
    last = data.telemetry.groupby("instance_id")["timestamp"].max()
    fresh = int((last >= data.end - pd.Timedelta(minutes=30)).sum())
    assert 30 <= fresh <= 40
    metrics = (Path(served.env["FOREWARN_HOME"]) / "metrics.prom").read_text()
    assert metrics.count("forewarn_failure_probability{") == fresh
