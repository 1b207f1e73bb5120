"""Emitting the migrations of a chosen placement, and making room when a task fits nowhere.

Making room: when no lower-risk instance has room for a task, look at the few lowest-risk candidates; on
each, pick the cheapest task (least value) whose departure would free enough, and move it to another
instance still below the source's risk. Done only when the expected gain is positive: the task's risk drop
times its value exceeds the displaced task's risk rise times its value plus the extra migration cost.
It takes two migrations, and no task moves twice in a cycle.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from forewarn.allocation.cycle import Cycle
from forewarn.allocation.placement import CAPACITY, Demand, apply, budgets, candidates, select
from forewarn.capacity import EPS
from forewarn.schemas import ActionType, Decision

HOSTS = 8
"""How many of the lowest-risk candidate hosts are examined for a task that fits nowhere."""


def emit_migrations(cycle: Cycle, row: int, chosen: list[tuple[int, float]], decision: Decision, why: str = "") -> None:
    """Move task row ``row`` to the chosen targets in the fleet model and emit one MIGRATE per piece, each with
    its note (a piece the cycle refuses after all goes back)."""
    fleet = cycle.fleet
    source, parent = int(fleet.task_instance[row]), str(fleet.task_ids[row])
    free = {target: float(fleet.free_cpu()[target]) for target, _ in chosen}
    rows = apply(fleet, row, chosen)
    for chunk, (target, fraction) in zip(rows, chosen, strict=True):
        task = str(fleet.task_ids[chunk])
        if target == source:
            cycle.miss(chunk, CAPACITY, decision)
            continue
        cycle.moved.add(task)
        params: dict[str, object] = {}
        part = ""
        if len(rows) > 1:
            params = {"split_of": parent, "fractions": {task: float(fleet.task_fraction[chunk])}}
            part = f" ({fraction:.0%} chunk)"
        note = (
            f"task {task}{part} (cpu {fleet.task_cpu[chunk]:.2f}) -> {fleet.instance_ids[target]}: "
            f"risk {fleet.risk[target]:.3f} vs {fleet.risk[source]:.3f} on {fleet.instance_ids[source]}, "
            f"{free[target]:.2f} cpu free{why}"
        )
        if cycle.emit(ActionType.MIGRATE, source, decision, note, target=target, task_ids=[task], params=params):
            continue
        fleet.undo_move(chunk, source)  # refused after all (never by the limits select saw): the piece stays
        cycle.unplaced.append(task)


def _victims(cycle: Cycle, host: int, demand: Demand) -> np.ndarray:
    """Tasks on ``host`` whose departure frees enough room for ``demand``, cheapest first."""
    fleet = cycle.fleet
    need_cpu = demand.cpu - float(fleet.free_cpu()[host])
    need_memory = demand.memory - float(fleet.free_memory()[host])
    rows = np.flatnonzero((fleet.task_instance == host) & ~fleet.task_pinned)
    rows = rows[(fleet.task_cpu[rows] >= need_cpu - EPS) & (fleet.task_memory[rows] >= need_memory - EPS)]
    rows = np.array([r for r in rows.tolist() if str(fleet.task_ids[r]) not in cycle.moved], dtype=np.int64)
    return rows[np.lexsort((fleet.task_cpu[rows], fleet.task_value[rows]))] if len(rows) else rows


def make_room(cycle: Cycle, row: int, demand: Demand, decision: Decision) -> bool:
    """Free a low-risk host for task row ``row`` by moving one cheaper task off it; True if the task moved."""
    fleet, limits = cycle.fleet, cycle.velocity()
    if limits.max_concurrent_migrations - cycle.migrations < 2 or demand.source < 0:
        return False
    whole = replace(demand, splittable=False)
    budget = budgets(fleet, limits, demand.source)
    ceiling, value = float(fleet.risk[demand.source]), float(fleet.task_value[row])
    for host in candidates(fleet, whole, limits, budget)[:HOSTS].tolist():
        if not cycle.may_migrate_from(host):
            continue
        for victim in _victims(cycle, host, whole)[:HOSTS].tolist():
            away = Demand(
                float(fleet.task_cpu[victim]),
                float(fleet.task_memory[victim]),
                source=host,
                ceiling=ceiling,
                exclude=demand.source,
            )
            spots, _ = select(fleet, away, limits, cycle.migrations)
            if not spots or limits.max_migrations_per_target - fleet.incoming[host] < 1:
                continue
            rise = float(fleet.risk[spots[0][0]] - fleet.risk[host]) * float(fleet.task_value[victim])
            cost = cycle.migration_cost * float(fleet.task_value[victim])
            if value * (ceiling - float(fleet.risk[host])) <= rise + cost:
                continue
            note = f"; makes room for {fleet.task_ids[row]}"
            emit_migrations(cycle, victim, spots, decision, note)
            if select(fleet, whole, cycle.velocity(), cycle.migrations)[0][:1] != [(host, 1.0)]:
                return False  # cannot happen (room was just freed); never move the task elsewhere blindly
            emit_migrations(cycle, row, [(host, 1.0)], decision, f"; room made by moving {fleet.task_ids[victim]}")
            return True
    return False
