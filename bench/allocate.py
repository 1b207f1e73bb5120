"""Benchmark: one allocation cycle on a synthetic fleet, beside its floor.

The floor is what any allocator must do at least: sort the risk scores and make one vectorised pass over
the task arrays (demand per instance with ``np.bincount``). ``seconds`` is :func:`plan_fleet` on a fleet
already in arrays (building it from pydantic records is the caller's conversion, not allocation).
The fleet: capacities of 2-16 cpu, tasks of 0.1-2 cpu filling it to about 60%, risk from Beta(0.5, 20);
the riskiest 1% of instances get MIGRATE, the next 2% SCALE_BACK, the healthiest 5% AUTOSCALE; velocity
limits of 500 actions, 200 concurrent migrations, 3 per target, 10% of the fleet.

Run: ``python bench/allocate.py`` prints one JSON line per size (1000, 10000, 100000 instances).
"""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from typing import Any

import numpy as np

from forewarn.allocation.model import Fleet
from forewarn.allocation.planner import plan_fleet
from forewarn.schemas import ActionType, Band, Decision, InstanceState, VelocityLimits

LIMITS = VelocityLimits(
    max_actions_per_cycle=500, max_concurrent_migrations=200, max_migrations_per_target=3, max_fleet_fraction=0.1
)


def synthetic(instances: int, tasks: int, seed: int = 0) -> tuple[Fleet, list[Decision]]:
    """A random fleet in arrays and the decisions of one cycle."""
    rng = np.random.default_rng(seed)
    cpu = rng.choice([2.0, 4.0, 8.0, 16.0], size=instances)
    demand = rng.uniform(0.1, 2.0, size=tasks)
    demand *= 0.6 * cpu.sum() / demand.sum()
    where = np.minimum(np.searchsorted(np.cumsum(cpu), np.cumsum(demand) - demand / 2), instances - 1)
    rng.shuffle(where)  # spread, some instances above 60%, some below
    risk = rng.beta(0.5, 20.0, size=instances)
    fleet = Fleet(
        instance_ids=np.array([f"i-{k:06d}" for k in range(instances)], dtype=object),
        cpu_capacity=cpu * 1.5,
        memory_capacity=cpu * 4.0 * 1.5,
        risk=risk,
        state=np.full(instances, InstanceState.RUNNING.value, dtype=object),
        task_ids=np.array([f"t-{j:07d}" for j in range(tasks)], dtype=object),
        task_instance=where,
        task_cpu=demand,
        task_memory=demand * 2.0,
        task_value=rng.uniform(0.5, 5.0, size=tasks),
        task_splittable=rng.random(tasks) < 0.3,
        task_min_chunk=np.full(tasks, 0.25),
    )
    order = np.argsort(-risk)
    high, moderate = order[: max(1, instances // 100)], order[instances // 100 : instances // 100 * 3]
    low = order[-max(1, instances // 20) :]
    decisions = [
        Decision(
            instance_id=fleet.instance_ids[k],
            band=Band.HIGH,
            action=ActionType.MIGRATE,
            rule="bench-high",
            probability=float(risk[k]),
        )
        for k in high
    ]
    decisions += [
        Decision(
            instance_id=fleet.instance_ids[k],
            band=Band.MODERATE,
            action=ActionType.SCALE_BACK,
            rule="bench-moderate",
            probability=float(risk[k]),
            params={"factor": 0.7},
        )
        for k in moderate
    ]
    decisions += [
        Decision(
            instance_id=fleet.instance_ids[k],
            band=Band.LOW,
            action=ActionType.AUTOSCALE,
            rule="bench-low",
            probability=float(risk[k]),
        )
        for k in low
    ]
    return fleet, decisions


def _best(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run(instances: int, tasks: int, seed: int = 0) -> dict[str, float]:
    """Seconds for one cycle (best of a few), the floor, their ratio and the peak memory of the cycle."""
    repeat = 3 if instances <= 10_000 else 2
    seconds = _timed_cycle(instances, tasks, seed, repeat)
    fleet, _ = synthetic(instances, tasks, seed)

    def floor() -> None:
        np.argsort(fleet.risk)
        placed = fleet.task_instance >= 0
        np.bincount(fleet.task_instance[placed], weights=fleet.task_cpu[placed], minlength=instances)

    floor_seconds = _best(floor, 5)
    fleet, decisions = synthetic(instances, tasks, seed)
    tracemalloc.start()
    plan_fleet(decisions, fleet, LIMITS)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "instances": instances,
        "tasks": tasks,
        "seconds": _sig(seconds),
        "floor_seconds": _sig(floor_seconds),
        "ratio": _sig(seconds / max(floor_seconds, 1e-9)),
        "peak_mb": round(peak / 2**20, 1),
    }


def _sig(value: float) -> float:
    """Three significant figures."""
    return float(f"{value:.3g}")


def _timed_cycle(instances: int, tasks: int, seed: int, repeat: int) -> float:
    """Best of ``repeat`` cycles, each on a fresh fleet (a plan changes the fleet it runs on)."""
    times = []
    for _ in range(repeat):
        fleet, decisions = synthetic(instances, tasks, seed)
        start = time.perf_counter()
        plan_fleet(decisions, fleet, LIMITS)
        times.append(time.perf_counter() - start)
    return min(times)


if __name__ == "__main__":
    os.environ.setdefault("DO_NOT_TRACK", "1")
    for size in (1_000, 10_000, 100_000):
        print(json.dumps(run(size, size * 10)), flush=True)
