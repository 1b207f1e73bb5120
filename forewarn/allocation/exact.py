"""The allocation problem solved exactly (``scipy.optimize.milp``) on small fleets, to measure the heuristic.

Variables, for task t and instance i: ``x[t, i]`` the fraction of t on i (continuous, 0..1) and
``y[t, i]`` whether any of t is on i (binary); ``u[t]`` the unplaced fraction of a task that has no
instance yet (costs its full value). Constraints: each task wholly assigned; ``x <= y`` and
``x >= m_t * y`` (m_t = min_chunk for splittable tasks, 1 otherwise, so those are all-or-nothing);
cpu and memory capacity (an instance already over capacity may keep its load, as the heuristic does);
moves to another instance only onto running, scored instances; at most ``min(max_concurrent_migrations,
max_actions_per_cycle)`` moves in all and ``max_migrations_per_target`` per target. Objective: the same as
the heuristic's, risk x value on each instance + ``migration_cost`` x value moved.
``max_fleet_fraction`` is not modelled: compare with it at 1.0.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

from forewarn.allocation.model import Fleet
from forewarn.schemas import Instance, Task, VelocityLimits


class HasObjective(Protocol):
    objective: float


@dataclass
class ExactResult:
    """The optimum: its objective, solver status and where each task's fractions went."""

    objective: float
    status: str
    fractions: dict[str, dict[str, float]] = field(default_factory=dict)
    migrations: int = 0


def _rows(entries: list[tuple[int, int, float]], n_rows: int, n_vars: int) -> coo_array:
    if not entries:
        return coo_array((n_rows, n_vars))
    r, c, v = zip(*entries, strict=True)
    return coo_array((np.asarray(v, dtype=float), (np.asarray(r), np.asarray(c))), shape=(n_rows, n_vars))


def _constraints(fleet: Fleet, limits: VelocityLimits, moving: np.ndarray) -> list[LinearConstraint]:
    n, t = fleet.n_instances, fleet.n_tasks
    size = 2 * t * n + t
    x = np.arange(t * n).reshape(t, n)
    y = x + t * n
    u = 2 * t * n + np.arange(t)
    assign = [(k, int(x[k, i]), 1.0) for k in range(t) for i in range(n)] + [(k, int(u[k]), 1.0) for k in range(t)]
    link = [(e, int(x.flat[e]), 1.0) for e in range(t * n)] + [(e, int(y.flat[e]), -1.0) for e in range(t * n)]
    chunk = np.where(fleet.task_splittable, fleet.task_min_chunk, 1.0)
    least = [(e, int(x.flat[e]), 1.0) for e in range(t * n)]
    least += [(e, int(y.flat[e]), -float(chunk[e // n])) for e in range(t * n)]
    cpu = [(i, int(x[k, i]), float(fleet.task_cpu[k])) for k in range(t) for i in range(n)]
    memory = [(i, int(x[k, i]), float(fleet.task_memory[k])) for k in range(t) for i in range(n)]
    moves = [(0, int(y[k, i]), 1.0) for k, i in zip(*np.nonzero(moving), strict=True)]
    per_target = [(int(i), int(y[k, i]), 1.0) for k, i in zip(*np.nonzero(moving), strict=True)]
    cap_cpu = np.maximum(fleet.usable_cpu(), fleet.cpu_used) + 1e-9
    cap_memory = np.maximum(fleet.usable_memory(), fleet.memory_used) + 1e-9
    budget = min(limits.max_concurrent_migrations, limits.max_actions_per_cycle)
    return [
        LinearConstraint(_rows(assign, t, size), 1.0, 1.0),
        LinearConstraint(_rows(link, t * n, size), -np.inf, 0.0),
        LinearConstraint(_rows(least, t * n, size), 0.0, np.inf),
        LinearConstraint(_rows(cpu, n, size), -np.inf, cap_cpu),
        LinearConstraint(_rows(memory, n, size), -np.inf, cap_memory),
        LinearConstraint(_rows(moves, 1, size), -np.inf, budget),
        LinearConstraint(_rows(per_target, n, size), -np.inf, limits.max_migrations_per_target),
    ]


def solve_exact(
    instances: Sequence[Instance],
    tasks: Sequence[Task],
    risk: Mapping[str, float],
    limits: VelocityLimits,
    *,
    migration_cost: float = 0.05,
    closed: Collection[str] = (),
    time_limit: float = 20.0,
) -> ExactResult:
    """The least-cost assignment of ``tasks`` to ``instances`` under capacity and velocity limits.

    Args:
        closed: instances that may keep their work but receive none (those a plan cordons or scales back),
            so the optimum solves the same problem as the planner.
    """
    fleet = Fleet.from_records(instances, tasks, risk)
    for name in closed:
        fleet.accepting[fleet.index[name]] = False
    n, t = fleet.n_instances, fleet.n_tasks
    if t == 0:
        return ExactResult(objective=0.0, status="optimal")
    current = fleet.task_instance
    moving = np.arange(n)[None, :] != current[:, None]
    risk_of = np.nan_to_num(fleet.risk, nan=0.0)
    value = fleet.task_value[:, None]
    cost_x = value * risk_of[None, :] + migration_cost * value * (moving & (current[:, None] >= 0))
    c = np.concatenate([cost_x.ravel(), np.zeros(t * n), fleet.task_value])
    forbidden = moving & ~fleet.accepting[None, :]
    upper = np.concatenate([np.where(forbidden, 0.0, 1.0).ravel()] * 2 + [(current < 0).astype(float)])
    integrality = np.concatenate([np.zeros(t * n), np.ones(t * n), np.zeros(t)])
    result = milp(
        c,
        constraints=_constraints(fleet, limits, moving),
        integrality=integrality,
        bounds=Bounds(np.zeros_like(upper), upper),
        options={"time_limit": time_limit},
    )
    if result.x is None:
        return ExactResult(objective=float("nan"), status=str(result.message))
    x = result.x[: t * n].reshape(t, n)
    fractions = {
        str(fleet.task_ids[k]): {str(fleet.instance_ids[i]): float(x[k, i]) for i in np.flatnonzero(x[k] > 1e-7)}
        for k in range(t)
    }
    y = result.x[t * n : 2 * t * n].reshape(t, n)
    status = "optimal" if result.status == 0 else str(result.message)
    return ExactResult(float(result.fun), status, fractions, round(float((y * moving).sum())))


def optimality_gap(heuristic: float | HasObjective, exact: float | HasObjective) -> float:
    """(heuristic - exact) / exact: 0 when the heuristic is optimal; tiny negatives from rounding read as 0."""
    h = heuristic if isinstance(heuristic, float | int) else heuristic.objective
    e = exact if isinstance(exact, float | int) else exact.objective
    gap = (float(h) - float(e)) / max(abs(float(e)), 1e-9)
    return 0.0 if -1e-6 < gap < 0.0 or abs(float(h) - float(e)) < 1e-9 else gap
