"""Restoring the work of an instance that failed despite the prediction, and the three rollback cases end to end."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.faults import ALWAYS
from forewarn.errors import AdapterError, PlanError
from forewarn.execution.journal import Journal
from forewarn.execution.restore import restore_failed_instance
from forewarn.schemas import ActionState, ActionType, PlanState
from forewarn.store.repository import Repository
from tests.execution_support import applier, demand_by_root, fleet, full_plan, journal, layout

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def test_failed_instance_tasks_move_to_healthy_instances(tmp_path: Path) -> None:
    adapter, jr = fleet(), journal(tmp_path)
    demand = demand_by_root(adapter)
    adapter.fail_instance("i1", NOW)
    plan = restore_failed_instance(adapter, jr, "i1", now=NOW, applier=applier(adapter, jr))
    assert plan.state == PlanState.SUCCEEDED, plan.notes
    assert all(a.type == ActionType.MIGRATE and a.instance_id == "i1" for a in plan.actions)
    placement = adapter.placement()
    assert placement["t1"] not in ("i1", None) and placement["t2"] not in ("i1", None)
    assert demand_by_root(adapter) == demand


def test_nothing_to_restore_and_no_loop(tmp_path: Path) -> None:
    adapter, jr = fleet(), journal(tmp_path)
    adapter.fail_instance("i4")
    plan = restore_failed_instance(adapter, jr, "i4", now=NOW)
    assert plan.actions == [] and any("nothing to restore" in n for n in plan.notes)
    adapter.fail_instance("i1")
    first = restore_failed_instance(adapter, jr, "i1", now=NOW)
    assert first.state == PlanState.APPROVED
    assert restore_failed_instance(adapter, jr, "i1", now=NOW).plan_id == first.plan_id  # no second plan


def test_healthy_instance_is_not_restored(tmp_path: Path) -> None:
    adapter, jr = fleet(), journal(tmp_path)
    with pytest.raises(PlanError, match="healthy"):
        restore_failed_instance(adapter, jr, "i1", now=NOW)


def test_a_failing_restore_never_moves_work_back_onto_the_failed_instance(tmp_path: Path) -> None:
    adapter, jr = fleet(), journal(tmp_path)
    for spare in ("i3", "i4"):
        adapter.state.instances[spare].cpu_capacity = 0.45  # room for t1 or t2, not both
    adapter.fail_instance("i1")
    adapter.inject("migrate", after=1, times=10**6, error=AdapterError)
    plan = restore_failed_instance(adapter, jr, "i1", now=NOW, applier=applier(adapter, jr))
    assert plan.state in (PlanState.ROLLED_BACK, PlanState.FAILED)
    moved = [t for t in adapter.list_tasks() if t.instance_id != "i1" and t.task_id in ("t1", "t2")]
    assert moved, "the task already restored stays on its healthy instance"
    assert any("left in place" in n for n in plan.notes)


# -- the three rollback cases, end to end through the applier and a journal reopened as the next process would


def reopened(tmp_path: Path) -> Journal:
    return Journal(Repository(f"sqlite:///{tmp_path / 'forewarn.db'}"))


def test_case_instance_fails_despite_the_prediction(tmp_path: Path) -> None:
    adapter, jr = fleet(), journal(tmp_path)
    demand = demand_by_root(adapter)
    assert applier(adapter, jr).run(full_plan()).state == PlanState.SUCCEEDED  # t1 moved to i3, half of t2 to i4
    adapter.fail_instance("i3", NOW)  # the target fails although it was predicted healthy
    plan = restore_failed_instance(adapter, jr, "i3", now=NOW, applier=applier(adapter, jr))
    saved = reopened(tmp_path).get(plan.plan_id)
    assert saved.state == PlanState.SUCCEEDED and saved.policy == "restore-failed-instance"
    assert [(a.type, a.instance_id, a.task_ids, a.state) for a in saved.actions] == [
        (ActionType.MIGRATE, "i3", ["t1"], ActionState.SUCCEEDED)
    ]
    assert adapter.placement()["t1"] not in ("i3", "i1")  # a healthy instance that is not cordoned
    assert demand_by_root(adapter) == demand
    again = restore_failed_instance(adapter, jr, "i3", now=NOW)  # the target differs from the failed state now
    assert again.actions == [] and any("nothing to restore" in n for n in again.notes)


def test_case_action_fails_mid_plan(tmp_path: Path) -> None:
    adapter, jr = fleet(), journal(tmp_path)
    before = layout(adapter)
    adapter.inject("reserve", times=ALWAYS, error=AdapterError)
    plan = applier(adapter, jr).run(full_plan())
    saved = reopened(tmp_path).get(plan.plan_id)
    assert saved.state == PlanState.ROLLED_BACK
    assert [a.state for a in saved.actions] == [ActionState.REVERTED] * 3 + [ActionState.FAILED, ActionState.SKIPPED]
    assert "a-reserve (reserve-buffer) failed" in saved.notes[-1] and saved.notes[-1].startswith("rolled back")
    assert [k for _, k in adapter.effects if k.endswith(":revert")] == [
        "a-split:revert",
        "a-move:revert",
        "a-cordon:revert",
    ]
    assert layout(adapter) == before


def test_case_post_condition_fails(tmp_path: Path) -> None:
    adapter, jr = fleet(), journal(tmp_path)
    before = layout(adapter)
    original = adapter.health

    def health(instance_id: str) -> bool:  # i4 looks dead once half of t2 has landed on it
        return original(instance_id) and not (instance_id == "i4" and "t2#1" in adapter.placement())

    adapter.health = health  # type: ignore[method-assign]
    plan = applier(adapter, jr).run(full_plan())
    saved = reopened(tmp_path).get(plan.plan_id)
    assert saved.state == PlanState.ROLLED_BACK
    split = saved.actions[2]
    assert split.state == ActionState.REVERTED and "post-condition failed" in str(split.error)
    assert "post-condition failed" in saved.notes[-1]
    assert layout(adapter) == before  # the chunk came back and rejoined t2


def test_restored_work_never_lands_in_a_buffer_the_policy_reserved(tmp_path: Path) -> None:
    adapter, jr = fleet(), journal(tmp_path)  # i2 holds t3 (0.5); i3 and i4 are empty
    adapter.reserve("i3", 0.9, key="buffer-i3")  # 0.1 left for new work: neither t1 (0.3) nor t2 (0.4)
    adapter.reserve("i4", 0.6, key="buffer-i4")  # 0.4 left
    adapter.fail_instance("i1")
    plan = restore_failed_instance(adapter, jr, "i1", now=NOW, applier=applier(adapter, jr))
    assert plan.state == PlanState.SUCCEEDED, plan.notes
    assert adapter.placement()["t2"] == "i2" and adapter.placement()["t1"] == "i4"  # i3 passed over: its buffer
    assert all(min(adapter.free(i)) >= -1e-9 for i in ("i2", "i3", "i4"))

    (tmp_path / "full").mkdir()
    adapter, jr = fleet(), journal(tmp_path / "full")
    for spare in ("i3", "i4"):
        adapter.reserve(spare, 0.9, key=f"buffer-{spare}")
    adapter.fail_instance("i1")
    plan = restore_failed_instance(adapter, jr, "i1", now=NOW, applier=applier(adapter, jr))
    assert plan.state == PlanState.SUCCEEDED and adapter.placement()["t1"] == "i1"  # nowhere to go but a buffer
    assert any("no healthy capacity for t1" in n for n in plan.notes), plan.notes
