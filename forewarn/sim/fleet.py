"""The fleet's static side: instances with capacities, and the tasks placed on them.

Capacities are normalised: 4 vCPU is 1.0 CPU unit, so the mix is 1.0, 2.0 and 4.0. Task demands on an
instance are shares of a budget below its capacity, so they fit even if every task ran at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from forewarn.sim.config import SimConfig

CPU_UNITS = (1.0, 2.0, 4.0)
CPU_WEIGHTS = (0.45, 0.40, 0.15)
MEMORY_PER_CPU = (1.0, 2.0)  # memory units per CPU unit: general purpose, memory optimised
GROUPS = ("web", "batch", "data", "ml")
ZONES = ("zone-a", "zone-b", "zone-c")
KINDS = ("batch", "service", "etl", "ml-training")
KIND_WEIGHTS = (0.40, 0.25, 0.20, 0.15)
MEDIAN_MINUTES = {"batch": 60.0, "etl": 120.0, "ml-training": 480.0}  # service runs for the whole span
MEDIAN_GB = {"batch": 5.0, "service": 1.0, "etl": 50.0, "ml-training": 200.0}


def instance_ids(count: int) -> np.ndarray:
    """``i-0001`` style ids (wider when the fleet needs more digits)."""
    width = max(4, len(str(count)))
    return np.array([f"i-{k:0{width}d}" for k in range(1, count + 1)], dtype=object)


def instances(rng: np.random.Generator, config: SimConfig, ids: np.ndarray) -> pd.DataFrame:
    """One row per instance: capacities, group, zone and a boot time before the start."""
    n = ids.size
    cpu = np.array(CPU_UNITS)[rng.choice(len(CPU_UNITS), size=n, p=CPU_WEIGHTS)]
    memory = cpu * np.array(MEMORY_PER_CPU)[rng.choice(len(MEMORY_PER_CPU), size=n, p=(0.7, 0.3))]
    boot_minutes = np.round(rng.uniform(60.0, 90 * 1440.0, size=n))
    return pd.DataFrame(
        {
            "instance_id": ids,
            "cpu_capacity": cpu,
            "memory_capacity": memory,
            "group": np.array(GROUPS, dtype=object)[rng.integers(0, len(GROUPS), size=n)],
            "zone": np.array(ZONES, dtype=object)[rng.integers(0, len(ZONES), size=n)],
            "boot_time": pd.Timestamp(config.start) - pd.to_timedelta(boot_minutes, unit="min"),
        }
    )


def _shares(rng: np.random.Generator, owner: np.ndarray, n: int, budget: np.ndarray) -> np.ndarray:
    """Split each instance's budget among its tasks in random proportions."""
    weights = rng.gamma(1.0, 1.0, size=owner.size) + 0.05
    totals = np.bincount(owner, weights=weights, minlength=n)
    return budget[owner] * weights / totals[owner]


def workloads(rng: np.random.Generator, config: SimConfig, fleet: pd.DataFrame) -> pd.DataFrame:
    """Tasks: Poisson(tasks_per_instance) per instance, with kind, time span, demand and data size."""
    n = len(fleet)
    span = config.steps * config.step_minutes
    owner = np.repeat(np.arange(n), rng.poisson(config.tasks_per_instance, size=n))
    size = owner.size
    kinds = np.array(KINDS, dtype=object)[rng.choice(len(KINDS), size=size, p=KIND_WEIGHTS)]
    median = np.array([MEDIAN_MINUTES.get(k, span) for k in kinds], dtype=float)
    service = kinds == "service"
    expected = np.where(service, span, np.round(median * rng.lognormal(0.0, 0.6, size=size)))
    expected = np.clip(expected, config.step_minutes, span)
    actual = np.where(service, span, np.clip(np.round(expected * rng.lognormal(0.0, 0.2, size=size)), 1, span))
    begin = np.where(service, 0.0, np.round(rng.random(size) * (span - actual)))
    cpu_budget = fleet["cpu_capacity"].to_numpy(float) * rng.uniform(0.4, 0.9, size=n)
    memory_budget = fleet["memory_capacity"].to_numpy(float) * rng.uniform(0.4, 0.9, size=n)
    gigabytes = np.array([MEDIAN_GB[k] for k in kinds]) * rng.lognormal(0.0, 0.8, size=size)
    start = pd.Timestamp(config.start)
    width = max(6, len(str(size)))
    return pd.DataFrame(
        {
            "task_id": [f"t-{k:0{width}d}" for k in range(1, size + 1)],
            "instance_id": fleet["instance_id"].to_numpy()[owner],
            "start": start + pd.to_timedelta(begin, unit="min"),
            "end": start + pd.to_timedelta(begin + actual, unit="min"),
            "cpu": np.round(_shares(rng, owner, n, cpu_budget), 4),
            "memory": np.round(_shares(rng, owner, n, memory_budget), 4),
            "kind": kinds,
            "data_size": np.round(gigabytes, 3),
            "expected_duration": expected,
        }
    )


def window_end(config: SimConfig) -> datetime:
    """The end of the simulated window (exclusive)."""
    return config.start + timedelta(minutes=config.steps * config.step_minutes)
