"""From decisions to actions: the allocation step of every cycle.

Decisions are handled in priority order: rollbacks, migrations (each source cordoned, then its tasks moved,
riskiest and most valuable first), plain cordons, scale-backs with their buffers, buffer reservations, a
scale-up for work that found no room, autoscale of low-risk groups, notifications, then releases (an
instance back in the low band gets what Forewarn held there undone: uncordon, nominal size, no buffer). Every action
counts against ``max_actions_per_cycle``; every instance an action touches (:mod:`forewarn.policy.limits`)
counts against ``max_fleet_fraction``; each migrated task or chunk counts against ``max_concurrent_migrations``
and its target's ``max_migrations_per_target``. Given the guardrails' limit engine, the plan also stays within
cooldowns, the window share and the caps per type, counted the same way the guardrails count them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from forewarn.allocation.cycle import Cycle
from forewarn.allocation.model import Fleet
from forewarn.allocation.moves import migrate, scale_back
from forewarn.allocation.sizing import autoscale, reserve_buffers, scale_up_for_shortage
from forewarn.policy.actions import ReserveBufferParams, ScaleBackParams
from forewarn.policy.limits import LimitEngine
from forewarn.schemas import OPT_OUT_RULE, Action, ActionType, Decision, Instance, Task, VelocityLimits

PASS_THROUGH = (
    ActionType.RESTORE_SNAPSHOT,
    ActionType.CORDON,
    ActionType.RESERVE_BUFFER,
    ActionType.NOTIFY,
    ActionType.RELEASE,
)
DEFAULT_BUFFER = float(ReserveBufferParams.model_fields["fraction"].default)
DEFAULT_SCALE_BACK_BUFFER = float(ScaleBackParams.model_fields["reserve_buffer"].default)
NO_TARGET = {ActionType.MIGRATE, ActionType.SCALE_BACK, ActionType.CORDON, ActionType.RESTORE_SNAPSHOT}
"""Decisions whose instance receives no moved work this cycle."""


@dataclass
class AllocationResult:
    """What the allocator proposes for one cycle.

    Attributes:
        actions: the actions, in the order they should run.
        placements: task id -> instance id after the plan (split chunks under their own ids).
        unplaced: tasks that should have moved and stay where they are.
        scale_up_requests: instances requested by AUTOSCALE actions with a positive delta.
        explanations: one line per action or missed move, saying where each task went and why.
        objective: expected interruption cost (risk x value per instance) + migration cost x value moved.
    """

    actions: list[Action]
    placements: dict[str, str]
    unplaced: list[str]
    scale_up_requests: int
    explanations: list[str] = field(default_factory=list)
    objective: float = 0.0


def _known(decisions: Sequence[Decision], fleet: Fleet, explanations: list[str]) -> dict[ActionType, list[Decision]]:
    """Decisions by action type, dropping unknown instances, exact repeats, and a scale-back of an instance
    that is also migrated or drained (the stronger decision wins)."""
    out: dict[ActionType, list[Decision]] = {}
    seen: set[tuple[ActionType, str]] = set()
    for decision in decisions:
        if decision.instance_id not in fleet.index:
            explanations.append(f"decision {decision.action.value} for unknown instance {decision.instance_id} ignored")
            continue
        key = (decision.action, decision.instance_id)
        if key in seen or decision.action is ActionType.NONE:
            continue
        seen.add(key)
        out.setdefault(decision.action, []).append(decision)
    emptied = {d.instance_id for d in out.get(ActionType.MIGRATE, [])}
    emptied |= {d.instance_id for d in out.get(ActionType.CORDON, []) if d.params.get("drain")}
    if ActionType.SCALE_BACK in out:
        out[ActionType.SCALE_BACK] = [d for d in out[ActionType.SCALE_BACK] if d.instance_id not in emptied]
    return out


def _pass_through(cycle: Cycle, decisions: Sequence[Decision], skip: set[int]) -> None:
    fleet = cycle.fleet
    for decision in decisions:
        row = fleet.index[decision.instance_id]
        if row in skip:
            continue
        note = f"{decision.action.value} {decision.instance_id}: rule {decision.rule} ({decision.band.value})"
        action = cycle.emit(decision.action, row, decision, note, params=dict(decision.params))
        if action is not None and decision.action is ActionType.RESERVE_BUFFER:
            fleet.reserved[row] = float(decision.params.get("fraction", DEFAULT_BUFFER))


def _pin(fleet: Fleet, decisions: Sequence[Decision]) -> None:
    """Opted-out work never moves: the tasks a decision lists as opted out, and every task on an instance
    that opted out (the policy engine gives it a ``none`` decision under rule ``opt-out``), which takes no
    work either."""
    listed = {str(t) for d in decisions for t in d.params.get("opt_out_task_ids", [])}
    if listed:
        fleet.task_pinned |= np.isin(fleet.task_ids.astype(str), sorted(listed))
    hosts = [fleet.index[d.instance_id] for d in decisions if d.rule == OPT_OUT_RULE and d.instance_id in fleet.index]
    if hosts:
        fleet.task_pinned[fleet.tasks_on(hosts)] = True
        fleet.accepting[np.asarray(hosts)] = False


def plan_fleet(
    decisions: Sequence[Decision],
    fleet: Fleet,
    limits: VelocityLimits,
    *,
    migration_cost: float = 0.05,
    engine: LimitEngine | None = None,
) -> AllocationResult:
    """:func:`plan_actions` on a :class:`Fleet` already built (the fleet is changed to the state after the plan)."""
    cycle = Cycle(fleet, engine.caps.velocity() if engine else limits, migration_cost, engine)
    _pin(fleet, decisions)
    by_type = _known(decisions, fleet, cycle.explanations)
    for kind in NO_TARGET:
        for decision in by_type.get(kind, []):
            fleet.accepting[fleet.index[decision.instance_id]] = False
    _pass_through(cycle, by_type.get(ActionType.RESTORE_SNAPSHOT, []), set())
    cordons = by_type.get(ActionType.CORDON, [])
    drains = [d for d in cordons if d.params.get("drain")]
    movers = by_type.get(ActionType.MIGRATE, []) + drains
    cordoned = migrate(cycle, movers)
    _pass_through(cycle, [d for d in cordons if not d.params.get("drain")], cordoned)
    backs = by_type.get(ActionType.SCALE_BACK, [])
    wanted = scale_back(cycle, backs)  # a scale-back the limits refused wants no buffer
    buffer = max((float(d.params.get("reserve_buffer", DEFAULT_SCALE_BACK_BUFFER)) for d in backs), default=0.0)
    reserve_buffers(cycle, wanted, buffer, backs[0] if backs else None)
    _pass_through(cycle, by_type.get(ActionType.RESERVE_BUFFER, []), set())
    requested, group = scale_up_for_shortage(cycle)
    requested += autoscale(cycle, by_type.get(ActionType.AUTOSCALE, []), {group} if requested else set())
    _pass_through(cycle, by_type.get(ActionType.NOTIFY, []), set())
    _pass_through(cycle, by_type.get(ActionType.RELEASE, []), set())
    placed = fleet.task_instance >= 0
    placements = dict(
        zip(fleet.task_ids[placed].tolist(), fleet.instance_ids[fleet.task_instance[placed]].tolist(), strict=True)
    )
    return AllocationResult(
        actions=cycle.actions,
        placements=placements,
        unplaced=cycle.unplaced,
        scale_up_requests=requested,
        explanations=cycle.explanations,
        objective=fleet.objective(migration_cost),
    )


def plan_actions(
    decisions: Sequence[Decision],
    instances: Sequence[Instance],
    tasks: Sequence[Task],
    risk: Mapping[str, float],
    limits: VelocityLimits,
    *,
    migration_cost: float = 0.05,
    engine: LimitEngine | None = None,
) -> AllocationResult:
    """Turn a cycle's decisions into actions that move work off risky instances within the velocity limits.

    Args:
        decisions: what the policy wants per instance (MIGRATE, SCALE_BACK, AUTOSCALE pass through the
            allocator; CORDON, NOTIFY, RESTORE_SNAPSHOT, RESERVE_BUFFER become single actions; NONE nothing).
        instances: the fleet; only RUNNING instances with a score receive work.
        tasks: the tasks, on their current instances.
        risk: instance id -> calibrated failure probability.
        limits: the velocity limits the plan stays within.
        migration_cost: cost of moving work, per unit of value moved, in the objective.
        engine: the guardrails' limit engine for this cycle (:func:`forewarn.policy.guardrails.budget`), whose
            caps replace ``limits``: the plan then stays within cooldowns, window shares, caps per type and
            the migrations in flight too, so the guardrails drop nothing of it.

    Raises:
        InputError: duplicate ids, a task on an unknown instance, or a score outside [0, 1].
    """
    fleet = Fleet.from_records(instances, tasks, risk)
    return plan_fleet(decisions, fleet, limits, migration_cost=migration_cost, engine=engine)
