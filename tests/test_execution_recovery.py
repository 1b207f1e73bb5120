"""Kill the applier at every step, then recover on the same database (SQLite and Postgres): nothing lost,
nothing done twice. The kill here is an exception nothing catches; test_execution_kill.py kills for real."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.faults import ALWAYS
from forewarn.errors import PlanError
from forewarn.execution.applier import Applier, Hook
from forewarn.execution.journal import Journal
from forewarn.schemas import ActionState, PlanState
from tests import execution_support as support
from tests.execution_support import Crash, applier, demand_by_root, effects_once, fleet, full_plan, journal, layout

postgres_db, database, journals = support.postgres_db, support.database, support.journals  # fixtures
Journals = Callable[[], Journal]

ACTIONS, STEPS = support.PLAN_ACTIONS, support.STEPS


def crash_at(point: str, action_id: str | None) -> Hook:
    def hook(at: str, action: str | None) -> None:
        if at == point and action == action_id:
            raise Crash(f"killed at {point} {action_id}")

    return hook


def clean_layout(tmp_path: Path) -> tuple[object, ...]:
    adapter = fleet()
    (tmp_path / "clean").mkdir()
    applier(adapter, journal(tmp_path / "clean")).run(full_plan())
    return layout(adapter)


@pytest.mark.parametrize(("point", "action_id"), STEPS)
def test_crash_during_run_is_completed_exactly_once(
    tmp_path: Path, journals: Journals, point: str, action_id: str | None
) -> None:
    expected = clean_layout(tmp_path)
    adapter, jr = fleet(), journals()
    demand = demand_by_root(adapter)
    plan = full_plan()
    with pytest.raises(Crash):
        applier(adapter, jr, hook=crash_at(point, action_id)).run(plan)
    assert jr.get(plan.plan_id).state == PlanState.RUNNING
    if point in ("after-intent", "after-execute"):
        assert [a.action_id for _, a in jr.interrupted()] == [action_id]

    recovered = applier(adapter, journals()).recover()
    assert [p.plan_id for p in recovered] == [plan.plan_id]
    assert recovered[0].state == PlanState.SUCCEEDED, recovered[0].notes
    assert all(a.state == ActionState.SUCCEEDED for a in recovered[0].actions)
    assert len(effects_once(adapter)) == 6  # the snapshot and five actions, each once
    support.placed_once(adapter, demand)
    assert layout(adapter) == expected
    assert applier(adapter, journals()).recover() == []  # nothing left to do


@pytest.mark.parametrize("point", ["before-revert", "after-revert"])
@pytest.mark.parametrize("action_id", ACTIONS[:4])
def test_crash_during_rollback_is_finished_exactly_once(journals: Journals, point: str, action_id: str) -> None:
    adapter, jr = fleet(), journals()
    before = layout(adapter)
    adapter.inject("scale", times=ALWAYS)  # the last action fails: the first four are reverted
    plan = full_plan()
    with pytest.raises(Crash):
        applier(adapter, jr, hook=crash_at(point, action_id)).run(plan)
    assert jr.is_rolling_back(plan.plan_id)

    recovered = applier(adapter, journals()).recover()
    assert recovered[0].state == PlanState.ROLLED_BACK, recovered[0].notes
    assert [a.state for a in recovered[0].actions[:4]] == [ActionState.REVERTED] * 4
    reverts = [key for key in effects_once(adapter) if key.endswith(":revert")]
    assert reverts == [f"{a}:revert" for a in reversed(ACTIONS[:4])]
    assert layout(adapter) == before


def test_dry_run_applier_does_not_recover_live_plans(tmp_path: Path) -> None:
    adapter, jr = fleet(), journal(tmp_path)
    with pytest.raises(Crash):
        applier(adapter, jr, hook=crash_at("after-execute", "a-move")).run(full_plan())
    effects = list(adapter.effects)
    dry = Applier(adapter, jr)
    assert dry.recover() == []
    plan_id = jr.list()[0].plan_id
    with pytest.raises(PlanError, match="only a live applier resumes it"):
        dry.resume(plan_id)
    assert adapter.effects == effects and len(jr.interrupted()) == 1


def test_a_plan_another_live_process_is_running_is_not_recovered_under_it(tmp_path: Path) -> None:
    """Two score-and-allocate runs at once: the second's recovery must not "finish" the first's plan while the
    first is still acting on it (found by the two-worker race). The plan's lease says who runs it; a holder that
    is alive keeps it, and once it lets go (or its process is gone) the plan is recovered as before."""
    from forewarn.store.lease import PLAN_TTL, LeaseHeld, LeaseStore

    adapter, jr = fleet(), journal(tmp_path)
    plan = full_plan()
    with pytest.raises(Crash):
        applier(adapter, jr, hook=crash_at("after-execute", "a-move")).run(plan)
    effects = list(adapter.effects)
    leases = LeaseStore(jr.repo.engine)
    alive = f"{support_host()}:{os.getpid()}:other-run"  # this process stands for the first run, still alive
    assert leases.acquire(f"plan:{plan.plan_id}", alive, ttl=PLAN_TTL)
    assert applier(adapter, jr).recover() == []
    with pytest.raises(LeaseHeld, match="other-run"):
        applier(adapter, jr).resume(plan.plan_id)
    assert adapter.effects == effects and jr.get(plan.plan_id).state == PlanState.RUNNING
    dead = f"{support_host()}:{dead_pid()}:killed-run"  # the same, after the first run's process died
    assert leases.release(f"plan:{plan.plan_id}", alive) and leases.acquire(f"plan:{plan.plan_id}", dead, ttl=PLAN_TTL)
    recovered = applier(adapter, jr).recover()
    assert [p.state for p in recovered] == [PlanState.SUCCEEDED]


def support_host() -> str:
    from forewarn.store.lease import HOST

    return HOST


def dead_pid() -> int:
    """The PID of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid
