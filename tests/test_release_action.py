"""The ``release`` action: its policy element, and its handler run by the applier on the simulated cloud
(skips, partial releases, faults before and after a call took effect, crashes, rollback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.simulated import SimulatedAdapter
from forewarn.errors import AdapterError, PlanError
from forewarn.execution.actions import handler_for
from forewarn.execution.applier import Applier
from forewarn.execution.undo import UNDO
from forewarn.policy import load_policy_text
from forewarn.policy.actions import get_action
from forewarn.schemas import Action, ActionState, ActionType, InstanceState, Plan, PlanState, PolicyMode
from tests.execution_support import Crash, applier, effects_once, fleet, journal

POLICY = """\
name: releasing
rules:
  - name: release-recovered
    match: {band: low}
    action: {type: release, free-buffer: false}
"""


def held(adapter: SimulatedAdapter, instance_id: str) -> tuple[InstanceState, float, float]:
    inst = next(i for i in adapter.list_instances() if i.instance_id == instance_id)
    return inst.state, round(inst.capacity_factor, 6), round(inst.reserved, 6)


def hold(adapter: SimulatedAdapter, instance_id: str = "i4") -> None:
    adapter.cordon(instance_id, key=f"hold:{instance_id}:c")
    adapter.scale(instance_id, factor=0.5, key=f"hold:{instance_id}:s")
    adapter.reserve(instance_id, 0.25, key=f"hold:{instance_id}:r")
    assert held(adapter, instance_id) == (InstanceState.CORDONED, 0.5, 0.25)


def plan_of(*actions: Action) -> Plan:
    return Plan(policy="test", mode=PolicyMode.AUTO, state=PlanState.APPROVED, actions=list(actions))


def release(instance_id: str = "i4", **params: bool) -> Action:
    return Action(action_id=f"rel-{instance_id}", type=ActionType.RELEASE, instance_id=instance_id, params=params)


def test_the_policy_action_validates_and_its_params_are_the_handlers() -> None:
    rule = load_policy_text(POLICY).rules[0]
    params = get_action(rule.action.type).process(rule.action)
    assert params == {"uncordon": True, "restore_scale": True, "free_buffer": False}
    action = release(**params)
    handler_for(action).validate(action)  # the decision's params are what the executor accepts
    with pytest.raises(PlanError, match="drain"):
        handler_for(release(drain=True)).validate(release(drain=True))  # type: ignore[arg-type]


def test_pre_condition_skips_an_instance_that_holds_nothing_is_gone_or_unhealthy() -> None:
    adapter = fleet()
    handler = handler_for(release())
    assert not handler.pre_condition(adapter, release("i4"))  # holds nothing
    assert not handler.pre_condition(adapter, release("no-such-instance"))
    hold(adapter)
    assert handler.pre_condition(adapter, release("i4"))
    adapter.fail_instance("i4")
    assert not handler.pre_condition(adapter, release("i4"))


def test_pre_condition_only_counts_the_holds_the_release_lifts() -> None:
    adapter = fleet()
    adapter.cordon("i4", key="c")
    handler = handler_for(release())
    assert handler.pre_condition(adapter, release(uncordon=True))
    assert not handler.pre_condition(adapter, release(uncordon=False))


def test_a_release_of_an_instance_holding_nothing_is_skipped_and_sends_nothing(tmp_path: Path) -> None:
    adapter = fleet()
    plan = applier(adapter, journal(tmp_path)).run(plan_of(release("i3")))
    assert plan.state is PlanState.SUCCEEDED
    assert [a.state for a in plan.actions] == [ActionState.SKIPPED]
    assert [method for method, _ in adapter.effects] == ["snapshot"]


def test_a_partial_release_lifts_only_what_it_is_asked_to(tmp_path: Path) -> None:
    adapter = fleet()
    hold(adapter)
    plan = applier(adapter, journal(tmp_path)).run(plan_of(release(uncordon=False, restore_scale=False)))
    assert plan.state is PlanState.SUCCEEDED, plan.notes
    assert held(adapter, "i4") == (InstanceState.CORDONED, 0.5, 0.0)
    assert [key for _, key in adapter.effects if key.startswith("rel-")] == ["rel-i4:free-buffer"]


def test_an_uncordon_that_timed_out_after_acting_is_not_sent_twice(tmp_path: Path) -> None:
    adapter = fleet()
    hold(adapter)
    adapter.inject("uncordon", when="after")  # the cloud acted, the reply was lost
    adapter.inject("scale", after=adapter.faults.calls["scale"])  # throttled once
    plan = applier(adapter, journal(tmp_path)).run(plan_of(release()))
    assert plan.state is PlanState.SUCCEEDED, plan.notes
    assert held(adapter, "i4") == (InstanceState.RUNNING, 1.0, 0.0)
    assert [k for k in effects_once(adapter) if k.startswith("rel-")] == [
        "rel-i4:scale",
        "rel-i4:free-buffer",
        "rel-i4:uncordon",
    ]
    assert journal_undo(plan) == {"cordoned": True, "factor": 0.5, "reserved": 0.25}


def journal_undo(plan: Plan) -> dict[str, object]:
    return dict(plan.actions[0].params[UNDO])


def test_a_failing_later_action_puts_every_hold_back(tmp_path: Path) -> None:
    adapter = fleet()
    hold(adapter)
    adapter.inject("migrate", error=AdapterError)
    move = Action(
        action_id="a-move", type=ActionType.MIGRATE, instance_id="i1", target_instance_id="i3", task_ids=["t1"]
    )
    plan = applier(adapter, journal(tmp_path)).run(plan_of(release(), move))
    assert plan.state is PlanState.ROLLED_BACK, plan.notes
    assert [a.state for a in plan.actions] == [ActionState.REVERTED, ActionState.FAILED]
    assert held(adapter, "i4") == (InstanceState.CORDONED, 0.5, 0.25)
    assert adapter.state.instances["i4"].cpu_capacity == 0.5
    assert [k for k in effects_once(adapter) if ":revert:" in k] == [
        "rel-i4:revert:cordon",
        "rel-i4:revert:reserve",
        "rel-i4:revert:scale",
    ]


def test_a_failed_revert_falls_back_to_the_snapshot(tmp_path: Path) -> None:
    adapter = fleet()
    hold(adapter)
    adapter.inject("migrate", error=AdapterError)
    adapter.inject("cordon", error=AdapterError, after=adapter.faults.calls["cordon"])  # the re-cordon fails
    move = Action(
        action_id="a-move", type=ActionType.MIGRATE, instance_id="i1", target_instance_id="i3", task_ids=["t1"]
    )
    plan = applier(adapter, journal(tmp_path)).run(plan_of(release(), move))
    assert plan.state is PlanState.ROLLED_BACK, plan.notes
    assert any("restored snapshot" in note for note in plan.notes)
    assert held(adapter, "i4") == (InstanceState.CORDONED, 0.5, 0.25)


def test_a_crash_after_the_release_acted_is_recorded_not_repeated(tmp_path: Path) -> None:
    adapter = fleet()
    hold(adapter)
    j = journal(tmp_path)

    def crash(point: str, action_id: str | None) -> None:
        if point == "after-execute":
            raise Crash

    with pytest.raises(Crash):
        applier(adapter, j, hook=crash).run(plan_of(release()))
    [plan] = applier(adapter, j).recover()
    assert plan.state is PlanState.SUCCEEDED, plan.notes
    assert held(adapter, "i4") == (InstanceState.RUNNING, 1.0, 0.0)
    effects_once(adapter)


def test_a_second_release_is_skipped(tmp_path: Path) -> None:
    adapter = fleet()
    hold(adapter)
    j = journal(tmp_path)
    first = applier(adapter, j).run(plan_of(release()))
    second = applier(adapter, j).run(plan_of(Action(type=ActionType.RELEASE, instance_id="i4")))
    assert first.state is second.state is PlanState.SUCCEEDED
    assert [a.state for a in second.actions] == [ActionState.SKIPPED]


def test_dry_run_says_what_it_would_do_and_changes_nothing(tmp_path: Path) -> None:
    adapter = fleet()
    hold(adapter)
    plan = Applier(adapter, journal(tmp_path), dry_run=True).run(plan_of(release(), release("i3")))
    assert [a.error for a in plan.actions] == ["dry-run: would run", "dry-run: would skip"]
    assert held(adapter, "i4") == (InstanceState.CORDONED, 0.5, 0.25)
