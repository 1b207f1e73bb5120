"""Where one task goes: sort instances by risk, compute the concurrency the velocity limits leave, select
targets, distribute the work.

A task goes whole to the lowest-risk instance that fits it. A splittable task is cut into chunks (each at
least ``min_chunk`` of the task) over the lowest-risk instances, filling each in turn, when no single
instance fits it or when the chunks land on instances of clearly lower risk (by ``SPLIT_GAIN``) than the
best whole target; cumulative fits and ``np.searchsorted`` find how many targets that takes. Each chunk
is one migration, so the number of chunks is bounded by the migrations still allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from forewarn.allocation.model import Fleet
from forewarn.capacity import EPS
from forewarn.schemas import Task, VelocityLimits

OK, VELOCITY, FLEET_FRACTION, CAPACITY = "ok", "velocity", "fleet-fraction", "capacity"
"""Why a selection came out as it did; the planner turns these into explanations and scale-up requests."""

SPLIT_GAIN = 0.01
"""A task that fits whole somewhere is split only if that lowers its (fraction-weighted) risk by this much."""


@dataclass(frozen=True)
class Demand:
    """What is to be placed: demand, splitting rule and the instance row it comes from (-1: none)."""

    cpu: float
    memory: float
    splittable: bool = False
    min_chunk: float = 1.0
    source: int = -1
    spare: int | None = None
    """Migrations that may go to extra chunks when the task also fits whole (None: no other work waits)."""
    ceiling: float | None = None
    """Targets must be below this risk (default: the source's risk)."""
    exclude: int = -1
    """An instance row that must not receive the work (besides the source)."""


def touch_budget(fleet: Fleet, limits: VelocityLimits) -> int:
    """How many more instances the plan may touch under ``max_fleet_fraction``."""
    cap = math.floor(limits.max_fleet_fraction * fleet.n_instances + EPS)
    return cap - int(fleet.touched.sum())


def budgets(fleet: Fleet, limits: VelocityLimits, source: int = -1) -> tuple[int, int]:
    """Instances the plan may still touch besides ``source`` (a row, or -1): in this cycle, and in the window."""
    cycle = touch_budget(fleet, limits)
    window = 10**9 if fleet.window_cap is None else fleet.window_cap - int((fleet.touched | fleet.windowed).sum())
    if source >= 0 and not fleet.touched[source]:
        cycle -= 1
        window -= 0 if fleet.windowed[source] else 1
    return cycle, window


def _fits(fleet: Fleet, rows: np.ndarray, demand: Demand) -> np.ndarray:
    """The largest fraction of ``demand`` each instance row can take (inf when the demand is zero)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        cpu = np.where(demand.cpu > 0, fleet.free_cpu()[rows] / max(demand.cpu, EPS), np.inf)
        memory = np.where(demand.memory > 0, fleet.free_memory()[rows] / max(demand.memory, EPS), np.inf)
    return np.minimum(cpu, memory)


def candidates(fleet: Fleet, demand: Demand, limits: VelocityLimits, budget: tuple[int, int]) -> np.ndarray:
    """Instance rows that may receive work, lowest risk first, within the per-target limit and the fleet shares
    ``budget`` leaves (instances not yet touched, in this cycle and in the window: see :func:`budgets`)."""
    ok = fleet.accepting & (fleet.incoming < limits.max_migrations_per_target)
    if demand.exclude >= 0:
        ok[demand.exclude] = False
    if demand.source >= 0:
        ok[demand.source] = False
    ceiling = (
        demand.ceiling if demand.ceiling is not None else (fleet.risk[demand.source] if demand.source >= 0 else None)
    )
    if ceiling is not None and np.isfinite(ceiling):
        ok &= fleet.risk < ceiling
    order = fleet.risk_order[ok[fleet.risk_order]]
    fresh = ~fleet.touched[order]
    new = fresh & ~fleet.windowed[order]
    return order[~fresh | ((np.cumsum(fresh) <= budget[0]) & (np.cumsum(new) <= budget[1]))]


def _chunks(fit: np.ndarray, min_chunk: float) -> list[float] | None:
    """Fractions filling each target in turn, the last one topped up so every chunk is >= ``min_chunk``."""
    cumulative = np.cumsum(np.minimum(fit, 1.0))
    k = int(np.searchsorted(cumulative, 1.0 - EPS))
    if k >= len(fit):
        return None
    parts = [float(x) for x in np.minimum(fit[:k], 1.0)]
    last = 1.0 - sum(parts)
    for j in range(len(parts) - 1, -1, -1):
        give = min(max(min_chunk - last, 0.0), max(parts[j] - min_chunk, 0.0))
        parts[j] -= give
        last += give
    if last < min_chunk - EPS:
        return None
    return [*parts, last]


def select(
    fleet: Fleet, demand: Demand, limits: VelocityLimits, in_flight: int = 0
) -> tuple[list[tuple[int, float]], str]:
    """Targets as (instance row, fraction) and why: ``ok``, or the limit that stopped the move.

    Nothing is changed; the caller applies the result with :meth:`Fleet.move` / :meth:`Fleet.split`.
    """
    slots = min(limits.max_concurrent_migrations - in_flight, limits.max_actions_per_cycle)
    if slots <= 0:
        return [], VELOCITY
    budget = budgets(fleet, limits, demand.source)
    if min(budget) < 0:
        return [], FLEET_FRACTION
    rows = candidates(fleet, demand, limits, budget)
    if len(rows) == 0:
        return [], CAPACITY
    fit = _fits(fleet, rows, demand)
    whole = np.flatnonzero(fit >= 1.0 - EPS)
    single = [(int(rows[whole[0]]), 1.0)] if len(whole) else []
    if not demand.splittable or slots < 2:
        return (single, OK) if single else ([], CAPACITY)
    usable = fit >= demand.min_chunk - EPS
    parts = _chunks(fit[usable], demand.min_chunk)
    if parts is None or len(parts) > slots:
        if single:
            return single, OK
        partial = _partial(rows[usable], fit[usable], demand, slots)
        return (partial, OK) if partial else ([], VELOCITY if parts else CAPACITY)
    split = list(zip(rows[usable][: len(parts)].tolist(), parts, strict=True))
    if single and (
        (demand.spare is not None and len(split) - 1 > demand.spare)
        or _weighted_risk(fleet, split) > fleet.risk[single[0][0]] - SPLIT_GAIN
    ):
        return single, OK
    return split, OK


def _partial(rows: np.ndarray, fit: np.ndarray, demand: Demand, slots: int) -> list[tuple[int, float]]:
    """Chunks for as much of the task as fits, the rest (>= min_chunk) staying on its source as the last entry."""
    if demand.source < 0:
        return []
    pieces = slots if demand.spare is None else max(1, min(slots, demand.spare + 1))
    left, out = 1.0 - demand.min_chunk, []
    for row, room in zip(rows[:pieces].tolist(), fit[:pieces].tolist(), strict=True):
        take = min(room, 1.0, left)
        if take < demand.min_chunk - EPS:
            break
        out.append((int(row), float(take)))
        left -= take
    return [*out, (demand.source, 1.0 - sum(f for _, f in out))] if out else []


def _weighted_risk(fleet: Fleet, parts: list[tuple[int, float]]) -> float:
    return float(sum(fleet.risk[row] * fraction for row, fraction in parts))


def apply(fleet: Fleet, row: int, chosen: list[tuple[int, float]]) -> list[int]:
    """Carry out a selection for task row ``row``: split it if needed, move each piece, count the migrations.

    A piece whose target is the task's current instance stays there (a partial move). Returns the task rows
    of the pieces, in the order of ``chosen``.
    """
    source = int(fleet.task_instance[row])
    if source >= 0:
        fleet.touched[source] = True
    rows = fleet.split(row, [fraction for _, fraction in chosen])
    for piece, (target, _) in zip(rows, chosen, strict=True):
        if target == source:
            continue
        fleet.move(piece, target)
        fleet.incoming[target] += 1
        fleet.touched[target] = True
    return rows


def allocate_task(task: Task, fleet: Fleet, limits: VelocityLimits, *, in_flight: int = 0) -> list[tuple[str, float]]:
    """Where ``task`` should go: ``[(instance_id, fraction_of_task)]``, one entry unless split; [] if nowhere.

    When a splittable task fits nowhere whole or in full, as much as fits is moved and the last entry is its
    own instance with the fraction that stays there (a partial move, each piece >= ``min_chunk``).

    Args:
        task: the task; its ``instance_id`` (if any, and in ``fleet``) is the source, never a target, and
            only instances of lower risk than the source are considered.
        fleet: the fleet, with this cycle's capacity, reservations, per-target counts and touched instances.
        limits: the velocity limits; each target (or chunk) is one migration.
        in_flight: migrations already running or planned this cycle.
    """
    source = fleet.index.get(task.instance_id, -1) if task.instance_id is not None else -1
    demand = Demand(task.cpu, task.memory, task.splittable, task.min_chunk, source)
    chosen, _ = select(fleet, demand, limits, in_flight)
    return [(str(fleet.instance_ids[row]), fraction) for row, fraction in chosen]
