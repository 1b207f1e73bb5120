"""Two process workers race on one score-and-allocate schedule against PostgreSQL: no instance is acted on twice.

A real Prefect server whose database is PostgreSQL (asyncpg), the forewarn-process pool with two
`prefect worker start` processes, the historical repository on another PostgreSQL database. The server's
scheduler is off; the test schedules two runs of the same deployment for the same instant instead (what two
schedulers, or a retried schedule, would do) and reads the journal once both completed.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from forewarn.schemas import ActionState, Plan
from tests.servers import start, stop, throwaway_postgres
from tests.test_deploy import BIN, SERVE, alive, prime_history, run, serve_env

pytestmark = pytest.mark.serve  # runs in its own pytest process beside the rest (scripts/run-tests.sh)

DEPLOYMENT = "score-and-allocate/score-and-allocate"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
RACE_POLICY = """\
name: race
description: Cordon every risky instance, no cooldown, so that both runs want the same instances.
mode: auto
horizon-minutes: 60
bands:
  high: {enter: 0.002, exit: 0.001}
  moderate: {enter: 0.001, exit: 0.0005}
  min-dwell-minutes: 0
rules:
  - name: cordon-risky
    match: {band: high}
    action: {type: cordon, drain: false}
guardrails:
  max-actions-per-cycle: 12
  max-actions-per-type: {cordon: 12}
  max-fleet-percent-per-cycle: 50
  max-fleet-percent-per-window: {percent: 100, window-minutes: 60}
  cooldown-minutes: 0
  circuit-breaker: {max-high-risk-jump-percent: 100}
"""


@dataclass
class Cluster:
    env: dict[str, str]
    root: Path
    database_url: str


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Prefect server on PostgreSQL with every deployment, a trained model, the repository on PostgreSQL."""
    root = tmp_path_factory.mktemp("race")
    with throwaway_postgres("forewarn_prefect") as prefect_db, throwaway_postgres("forewarn_repo") as repo_db:
        env = {
            **serve_env(root),
            "PREFECT_API_DATABASE_CONNECTION_URL": prefect_db.replace("postgresql+psycopg", "postgresql+asyncpg"),
            "FOREWARN_DATABASE_URL": repo_db,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "FOREWARN_POLICY": str(root / "race.yaml"),
        }
        (root / "race.yaml").write_text(RACE_POLICY, encoding="utf-8")
        simulate = ["simulate", "--instances", "40", "--days", "3", "--seed", "1", "--out", env["FOREWARN_DATASET"]]
        run([str(BIN / "forewarn"), *simulate], env)
        run([str(SERVE)], env)
        pids = [int(line.split()[1]) for line in (root / "state" / "serve.pids").read_text().splitlines()]
        try:
            prime_history(env)
            yield Cluster(env, root, repo_db)
        finally:
            subprocess.run([str(SERVE), "stop"], env=env, capture_output=True, timeout=120, check=False)
        assert not [pid for pid in pids if alive(pid)], "ops/serve.sh stop left processes running"


def schedule_twice(api: str, when: datetime, at: str) -> list[UUID]:
    """Two runs of the score-and-allocate deployment, both scheduled for ``when``, acting (not dry-run), as of
    ``at`` (the data's end: at the wall clock the features are days old and only the fallback would decide)."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.states import Scheduled

    with SyncPrefectClient(api) as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
        runs = [
            client.create_flow_run_from_deployment(
                deployment.id, parameters={"dry_run": False, "at": at}, state=Scheduled(scheduled_time=when)
            )
            for _ in range(2)
        ]
    return [r.id for r in runs]


def wait_final(api: str, ids: list[UUID], timeout: float = 600) -> dict[UUID, str]:
    from prefect.client.orchestration import SyncPrefectClient

    deadline = time.monotonic() + timeout
    with SyncPrefectClient(api) as client:
        while True:
            types = {i: client.read_flow_run(i).state_type for i in ids}
            states = {i: t.value if t is not None else "NONE" for i, t in types.items()}
            if all(s in FINAL for s in states.values()) or time.monotonic() > deadline:
                return states
            time.sleep(1)


def acted_on(plan: Plan) -> set[str]:
    """Instances a plan's succeeded actions touched: sources and migration targets."""
    done = [a for a in plan.actions if a.state is ActionState.SUCCEEDED]
    return {i for a in done for i in (a.instance_id, a.target_instance_id) if i}


@pytest.mark.slow
@pytest.mark.integration
def test_two_workers_on_one_schedule_never_act_on_an_instance_twice(cluster: Cluster) -> None:
    api = cluster.env["PREFECT_API_URL"]
    from forewarn.dataset import read_dataset

    end = read_dataset(cluster.env["FOREWARN_DATASET"]).end.isoformat()
    ids = schedule_twice(api, datetime.now(UTC) + timedelta(seconds=15), end)
    argv = [str(BIN / "prefect"), "worker", "start", "--pool", "forewarn-process", "--type", "process"]
    workers = [start([*argv, "--name", f"w{n}"], log=cluster.root / f"worker-{n}.log", env=cluster.env) for n in (1, 2)]
    try:
        states = wait_final(api, ids)
    finally:
        for worker in workers:
            stop(worker, sig=signal.SIGINT, timeout=60)  # the worker stops on SIGINT, not SIGTERM
    logs = "".join((cluster.root / f"worker-{n}.log").read_text()[-3000:] for n in (1, 2))
    assert set(states.values()) == {"COMPLETED"}, f"{states}\n{logs}"
    assert all(w.returncode is not None for w in workers)

    from forewarn.execution.journal import Journal
    from forewarn.store import Repository

    repo = Repository(cluster.database_url)
    try:
        plans = Journal(repo).list()
    finally:
        repo.dispose()
    assert len(plans) == 2, [p.plan_id for p in plans]
    first, second = (acted_on(p) for p in plans)
    assert first | second, f"neither run acted: nothing was raced for\n{[p.notes for p in plans]}"
    assert not first & second, f"acted on twice: {sorted(first & second)}"
    notes = [n for p in plans for n in p.notes]
    assert any("claimed by another run" in n for n in notes), notes  # the claims, not luck, kept them apart
