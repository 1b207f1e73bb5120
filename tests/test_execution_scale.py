"""Scale-back through the applier: revert restores the factor in force before; a shrink below the tasks is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.faults import ALWAYS
from forewarn.errors import AdapterError, PlanError
from forewarn.execution.journal import Journal
from forewarn.execution.undo import UNDO
from forewarn.schemas import Action, ActionState, ActionType, Plan, PlanState, PolicyMode
from forewarn.store.repository import Repository
from tests.execution_support import Crash, applier, fleet, journal


def plan_of(*actions: Action) -> Plan:
    return Plan(policy="test", mode=PolicyMode.AUTO, state=PlanState.APPROVED, actions=list(actions))


def back(instance: str, factor: float, action_id: str = "a-back") -> Action:
    return Action(action_id=action_id, type=ActionType.SCALE_BACK, instance_id=instance, params={"factor": factor})


def failing_reserve() -> Action:
    return Action(action_id="a-reserve", type=ActionType.RESERVE_BUFFER, instance_id="i2", params={"fraction": 0.2})


@pytest.mark.parametrize("when", ["before", "after"])
def test_revert_restores_the_factor_in_force_before(tmp_path: Path, when: str) -> None:
    adapter, jr = fleet(), journal(tmp_path)
    adapter.scale("i3", factor=0.8, key="earlier-plan")
    adapter.inject("scale", when=when)  # a time-out; with "after" the first call took effect and the retry is a no-op
    adapter.inject("reserve", times=ALWAYS, error=AdapterError)
    plan = applier(adapter, jr).run(plan_of(back("i3", 0.5), failing_reserve()))
    assert plan.state == PlanState.ROLLED_BACK
    assert plan.actions[0].state == ActionState.REVERTED and plan.actions[0].params[UNDO] == {"factor": 0.8}
    assert adapter.state.instances["i3"].cpu_capacity == pytest.approx(0.8)  # not 1.0
    assert adapter.state.factors["i3"] == pytest.approx(0.8)


def test_revert_after_a_crash_restores_the_recorded_factor(tmp_path: Path) -> None:
    adapter, jr = fleet(), journal(tmp_path)
    adapter.scale("i3", factor=0.9, key="earlier-plan")

    def crash(point: str, action_id: str | None) -> None:
        if point == "after-execute" and action_id == "a-back":
            raise Crash(point)

    with pytest.raises(Crash):
        applier(adapter, jr, hook=crash).run(plan_of(back("i3", 0.5), failing_reserve()))
    adapter.inject("reserve", times=ALWAYS, error=AdapterError)
    [plan] = applier(adapter, journal_again(tmp_path)).recover()
    assert plan.state == PlanState.ROLLED_BACK
    assert adapter.state.instances["i3"].cpu_capacity == pytest.approx(0.9)
    assert [m for m, _ in adapter.effects].count("scale") == 3  # the earlier one, this plan's, its revert


def journal_again(tmp_path: Path) -> Journal:
    """The same database, opened as the next process would."""
    return Journal(Repository(f"sqlite:///{tmp_path / 'forewarn.db'}"))


def test_scale_back_below_the_tasks_is_refused_and_rolled_back(tmp_path: Path) -> None:
    adapter, jr = fleet(), journal(tmp_path)  # i1 carries cpu 0.7
    plan = applier(adapter, jr).run(plan_of(back("i1", 0.5)))
    assert plan.state == PlanState.ROLLED_BACK
    assert plan.actions[0].state == ActionState.FAILED and "move work off it first" in str(plan.actions[0].error)
    assert adapter.state.instances["i1"].cpu_capacity == 1.0
    with pytest.raises(AdapterError, match=r"tasks use cpu 0\.7"):
        adapter.scale("i1", factor=0.5, key="direct")


def test_scale_back_runs_after_the_plan_moves_the_work_off(tmp_path: Path) -> None:
    adapter, jr = fleet(), journal(tmp_path)
    move = Action(
        action_id="a-move", type=ActionType.MIGRATE, instance_id="i1", target_instance_id="i3", task_ids=["t1"]
    )
    plan = applier(adapter, jr).run(plan_of(back("i1", 0.5), move))  # listed first, as the allocator does
    assert plan.state == PlanState.SUCCEEDED, plan.notes
    assert [a.action_id for a in plan.actions] == ["a-move", "a-back"]  # journalled in the order they ran
    assert adapter.state.instances["i1"].cpu_capacity == pytest.approx(0.5)
    assert [m for m, _ in adapter.effects] == ["snapshot", "migrate", "scale"]


def test_repeating_a_scale_back_does_not_compound_and_one_restores() -> None:
    adapter = fleet()
    assert adapter.scale("i3", factor=0.5, key="a") == 1.0
    assert adapter.scale("i3", factor=0.5, key="b") == 0.5
    assert adapter.scale("i3", factor=0.5, key="a") == 1.0  # a repeated key answers as the first call did
    assert adapter.state.instances["i3"].cpu_capacity == pytest.approx(0.5)
    assert adapter.scale("i3", factor=1.0, key="c") == 0.5
    assert adapter.state.instances["i3"].cpu_capacity == pytest.approx(1.0)


def test_plans_may_not_set_the_undo_key(tmp_path: Path) -> None:
    bad = back("i3", 0.5)
    bad.params[UNDO] = {"factor": 0.1}
    with pytest.raises(PlanError, match="reserved"):
        journal(tmp_path).save_plan(plan_of(bad))
