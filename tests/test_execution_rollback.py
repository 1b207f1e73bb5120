"""Restoring the work of an instance that failed despite the prediction."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from forewarn.errors import AdapterError, PlanError
from forewarn.execution.rollback import restore_failed_instance
from forewarn.schemas import ActionType, PlanState
from tests.execution_support import applier, demand_by_root, fleet, journal

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
