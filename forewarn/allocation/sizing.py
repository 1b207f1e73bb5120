"""Sizing decisions: buffers on the healthiest instances, scale-up when work has nowhere to go, and
scale-down of empty low-risk instances when a group is underused (the capacity arithmetic itself is
:mod:`forewarn.capacity`).

Utilisation of a group is the larger of its cpu and memory load over the usable capacity of its running
instances. Below ``low_utilisation`` (default 0.30) empty low-risk instances are released until the
group would pass the midpoint of the two thresholds; above ``high_utilisation`` (default 0.85) instances
are added until it would drop to that midpoint. ``min``/``max`` from the decision bound the group size; all
four are the policy's (the ``autoscale`` action's ``min``, ``max``, ``low-utilisation``, ``high-utilisation``),
with the policy's defaults where a decision lacks one (:func:`autoscale_params`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from forewarn.allocation.cycle import Cycle
from forewarn.allocation.model import Fleet
from forewarn.capacity import EPS
from forewarn.policy.actions import AutoscaleParams
from forewarn.schemas import ActionType, Decision, InstanceState


def autoscale_params(decision: Decision) -> AutoscaleParams:
    """The ``autoscale`` parameters a decision carries, the policy's defaults for any it lacks: the one source of
    the thresholds and bounds (no number here the policy cannot set)."""
    given = {k: v for k, v in decision.params.items() if k in AutoscaleParams.model_fields and k != "type"}
    return AutoscaleParams.model_validate(given)


def reserve_buffers(cycle: Cycle, count: int, fraction: float, decision: Decision | None) -> None:
    """Reserve ``fraction`` of capacity on the ``count`` healthiest instances that have that much free."""
    fleet = cycle.fleet
    count -= int(((fleet.reserved >= fraction - EPS) & fleet.accepting).sum())  # buffers already in force count
    if count <= 0 or fraction <= 0:
        return
    with np.errstate(divide="ignore", invalid="ignore"):
        free = np.minimum(fleet.free_cpu() / fleet.cpu_capacity, fleet.free_memory() / fleet.memory_capacity)
    ok = fleet.accepting & (fleet.reserved == 0) & (np.nan_to_num(free, nan=0.0) >= fraction - EPS)
    for row in fleet.risk_order[ok[fleet.risk_order]].tolist():
        if count == 0 or cycle.actions_left() <= 0:
            return
        name = fleet.instance_ids[row]
        note = f"reserve {fraction:.0%} of {name} as a buffer: risk {fleet.risk[row]:.3f}, {free[row]:.0%} free"
        if cycle.emit(ActionType.RESERVE_BUFFER, row, decision, note, params={"fraction": fraction}):
            fleet.reserved[row] = fraction
            count -= 1


def typical_size(fleet: Fleet) -> tuple[float, float]:
    """Median cpu and memory capacity of running instances (the size a scale-up would add)."""
    running = fleet.state == InstanceState.RUNNING.value
    if not running.any():
        running = np.ones(fleet.n_instances, dtype=bool)
    cpu = float(np.median(fleet.cpu_capacity[running])) if fleet.n_instances else 1.0
    memory = float(np.median(fleet.memory_capacity[running])) if fleet.n_instances else 1.0
    return max(cpu, EPS), max(memory, EPS)


def scale_up_for_shortage(cycle: Cycle) -> tuple[int, str]:
    """One AUTOSCALE (+n) for the work that found no room; returns n (0 if none was needed or allowed), group."""
    fleet = cycle.fleet
    if not cycle.short or cycle.short_decision is None:
        return 0, ""
    rows = np.asarray(cycle.short, dtype=np.int64)
    cpu, memory = typical_size(fleet)
    by_cpu = math.ceil(fleet.task_cpu[rows].sum() / cpu - EPS)
    delta = max(1, by_cpu, math.ceil(fleet.task_memory[rows].sum() / memory - EPS))
    decision = cycle.short_decision
    source = fleet.index[decision.instance_id]
    group = str(fleet.group[source]) if fleet.group is not None else "default"
    cycle.held = 0
    tasks = [str(fleet.task_ids[row]) for row in rows.tolist()]
    note = f"scale up group {group} by {delta}: {len(tasks)} task(s) found no lower-risk instance with room"
    params = {"delta": delta, "group": group, "tasks": tasks}
    action = cycle.emit(ActionType.AUTOSCALE, source, decision, note, params=params)
    return (delta if action is not None else 0), group


def _utilisation(fleet: Fleet, rows: np.ndarray) -> float:
    cpu = fleet.cpu_used[rows].sum() / max(fleet.usable_cpu()[rows].sum(), EPS)
    memory = fleet.memory_used[rows].sum() / max(fleet.usable_memory()[rows].sum(), EPS)
    return float(max(cpu, memory))


def _scale_down(cycle: Cycle, group: str, members: list[Decision], running: np.ndarray, level: float) -> None:
    fleet, first = cycle.fleet, members[0]
    wanted = autoscale_params(first)
    low, goal, lowest = wanted.low_utilisation, (wanted.low_utilisation + wanted.high_utilisation) / 2, wanted.min
    count = np.bincount(fleet.task_instance[fleet.task_instance >= 0], minlength=fleet.n_instances)
    empty = [fleet.index[d.instance_id] for d in members]
    empty = sorted(
        {r for r in empty if fleet.accepting[r] and not fleet.touched[r] and count[r] == 0},
        key=lambda r: (-np.nan_to_num(fleet.risk[r]), r),
    )
    chosen: list[int] = []
    for row in empty:
        keep = np.setdiff1d(running, [*chosen, row])
        if len(keep) < lowest or _utilisation(fleet, keep) > goal or not cycle.can_touch([*chosen, row]):
            break
        chosen.append(row)
    if not chosen:
        return
    names = [str(fleet.instance_ids[r]) for r in chosen]
    note = f"scale down group {group} by {len(chosen)} ({', '.join(names)}): utilisation {level:.0%} < {low:.0%}"
    params = {"delta": -len(chosen), "group": group, "instances": names}
    if cycle.emit(ActionType.AUTOSCALE, chosen[0], first, note, params=params):
        fleet.accepting[np.asarray(chosen)] = False


def autoscale(cycle: Cycle, decisions: Sequence[Decision], scaled_up: set[str]) -> int:
    """Per group of the low-risk AUTOSCALE decisions, scale down an underused group or up an overused one.

    Returns the instances requested by scale-ups (groups in ``scaled_up`` already have one this cycle).
    """
    fleet = cycle.fleet
    assert fleet.group is not None
    requested = 0
    by_group: dict[str, list[Decision]] = {}
    for decision in decisions:
        by_group.setdefault(str(fleet.group[fleet.index[decision.instance_id]]), []).append(decision)
    for group, members in sorted(by_group.items()):
        first = members[0]
        wanted = autoscale_params(first)
        low, high = wanted.low_utilisation, wanted.high_utilisation
        running = np.flatnonzero((fleet.group == group) & (fleet.state == InstanceState.RUNNING.value))
        level = _utilisation(fleet, running)
        if level < low:
            _scale_down(cycle, group, members, running, level)
        elif level > high and group not in scaled_up:
            delta = math.ceil(len(running) * (level / ((low + high) / 2) - 1) - EPS)
            delta = min(max(delta, 1), max(0, wanted.max - len(running)))
            note = f"scale up group {group} by {delta}: utilisation {level:.0%} > {high:.0%}"
            row = fleet.index[first.instance_id]
            params = {"delta": delta, "group": group}
            if delta > 0 and cycle.emit(ActionType.AUTOSCALE, row, first, note, params=params):
                requested += delta
    return requested
