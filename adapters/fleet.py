"""The simulated fleet's state and its rules: placement, capacity, cordons, buffers, splits, scaling.

Scaling an instance by ``factor`` sets its capacity to that share of its nominal (first-seen) capacity, so
repeating a scale-back does not compound and ``factor=1.0`` restores it; the call returns the factor that was
in force before, which is what a revert restores. A shrink that would leave the instance's tasks over its new
capacity is refused: move them off first.

Capacity is :mod:`forewarn.capacity`'s, as the allocator counts it: new work and a buffer take the usable
capacity (nominal x (factor - reserved)), a shrink only needs the tasks to fit the scaled capacity.

Plain mechanics with no idempotency, faults or dry-run (those live in :mod:`adapters.simulated`). Every
operation checks everything before it changes anything, so a refused call leaves the fleet as it was.

Splitting: ``migrate(..., fractions=[f1, f2])`` cuts each task into chunks ``<id>#k`` of those shares of
its demand, placed on the target; the rest (1 - sum) stays on the source under the original id. A chunk
that comes back to the instance holding its original task rejoins it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from forewarn import capacity
from forewarn.capacity import EPS, fits
from forewarn.cloud import root_id
from forewarn.errors import AdapterError, NotFoundError
from forewarn.schemas import Instance, InstanceState, Task


@dataclass
class FleetState:
    """Instances, tasks and their configuration. A snapshot is a copy of everything but ``failed``.

    A cordon refuses new work, but a task may return to the instance it last left (undoing a move).
    """

    instances: dict[str, Instance]
    tasks: dict[str, Task]
    cordoned: set[str] = field(default_factory=set)
    reserved: dict[str, float] = field(default_factory=dict)
    failed: dict[str, datetime] = field(default_factory=dict)
    left: dict[str, str] = field(default_factory=dict)
    auto_count: int = 0
    moved: int = 0
    nominal: dict[str, tuple[float, float]] = field(default_factory=dict)
    factors: dict[str, float] = field(default_factory=dict)

    def copy(self) -> FleetState:
        """A copy to change independently: every collection new, the instances and tasks shared. Nothing here
        changes an instance or a task in place (a change puts a new object in its place, :meth:`_replace`),
        so a snapshot of a fleet of 100,000 instances costs its dictionaries, not 400,000 model copies."""
        return FleetState(
            instances=dict(self.instances),
            tasks=dict(self.tasks),
            **{f.name: copy.copy(getattr(self, f.name)) for f in fields(self) if f.name not in ("instances", "tasks")},
        )

    def _replace(self, task: Task, **update: Any) -> Task:
        """``task`` changed: a new object in its place (a snapshot may hold the old one)."""
        new = task.model_copy(update=update)
        self.tasks[task.task_id] = new
        return new

    def used(self, instance_id: str) -> tuple[float, float]:
        """CPU and memory taken by the tasks on an instance."""
        tasks = [t for t in self.tasks.values() if t.instance_id == instance_id]
        return sum(t.cpu for t in tasks), sum(t.memory for t in tasks)

    def sizes(self, instance_id: str) -> tuple[float, float, float]:
        """Nominal cpu and memory of an instance, and the factor it runs at (see :mod:`forewarn.capacity`)."""
        inst = self.instance(instance_id)
        if instance_id in self.nominal:
            cpu, memory = self.nominal[instance_id]
            return cpu, memory, self.factors.get(instance_id, 1.0)
        factor = inst.capacity_factor  # a cloud's fleet reports it; a simulated instance never scaled runs at 1
        return capacity.nominal(inst.cpu_capacity, factor), capacity.nominal(inst.memory_capacity, factor), factor

    def usable(self, instance_id: str, reserved: float | None = None) -> tuple[float, float]:
        """CPU and memory new work may fill on an instance, its buffer (or ``reserved``) kept free."""
        cpu, memory, factor = self.sizes(instance_id)
        keep = self.reserved.get(instance_id, 0.0) if reserved is None else reserved
        return float(capacity.usable(cpu, factor, keep)), float(capacity.usable(memory, factor, keep))

    def free(self, instance_id: str) -> tuple[float, float]:
        """CPU and memory that new work may still take on an instance, after its reserved buffer."""
        (cpu, memory), (used_cpu, used_memory) = self.usable(instance_id), self.used(instance_id)
        return cpu - used_cpu, memory - used_memory

    def instance(self, instance_id: str) -> Instance:
        try:
            return self.instances[instance_id]
        except KeyError:
            raise NotFoundError(f"no instance {instance_id!r}") from None

    def task(self, task_id: str) -> Task:
        try:
            return self.tasks[task_id]
        except KeyError:
            raise NotFoundError(f"no task {task_id!r}") from None

    def view(self, inst: Instance) -> Instance:
        state = InstanceState.RUNNING
        if inst.instance_id in self.failed:
            state = InstanceState.FAILED
        elif inst.instance_id in self.cordoned:
            state = InstanceState.CORDONED
        factor = 1.0
        if inst.instance_id in self.nominal:
            nominal_cpu = self.nominal[inst.instance_id][0]
            factor = inst.cpu_capacity / nominal_cpu if nominal_cpu > 0 else 1.0
        reserved = self.reserved.get(inst.instance_id, 0.0)
        return inst.model_copy(update={"state": state, "capacity_factor": factor, "reserved": reserved})

    def set_cordon(self, instance_id: str, cordoned: bool) -> None:
        self.instance(instance_id)
        (self.cordoned.add if cordoned else self.cordoned.discard)(instance_id)

    def migrate(self, task_ids: list[str], source: str, target: str, fractions: Sequence[float] | None) -> None:
        self.instance(source)
        self.instance(target)
        if target == source:
            raise AdapterError(f"migrate: source and target are both {source}")
        tasks = [self.task(t) for t in task_ids]
        returning = all(self.left.get(root_id(t.task_id)) == target for t in tasks)
        if target in self.failed or (target in self.cordoned and not returning):
            raise AdapterError(f"migrate: target {target} is {'failed' if target in self.failed else 'cordoned'}")
        for task in tasks:
            if task.instance_id != source:
                raise AdapterError(f"migrate: task {task.task_id} is on {task.instance_id}, not {source}")
        share = self._check_fractions(tasks, fractions)
        free_cpu, free_memory = self.free(target)
        need_cpu, need_memory = sum(t.cpu for t in tasks) * share, sum(t.memory for t in tasks) * share
        if not (fits(need_cpu, free_cpu) and fits(need_memory, free_memory)):
            raise AdapterError(f"migrate: target {target} is full (free cpu {free_cpu:.3g}, memory {free_memory:.3g})")
        for task in tasks:
            self.left[root_id(task.task_id)] = source
            self._move(self.tasks.get(task.task_id, task), fractions, target)
        self.moved += len(tasks)

    def _check_fractions(self, tasks: list[Task], fractions: Sequence[float] | None) -> float:
        if not fractions:
            return 1.0
        total = sum(fractions)
        if total > 1.0 + EPS or any(f <= 0 for f in fractions):
            raise AdapterError(f"migrate: fractions must be positive and add up to at most 1, got {list(fractions)}")
        for task in tasks:
            if not task.splittable:
                raise AdapterError(f"migrate: task {task.task_id} is not splittable")
            if min(fractions) < task.min_chunk - EPS:
                raise AdapterError(f"migrate: chunks of {task.task_id} must be at least {task.min_chunk} of it")
        return total

    def _move(self, task: Task, fractions: Sequence[float] | None, target: str) -> None:
        if not fractions or (len(fractions) == 1 and fractions[0] >= 1.0 - EPS):
            self._rejoin(self._replace(task, instance_id=target))
            return
        whole = (task.cpu, task.memory, task.data_size)
        for part in fractions:
            k = 1
            while f"{root_id(task.task_id)}#{k}" in self.tasks:
                k += 1
            cpu, memory, data = (value * part for value in whole)
            chunk = task.model_copy(
                update={
                    "task_id": f"{root_id(task.task_id)}#{k}",
                    "instance_id": target,
                    "cpu": cpu,
                    "memory": memory,
                    "data_size": data,
                }
            )
            self.tasks[chunk.task_id] = chunk
            left = (
                max(a - b, 0.0)
                for a, b in zip((task.cpu, task.memory, task.data_size), (cpu, memory, data), strict=True)
            )
            task = self._replace(task, **dict(zip(("cpu", "memory", "data_size"), left, strict=True)))
            self._rejoin(chunk)
        if sum(fractions) >= 1.0 - EPS:
            del self.tasks[task.task_id]

    def _rejoin(self, task: Task) -> None:
        """Merge chunks into their original task wherever both sit on the same instance."""
        root = self.tasks.get(root_id(task.task_id))
        if root is None or root.instance_id != task.instance_id:
            return
        prefix = f"{root.task_id}#"  # a chunk's id is <root>#k, and a root's id has no '#'
        for chunk in [t for task_id, t in self.tasks.items() if task_id.startswith(prefix)]:
            if chunk.instance_id == root.instance_id:
                root = self._replace(
                    root, cpu=root.cpu + chunk.cpu, memory=root.memory + chunk.memory,
                    data_size=root.data_size + chunk.data_size,
                )  # fmt: skip
                del self.tasks[chunk.task_id]

    def scale(self, name: str, factor: float | None, delta: int | None) -> float | None:
        """Resize an instance (returns the factor in force before) or a group (returns None)."""
        if (factor is None) == (delta is None):
            raise AdapterError("scale: give exactly one of factor and delta")
        if factor is not None and factor <= 0:
            raise AdapterError(f"scale: factor must be positive, got {factor}")
        if name in self.instances:
            if factor is None:
                raise AdapterError(f"scale: {name} is an instance; resize it with factor, not delta")
            return self._scale_instance(name, factor)
        members = [i for i in self.instances.values() if i.group == name]
        if not members:
            raise NotFoundError(f"no instance or group {name!r}")
        change = delta if delta is not None else round(len(members) * (factor or 1.0)) - len(members)
        if change >= 0:
            for _ in range(change):
                self.auto_count += 1
                new_id = f"i-auto-{self.auto_count:04d}"
                self.instances[new_id] = members[0].model_copy(update={"instance_id": new_id, "tags": {}})
            return None
        self._remove_empty(members, -change)
        return None

    def _scale_instance(self, name: str, factor: float) -> float:
        inst = self.instances[name]
        before = self.factors.get(name, 1.0)
        cpu, memory = self.nominal.setdefault(name, (inst.cpu_capacity, inst.memory_capacity))
        if factor < before:
            used_cpu, used_memory = self.used(name)
            if not (fits(used_cpu, cpu * factor) and fits(used_memory, memory * factor)):
                raise AdapterError(
                    f"scale: {name} at {factor:.0%} would hold cpu {cpu * factor:.3g} and memory "
                    f"{memory * factor:.3g}, but its tasks use cpu {used_cpu:.3g} and memory {used_memory:.3g}; "
                    "move work off it first"
                )
        self.instances[name] = inst.model_copy(
            update={"cpu_capacity": cpu * factor, "memory_capacity": memory * factor}
        )
        self.factors[name] = factor
        return before

    def _remove_empty(self, members: list[Instance], count: int) -> None:
        busy = {t.instance_id for t in self.tasks.values()}
        idle = [i.instance_id for i in members if i.instance_id not in busy]
        empty = sorted(idle, key=lambda i: (i.startswith("i-auto-"), i), reverse=True)  # newest auto ones first
        if len(empty) < count:
            raise AdapterError(f"scale: cannot remove {count} instances, only {len(empty)} are empty")
        for instance_id in empty[:count]:
            del self.instances[instance_id]
            self.cordoned.discard(instance_id)
            self.reserved.pop(instance_id, None)

    def reserve(self, instance_id: str, fraction: float) -> None:
        self.instance(instance_id)
        if not 0.0 <= fraction < 1.0:
            raise AdapterError(f"reserve: fraction must be in [0, 1), got {fraction}")
        (cpu, memory), (used_cpu, used_memory) = self.usable(instance_id, fraction), self.used(instance_id)
        if not (fits(used_cpu, cpu) and fits(used_memory, memory)):
            raise AdapterError(f"reserve: {instance_id} is too full to hold back {fraction:.0%}")
        self.reserved[instance_id] = fraction

    def restore(self, saved: FleetState) -> FleetState:
        """The fleet as ``saved`` left it, keeping today's failures; refused if that strands tasks."""
        stranded = sorted({str(t.instance_id) for t in saved.tasks.values() if t.instance_id in self.failed})
        if stranded:
            raise AdapterError(f"restore: it would put tasks back on failed {', '.join(stranded)}")
        state = saved.copy()
        state.failed, state.auto_count, state.moved = dict(self.failed), self.auto_count, self.moved
        return state
