"""Restore the work of an instance that failed despite the prediction (the cycle's restore step).

Its tasks restart from their last checkpoint on healthy instances: a plan of MIGRATE actions from the
failed instance, placed first-fit by free capacity (:func:`forewarn.capacity.free`: a buffer the policy
reserved stays free), largest task first. Before planning, the target
placement is compared with the failed one: when no task is left on the failed instance there is nothing
to restore, and no second restore plan is made while one for the same instance is open, so a rollback
never loops. Tasks that fit nowhere stay listed in the plan's notes.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from forewarn import capacity
from forewarn.cloud import CloudAdapter
from forewarn.errors import PlanError
from forewarn.execution.applier import Applier
from forewarn.execution.journal import Journal
from forewarn.schemas import Action, ActionReason, ActionType, InstanceState, Plan, PlanState, PolicyMode, Task

POLICY = "restore-failed-instance"
OPEN_STATES = (PlanState.RECOMMENDED, PlanState.APPROVED, PlanState.RUNNING)


def _open_restore(journal: Journal, instance_id: str) -> Plan | None:
    for state in OPEN_STATES:
        for plan in journal.list(state):
            if plan.policy == POLICY and any(a.instance_id == instance_id for a in plan.actions):
                return plan
    return None


def _place(adapter: CloudAdapter, failed_id: str, tasks: list[Task]) -> tuple[dict[str, list[str]], list[str]]:
    """First-fit decreasing onto running instances; returns target -> task ids, and the tasks that fit nowhere."""
    up = {
        inst.instance_id: inst
        for inst in adapter.list_instances()
        if inst.instance_id != failed_id and inst.state == InstanceState.RUNNING and adapter.health(inst.instance_id)
    }
    used: dict[str, list[float]] = {instance_id: [0.0, 0.0] for instance_id in up}
    for task in adapter.list_tasks():
        if task.instance_id in used:
            used[task.instance_id][0] += task.cpu
            used[task.instance_id][1] += task.memory
    free = {i: list(capacity.free(inst, *used[i])) for i, inst in up.items()}
    placed: dict[str, list[str]] = defaultdict(list)
    unplaced: list[str] = []
    for task in sorted(tasks, key=lambda t: (-t.cpu, -t.memory, t.task_id)):
        target = next(
            (i for i, (cpu, mem) in free.items() if capacity.fits(task.cpu, cpu) and capacity.fits(task.memory, mem)),
            None,
        )
        if target is None:
            unplaced.append(task.task_id)
            continue
        free[target][0] -= task.cpu
        free[target][1] -= task.memory
        placed[target].append(task.task_id)
    return dict(placed), unplaced


def restore_failed_instance(
    adapter: CloudAdapter,
    journal: Journal,
    instance_id: str,
    *,
    now: datetime,
    applier: Applier | None = None,
) -> Plan:
    """Plan (and, given an ``applier``, run) moving a failed instance's tasks onto healthy instances.

    The plan is saved APPROVED under policy ``restore-failed-instance``. Raises PlanError when the instance
    is still healthy. When a restore plan for it is already open, that plan is returned instead.
    """
    if adapter.health(instance_id):
        raise PlanError(f"instance {instance_id} is healthy; only a failed instance's work is restored")
    existing = _open_restore(journal, instance_id)
    if existing is not None:
        return existing
    stranded = [t for t in adapter.list_tasks() if t.instance_id == instance_id]
    placed, unplaced = _place(adapter, instance_id, stranded)
    reason = ActionReason(rule=POLICY, note=f"{instance_id} failed; tasks restart from their last checkpoint")
    actions = [
        Action(
            type=ActionType.MIGRATE,
            instance_id=instance_id,
            target_instance_id=target,
            task_ids=sorted(ids),
            params={},
            reason=reason,
        )
        for target, ids in sorted(placed.items())
    ]
    notes = [f"restore of {instance_id} planned at {now.isoformat()}"]
    if not stranded:
        notes.append(f"nothing to restore: no task is left on {instance_id}")
    if unplaced:
        notes.append(f"no healthy capacity for {', '.join(sorted(unplaced))}; they stay on {instance_id}")
    plan = Plan(
        policy=POLICY, mode=PolicyMode.AUTO, state=PlanState.APPROVED, created_at=now, actions=actions, notes=notes
    )
    journal.save_plan(plan)
    return applier.run(plan) if applier is not None else journal.get(plan.plan_id)
