"""The records and pure helpers of the closed-loop replay (:mod:`forewarn.replay`): its configuration, the
result of one run, the cost of an interruption, task arrivals and the capacity a policy holds back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from forewarn.capacity import nominal
from forewarn.dataset import Dataset
from forewarn.dataset_fleet import workload_tasks
from forewarn.schemas import Instance, InstanceState, Task


@dataclass
class ReplayConfig:
    """How the replay models time and cost.

    Attributes:
        cycle_minutes: time between two score-and-allocate cycles.
        checkpoint_minutes: tasks checkpoint this often; an interruption loses the work since the last one.
        restart_minutes: time to restart an interrupted task, counted as lost.
        migration_minutes: a migration takes this long; a task still moving when its source fails is
            interrupted all the same.
    """

    cycle_minutes: int = 10
    checkpoint_minutes: int = 60
    restart_minutes: int = 10
    migration_minutes: float = 5.0


@dataclass
class RunResult:
    """What one policy did over the replayed window."""

    name: str
    failures: int = 0
    failures_hitting_work: int = 0
    tasks_interrupted: int = 0
    interrupted_task_hours: float = 0.0
    predicted_in_time: int = 0
    lead_minutes: list[float] = field(default_factory=list)
    migrations: int = 0
    migrated_task_hours: float = 0.0
    unneeded_migrations: int = 0
    scale_actions: int = 0
    plans: int = 0
    releases: int = 0
    restores: int = 0
    capacity_overhead: float = 0.0
    home: str = ""
    timeline: list[tuple[datetime, float]] = field(default_factory=list)
    overhead_timeline: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float | int]:
        lead = pd.Series(self.lead_minutes, dtype=float)
        return {
            "failures": self.failures,
            "failures_predicted_in_time": self.predicted_in_time,
            "median_lead_minutes": float(lead.median()) if len(lead) else 0.0,
            "failures_hitting_work": self.failures_hitting_work,
            "tasks_interrupted": self.tasks_interrupted,
            "interrupted_task_hours": round(self.interrupted_task_hours, 3),
            "migrations": self.migrations,
            "migrated_task_hours": round(self.migrated_task_hours, 3),
            "unneeded_migrations": self.unneeded_migrations,
            "scale_actions": self.scale_actions,
            "plans": self.plans,
            "releases": self.releases,
            "restores": self.restores,
            "capacity_overhead": round(self.capacity_overhead, 4),
        }


def lost_hours(task: Task, at: datetime, config: ReplayConfig) -> float:
    """Work lost when ``task`` is interrupted at ``at``: since its last checkpoint, plus the restart."""
    started = task.start or at
    since_start = max((at - started).total_seconds() / 60.0, 0.0)
    return (since_start % config.checkpoint_minutes + config.restart_minutes) / 60.0


def arrivals(dataset: Dataset, start: pd.Timestamp) -> tuple[pd.DataFrame, dict[str, pd.Timestamp]]:
    """Tasks of workloads.csv that start after ``start`` (columns ``start``, ``task``), and every task's end.

    Without workloads.csv: no arrivals and no ends (each instance keeps its one unit task).
    """
    w = dataset.workloads
    if w is None:
        return pd.DataFrame({"start": pd.Series(dtype="datetime64[ns, UTC]"), "task": pd.Series(dtype=object)}), {}
    ends = {str(r.task_id): r.end for r in w.itertuples(index=False) if pd.notna(r.end)}
    later = w[w["start"] > start].sort_values("start", kind="stable")
    tasks = workload_tasks(later)
    return pd.DataFrame({"start": later["start"].reset_index(drop=True), "task": tasks}), ends


def overhead(instances: Sequence[Instance], base_cpu: float) -> float:
    """CPU held back by the policy as a share of the fleet's starting capacity.

    Counts cordoned instances that are up, reserved buffers, capacity removed by scale-backs and instances
    added by autoscaling. Failed instances are not overhead: they are down in every run alike.
    """
    held = 0.0
    for inst in instances:
        if inst.state == InstanceState.FAILED:
            continue
        if inst.state == InstanceState.CORDONED:
            held += inst.cpu_capacity
            continue
        size = nominal(inst.cpu_capacity, inst.capacity_factor)
        held += size * min(inst.reserved, inst.capacity_factor)  # the buffer, a share of nominal (forewarn.capacity)
        held += size - inst.cpu_capacity
        if inst.instance_id.startswith("i-auto-"):
            held += inst.cpu_capacity
    return held / base_cpu
