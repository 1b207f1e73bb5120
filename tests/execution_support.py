"""Shared builders for the execution tests: a small fleet, a plan touching every kind of action, an applier."""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

from adapters.fleet import root_id
from adapters.simulated import SimulatedAdapter
from forewarn.execution.applier import Applier, Hook
from forewarn.execution.journal import Journal
from forewarn.execution.resilience import CircuitBreaker, default_retry
from forewarn.schemas import Action, ActionType, Instance, Plan, PlanState, PolicyMode, Task
from forewarn.store.repository import Repository


class Crash(BaseException):
    """A simulated kill of the process: nothing in Forewarn catches it."""


def fleet(*, dry_run: bool = False) -> SimulatedAdapter:
    instances = [Instance(instance_id=f"i{n}", cpu_capacity=1.0, memory_capacity=1.0) for n in range(1, 5)]
    tasks = [
        Task(task_id="t1", instance_id="i1", cpu=0.3, memory=0.3),
        Task(task_id="t2", instance_id="i1", cpu=0.4, memory=0.2, splittable=True, min_chunk=0.25),
        Task(task_id="t3", instance_id="i2", cpu=0.5, memory=0.5),
    ]
    return SimulatedAdapter(instances, tasks, dry_run=dry_run)


def full_plan(state: PlanState = PlanState.APPROVED) -> Plan:
    """Cordon i1, move t1 to i3, half of t2 to i4, reserve a buffer on i2, scale the group by one."""
    return Plan(
        policy="test",
        mode=PolicyMode.AUTO,
        state=state,
        actions=[
            Action(action_id="a-cordon", type=ActionType.CORDON, instance_id="i1"),
            Action(action_id="a-move", type=ActionType.MIGRATE, instance_id="i1", target_instance_id="i3",
                   task_ids=["t1"]),
            Action(action_id="a-split", type=ActionType.MIGRATE, instance_id="i1", target_instance_id="i4",
                   task_ids=["t2"], params={"fractions": [0.5]}),
            Action(action_id="a-reserve", type=ActionType.RESERVE_BUFFER, instance_id="i2",
                   params={"fraction": 0.2}),
            Action(action_id="a-scale", type=ActionType.AUTOSCALE, instance_id="i2", params={"delta": 1}),
        ],
    )


_TEMPLATE: dict[str, Path] = {}


def journal(tmp_path: Path) -> Journal:
    """A journal on a fresh SQLite file, copied from one migrated template (migrating takes a while)."""
    if "db" not in _TEMPLATE:
        template = Path(tempfile.mkdtemp(prefix="forewarn-template-")) / "template.db"
        repo = Repository(f"sqlite:///{template}")
        repo.create_all()
        repo.dispose()
        _TEMPLATE["db"] = template
    shutil.copy(_TEMPLATE["db"], tmp_path / "forewarn.db")
    return Journal(Repository(f"sqlite:///{tmp_path / 'forewarn.db'}"))


def applier(adapter: SimulatedAdapter, journal: Journal, *, hook: Hook | None = None, **kwargs: object) -> Applier:
    kwargs.setdefault("retry", default_retry(attempts=3, sleep=lambda _: None))
    return Applier(adapter, journal, dry_run=False, breaker=CircuitBreaker(threshold=50), hook=hook,
                   **kwargs)  # type: ignore[arg-type]


def demand_by_root(adapter: SimulatedAdapter) -> dict[str, tuple[float, float]]:
    """Total cpu and memory of each original task, over all its chunks: must never change."""
    total: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for task in adapter.state.tasks.values():
        total[root_id(task.task_id)][0] += task.cpu
        total[root_id(task.task_id)][1] += task.memory
    return {k: (round(v[0], 9), round(v[1], 9)) for k, v in total.items()}


def layout(adapter: SimulatedAdapter) -> tuple[object, ...]:
    """Everything an operator would compare: placement, demand, cordons, buffers, instances."""
    state = adapter.state
    tasks = sorted((t.task_id, t.instance_id, round(t.cpu, 9), round(t.memory, 9)) for t in state.tasks.values())
    capacity = sorted((i.instance_id, i.cpu_capacity, i.memory_capacity) for i in state.instances.values())
    reserved = tuple(sorted((k, v) for k, v in state.reserved.items() if v > 0))
    return tuple(tasks), tuple(sorted(state.cordoned)), reserved, tuple(capacity)
