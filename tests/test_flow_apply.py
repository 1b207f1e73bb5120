"""The apply-plan flow: each action's change is a task run; the flow run's state shows success or the rollback."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import TaskRun

from adapters.faults import ALWAYS
from adapters.simulated import SimulatedAdapter
from flows import apply as apply_flow
from forewarn import service
from forewarn.errors import AdapterError
from forewarn.schemas import ActionState, PlanState
from tests.execution_support import fleet, full_plan, layout

pytestmark = pytest.mark.usefixtures("prefect_harness")


def task_runs(flow_run_id: UUID | None, expected: int) -> dict[str, TaskRun]:
    """The flow run's task runs by name (they reach the API a little after the flow ends)."""
    assert flow_run_id is not None
    runs: list[TaskRun] = []
    with get_client(sync_client=True) as client:
        for _ in range(100):
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            if len(runs) >= expected and all(r.state and r.state.is_final() for r in runs):
                break
            time.sleep(0.2)
    return {r.name: r for r in runs}


WIDE = """name: wide
mode: auto
guardrails:
  max-fleet-percent-per-cycle: 100
  max-fleet-percent-per-window: {percent: 100}
  cooldown-minutes: 30
"""


@pytest.fixture
def cloud(forewarn_home: Path, monkeypatch: pytest.MonkeyPatch) -> SimulatedAdapter:
    """The simulated fleet the flow acts on, journal under FOREWARN_HOME, under a policy whose guardrails let
    the whole test plan (all four instances) through once."""
    adapter = fleet()
    forewarn_home.mkdir(parents=True, exist_ok=True)
    (forewarn_home / "wide.yaml").write_text(WIDE)
    monkeypatch.setenv("FOREWARN_POLICY", str(forewarn_home / "wide.yaml"))
    monkeypatch.delenv("FOREWARN_DATABASE_URL", raising=False)
    monkeypatch.setattr(apply_flow, "cloud_for", lambda ctx: adapter)
    monkeypatch.setattr(apply_flow, "BACKOFF_SECONDS", 0.0)
    return adapter


def saved_plan(state: PlanState = PlanState.APPROVED, *, age: timedelta = timedelta(0), suffix: str = "") -> str:
    plan = full_plan(state)
    plan.created_at -= age
    for action in plan.actions:
        action.action_id += suffix
    service.journal().save_plan(plan)
    return plan.plan_id


def test_clean_plan_completes_with_a_task_run_per_action(cloud: SimulatedAdapter) -> None:
    plan_id = saved_plan()
    state = apply_flow.apply_plan(plan_id, dry_run=False, return_state=True)
    assert state.is_completed(), state.message
    assert "succeeded: 5 of 5" in str(state.message)
    assert service.journal().get(plan_id).state == PlanState.SUCCEEDED
    runs = task_runs(state.state_details.flow_run_id, 5)
    ids = [a.action_id for a in full_plan().actions]
    assert {n for n in runs if n.startswith("execute")} == {
        f"execute {a.action_id} ({a.type.value})" for a in full_plan().actions
    }, sorted(runs)
    assert all(r.state is not None and r.state.is_completed() for r in runs.values()), ids


def test_fault_injected_plan_ends_failed_naming_the_rollback(cloud: SimulatedAdapter) -> None:
    before = layout(cloud)
    cloud.inject("reserve", times=ALWAYS, error=AdapterError)  # the fourth action fails for good
    plan_id = saved_plan()
    state = apply_flow.apply_plan(plan_id, dry_run=False, return_state=True)
    assert state.is_failed()
    message = str(state.message)
    assert f"plan {plan_id} rolled back" in message and "a-reserve" in message and "injected fault" in message
    plan = service.journal().get(plan_id)
    assert plan.state == PlanState.ROLLED_BACK and layout(cloud) == before
    assert [a.state for a in plan.actions] == [ActionState.REVERTED] * 3 + [ActionState.FAILED, ActionState.SKIPPED]
    runs = task_runs(state.state_details.flow_run_id, 7)
    failed = runs["execute a-reserve (reserve-buffer)"]
    assert failed.state is not None and failed.state.is_failed()
    assert failed.run_count == 1  # not transient: Prefect did not retry it
    reverts = {n for n, r in runs.items() if n.startswith("revert") and r.state and r.state.is_completed()}
    assert reverts == {"revert a-cordon (cordon)", "revert a-move (migrate)", "revert a-split (migrate)"}


def test_transient_fault_is_retried_by_the_task(cloud: SimulatedAdapter) -> None:
    cloud.inject("cordon", times=2)  # throttled twice, then it goes through
    plan_id = saved_plan()
    state = apply_flow.apply_plan(plan_id, dry_run=False, return_state=True)
    assert state.is_completed(), state.message
    runs = task_runs(state.state_details.flow_run_id, 5)
    assert runs["execute a-cordon (cordon)"].run_count == 3
    assert [m for m, _ in cloud.effects].count("cordon") == 1


def test_dry_run_flow_changes_nothing(cloud: SimulatedAdapter) -> None:
    before = layout(cloud)
    state = apply_flow.apply_plan(saved_plan(), return_state=True)
    assert state.is_completed() and layout(cloud) == before and cloud.effects == []


def test_interrupted_plan_is_finished_by_the_flow(cloud: SimulatedAdapter) -> None:
    from tests.execution_support import Crash

    plan = full_plan()

    def crash(point: str, action_id: str | None) -> None:
        if point == "after-execute" and action_id == "a-split":
            raise Crash(point)

    from forewarn.execution.applier import Applier

    with pytest.raises(Crash):
        Applier(cloud, service.journal(), dry_run=False, hook=crash).run(plan)
    state = apply_flow.apply_plan(plan.plan_id, dry_run=False, return_state=True)
    assert state.is_completed(), state.message
    keys = [key for _, key in cloud.effects]
    assert len(keys) == len(set(keys)) == 6


def test_a_plan_that_has_not_started_passes_the_approval_checks_first(cloud: SimulatedAdapter) -> None:
    """The flow starts a plan only through the checks of `plan approve`: a stale APPROVED plan, or one over
    the guardrails as they stand now, is refused with one line and stays APPROVED; a RECOMMENDED one runs."""
    stale = saved_plan(age=timedelta(days=730), suffix="-stale")  # approved two years ago and never run
    state = apply_flow.apply_plan(stale, dry_run=False, return_state=True)
    assert state.is_failed() and "max-plan-age-minutes 60" in str(state.message), state.message
    assert "it stays APPROVED; re-plan instead" in str(state.message)
    assert service.journal().get(stale).state == PlanState.APPROVED and cloud.effects == []
    first = saved_plan(PlanState.RECOMMENDED)
    assert apply_flow.apply_plan(first, dry_run=False, return_state=True).is_completed()
    assert service.journal().get(first).state == PlanState.SUCCEEDED
    effects = len(cloud.effects)
    again = saved_plan(suffix="-again")  # the same instances, within the cooldown the first run started
    state = apply_flow.apply_plan(again, dry_run=False, return_state=True)
    assert state.is_failed() and "cooldown-minutes (30)" in str(state.message), state.message
    assert service.journal().get(again).state == PlanState.APPROVED and len(cloud.effects) == effects


def test_plan_state_messages() -> None:
    plan = full_plan()
    plan.state, plan.notes = PlanState.FAILED, ["FAILED: revert failed; restoring snapshot s failed too"]
    state = apply_flow.plan_state(plan)
    assert state.is_failed() and "could not roll back: revert failed" in str(state.message)
    plan.state = PlanState.APPROVED
    assert apply_flow.plan_state(plan).is_failed()
