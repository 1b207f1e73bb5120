"""Kill the applier's process for real (SIGKILL) at every step of a plan; the next process recovers it.

The cloud outlives the process (:class:`DurableFleet` writes it to a file after every change), the journal
is SQLite or the machine's Postgres 15. Children come from a fork server that has imported everything once.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from forewarn.execution.journal import Journal
from forewarn.schemas import ActionState, PlanState
from forewarn.store.repository import Repository
from tests import execution_support as support
from tests.execution_support import DurableFleet, applier, demand_by_root, effects_once, fleet, full_plan, layout

postgres_db, database = support.postgres_db, support.database  # fixtures
CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(["tests.execution_support", "tests.test_execution_kill"])


def _doomed_run(url: str, cloud: str, plan_id: str, point: str, action_id: str | None) -> None:
    """The child: run the plan and kill its own process with SIGKILL at ``point`` of ``action_id``."""

    def hook(at: str, action: str | None) -> None:
        if at == point and action == action_id:
            os.kill(os.getpid(), signal.SIGKILL)

    journal = Journal(Repository(url))
    applier(DurableFleet.load(Path(cloud)), journal, hook=hook).run(journal.get(plan_id))


def _clean_layout(tmp_path: Path) -> tuple[object, ...]:
    adapter = fleet()
    (tmp_path / "clean").mkdir()
    applier(adapter, support.journal(tmp_path / "clean")).run(full_plan())
    return layout(adapter)


@pytest.mark.slow
@pytest.mark.parametrize(("point", "action_id"), support.STEPS)
def test_killed_process_is_recovered_by_the_next(
    tmp_path: Path, database: str, point: str, action_id: str | None
) -> None:
    expected = _clean_layout(tmp_path)
    cloud = tmp_path / "cloud.pickle"
    demand = demand_by_root(DurableFleet.create(cloud))
    repo = Repository(database)
    plan = Journal(repo).save_plan(full_plan())

    child = CONTEXT.Process(target=_doomed_run, args=(database, str(cloud), plan.plan_id, point, action_id))
    child.start()
    child.join(120)
    assert child.exitcode == -signal.SIGKILL, f"the child was not killed at {point} {action_id}"
    assert Journal(repo).get(plan.plan_id).state == PlanState.RUNNING

    adapter = DurableFleet.load(cloud)
    recovered = applier(adapter, Journal(repo)).recover()
    assert [p.state for p in recovered] == [PlanState.SUCCEEDED], recovered[0].notes if recovered else "none"
    assert all(a.state == ActionState.SUCCEEDED for a in recovered[0].actions)
    assert len(effects_once(adapter)) == 6  # the snapshot and five actions, each exactly once
    support.placed_once(adapter, demand)
    assert layout(adapter) == expected
    repo.dispose()
