"""Moving work off risky instances: migrate (and cordon with drain) empties a source, scale-back trims it.

Tasks leave in order of expected loss (source risk x value), so the most valuable work on the riskiest
instance goes first; each task goes whole, or in chunks when no single target fits it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from forewarn.allocation.cycle import COOLDOWN, Cycle
from forewarn.allocation.model import Fleet
from forewarn.allocation.placement import CAPACITY, FLEET_FRACTION, VELOCITY, Demand, select
from forewarn.allocation.repair import emit_migrations, make_room
from forewarn.capacity import EPS, fits, usable
from forewarn.policy.actions import ScaleBackParams
from forewarn.policy.limits import COOLDOWN as COOLDOWN_KEY
from forewarn.schemas import ActionType, Decision


def split_rule(decision: Decision) -> tuple[bool, float]:
    """Whether the decision allows splitting, and its minimum chunk (policy ``split: {enabled, min_chunk}``)."""
    split: Any = decision.params.get("split")
    if not isinstance(split, Mapping):
        return True, 0.0
    return bool(split.get("enabled", True)), float(split.get("min_chunk", 0.0))


def move_one(cycle: Cycle, row: int, decision: Decision, waiting: int = 0) -> bool:
    """Move task row ``row`` off its instance; emit one MIGRATE per target. False if it stays.

    ``waiting`` tasks queue behind this one: a split that fits whole anyway leaves them their migrations.
    """
    fleet, limits = cycle.fleet, cycle.limits
    source = int(fleet.task_instance[row])
    if not cycle.may_migrate_from(source):
        cycle.miss(row, COOLDOWN, decision)
        return False
    allowed, policy_chunk = split_rule(decision)
    demand = Demand(
        cpu=float(fleet.task_cpu[row]),
        memory=float(fleet.task_memory[row]),
        splittable=bool(fleet.task_splittable[row]) and allowed,
        min_chunk=max(float(fleet.task_min_chunk[row]), policy_chunk),
        source=source,
        spare=min(limits.max_concurrent_migrations - cycle.migrations, cycle.actions_left()) - 1 - waiting,
    )
    chosen, why = select(fleet, demand, cycle.velocity(), cycle.migrations)
    if chosen:
        emit_migrations(cycle, row, chosen, decision)
        return True
    if why == CAPACITY and make_room(cycle, row, demand, decision):
        return True
    cycle.miss(row, why, decision)
    return False


def move_off(
    cycle: Cycle,
    sources: Mapping[int, Decision],
    *,
    done: Callable[[int], bool] | None = None,
) -> None:
    """Move the tasks of ``sources`` (instance row -> decision) in order of expected loss.

    Args:
        cycle: the cycle being planned.
        sources: the instances to move work off, each with the decision that asked for it.
        done: called with a source row before each of its tasks; True stops moving work off that source.
    """
    fleet = cycle.fleet
    rows = fleet.tasks_on(list(sources), movable=True)
    loss = fleet.risk[fleet.task_instance[rows]] * fleet.task_value[rows]
    order = rows[np.lexsort((fleet.task_ids[rows].astype(str), -fleet.task_value[rows], -np.nan_to_num(loss)))]
    for position, row in enumerate(order.tolist()):
        source = int(fleet.task_instance[row])
        if done is not None and done(source):
            continue
        if cycle.velocity().max_concurrent_migrations <= cycle.migrations:
            cycle.miss(row, VELOCITY)
            continue
        move_one(cycle, row, sources[source], waiting=len(order) - position - 1 if done is None else 0)


def migrate(cycle: Cycle, decisions: Sequence[Decision]) -> set[int]:
    """Cordon each source (riskiest first) and move all its tasks; returns the rows cordoned."""
    fleet = cycle.fleet
    cordoned: dict[int, Decision] = {}
    handled: set[int] = set()
    for decision in sorted(decisions, key=lambda d: -np.nan_to_num(fleet.risk[fleet.index[d.instance_id]])):
        row = fleet.index[decision.instance_id]
        if row in handled:
            continue
        handled.add(row)
        note = f"cordon {decision.instance_id}: risk {fleet.risk[row]:.3f} ({decision.band}), rule {decision.rule}"
        if cycle.emit(ActionType.CORDON, row, decision, note) is not None:
            cordoned[row] = decision
        elif (cycle.refused or "").startswith(COOLDOWN_KEY) and cycle.may_migrate_from(row):
            cordoned[row] = decision  # a cordon or more is in force already: the work still leaves
        else:
            why = FLEET_FRACTION if (cycle.refused or "").startswith("max-fleet") else VELOCITY
            why = COOLDOWN if (cycle.refused or "").startswith(COOLDOWN_KEY) else why
            for task in fleet.tasks_on([row]).tolist():
                cycle.miss(task, why, decision)
    move_off(cycle, cordoned)
    return set(cordoned)


def fits_within(fleet: Fleet, row: int) -> bool:
    """Whether instance ``row`` carries no more than its usable capacity (:func:`forewarn.capacity.usable`)."""
    factor, reserved = float(fleet.capacity_factor[row]), float(fleet.reserved[row])
    return fits(float(fleet.cpu_used[row]), usable(float(fleet.cpu_capacity[row]), factor, reserved)) and fits(
        float(fleet.memory_used[row]), usable(float(fleet.memory_capacity[row]), factor, reserved)
    )


def scale_back(cycle: Cycle, decisions: Sequence[Decision]) -> int:
    """Lower each source's usable capacity to ``factor`` and move the excess off, highest value first.

    Returns how many scale-backs are planned or in force already (each wants its buffer)."""
    fleet = cycle.fleet
    wanted = 0
    for decision in sorted(decisions, key=lambda d: -np.nan_to_num(fleet.risk[fleet.index[d.instance_id]])):
        row = fleet.index[decision.instance_id]
        factor = float(decision.params.get("factor", ScaleBackParams.model_fields["factor"].default))
        if fleet.capacity_factor[row] <= factor + EPS and fits_within(fleet, row):
            cycle.explanations.append(f"{decision.instance_id} already runs at {fleet.capacity_factor[row]:.0%}")
            wanted += 1
            continue  # already scaled back that far: nothing to do again
        note = f"scale back {decision.instance_id} to {factor:.0%}: risk {fleet.risk[row]:.3f}, rule {decision.rule}"
        action = cycle.emit(ActionType.SCALE_BACK, row, decision, note, params={"factor": factor})
        if action is None:
            continue
        wanted += 1
        fleet.capacity_factor[row] = factor
        move_off(cycle, {row: decision}, done=lambda r: fits_within(fleet, r))
        need = max(
            fleet.cpu_used[row] / fleet.cpu_capacity[row] if fleet.cpu_capacity[row] > 0 else 0.0,
            fleet.memory_used[row] / fleet.memory_capacity[row] if fleet.memory_capacity[row] > 0 else 0.0,
        )
        if need > factor + EPS:
            achieved = min(1.0, float(np.ceil(need * 1000) / 1000))
            fleet.capacity_factor[row] = max(achieved, need)
            action.params = {"factor": achieved, "requested_factor": factor}
            action.reason.note += f"; only {achieved:.0%} reachable, the rest of the work has nowhere to go"
    return wanted
