"""The fleet as arrays: one row per instance and one per task, so a cycle over 100k tasks stays vectorised.

A :class:`Fleet` also carries the state of one planning cycle: usable-capacity factors (scale-back),
reserved buffers, which instances accept new work, how many migrations target each instance and which
instances the plan has touched. Tasks are never dropped: a split replaces a row by its chunks (the first
chunk reuses the row) and a failed instance leaves its tasks unplaced (instance index -1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from forewarn.errors import InputError
from forewarn.schemas import Instance, InstanceState, Task

EPS = 1e-9
"""Tolerance of every capacity comparison."""


def _index_of(ids: Sequence[str], what: str) -> dict[str, int]:
    index: dict[str, int] = {}
    for row, key in enumerate(ids):
        if key in index:
            raise InputError(f"{what} '{key}' appears twice (rows {index[key] + 1} and {row + 1})", field=what)
        index[key] = row
    return index


@dataclass
class Fleet:
    """Vectorised view of instances and tasks. Build it with :meth:`from_records`; read back :meth:`to_tasks`."""

    instance_ids: np.ndarray
    cpu_capacity: np.ndarray
    memory_capacity: np.ndarray
    risk: np.ndarray
    state: np.ndarray
    task_ids: np.ndarray
    task_instance: np.ndarray
    task_cpu: np.ndarray
    task_memory: np.ndarray
    task_value: np.ndarray
    task_splittable: np.ndarray
    task_min_chunk: np.ndarray
    group: np.ndarray | None = None
    records: list[Task] | None = None
    task_origin: np.ndarray = field(init=False)
    task_fraction: np.ndarray = field(init=False)
    capacity_factor: np.ndarray = field(init=False)
    reserved: np.ndarray = field(init=False)
    accepting: np.ndarray = field(init=False)
    incoming: np.ndarray = field(init=False)
    touched: np.ndarray = field(init=False)
    cpu_used: np.ndarray = field(init=False)
    memory_used: np.ndarray = field(init=False)
    moved_value: float = field(init=False, default=0.0)
    index: dict[str, int] = field(init=False)
    risk_order: np.ndarray = field(init=False)
    task_pinned: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n, t = len(self.instance_ids), len(self.task_ids)
        self.instance_ids = np.asarray(self.instance_ids, dtype=object)
        self.task_ids = np.asarray(self.task_ids, dtype=object)
        self.task_instance = np.asarray(self.task_instance, dtype=np.int64).copy()
        if self.group is None:
            self.group = np.full(n, "default", dtype=object)
        self.task_origin = np.arange(t, dtype=np.int64)
        self.task_fraction = np.ones(t)
        self.task_pinned = np.zeros(t, dtype=bool)  # opted out: never moved
        self.capacity_factor = np.ones(n)
        self.reserved = np.zeros(n)
        self.accepting = np.asarray(self.state == InstanceState.RUNNING.value, dtype=bool) & np.isfinite(self.risk)
        self.incoming = np.zeros(n, dtype=np.int64)
        self.touched = np.zeros(n, dtype=bool)
        placed = self.task_instance >= 0
        where = self.task_instance[placed]
        self.cpu_used = np.bincount(where, weights=self.task_cpu[placed], minlength=n).astype(float)
        self.memory_used = np.bincount(where, weights=self.task_memory[placed], minlength=n).astype(float)
        self.index = {key: row for row, key in enumerate(self.instance_ids.tolist())}
        self.risk_order = np.argsort(np.where(np.isfinite(self.risk), self.risk, np.inf), kind="stable")

    @classmethod
    def from_records(cls, instances: Sequence[Instance], tasks: Sequence[Task], risk: Mapping[str, float]) -> Fleet:
        """Arrays from pydantic records. An instance without a score never receives work (risk NaN).

        Raises:
            InputError: duplicate ids, a task on an unknown instance, or a score outside [0, 1].
        """
        index = _index_of([inst.instance_id for inst in instances], "instance_id")
        _index_of([task.task_id for task in tasks], "task_id")
        scores = np.full(len(instances), np.nan)
        for key, value in risk.items():
            if key in index:
                if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                    raise InputError(f"risk of '{key}' is {value}; a probability lies in [0, 1]", field="risk")
                scores[index[key]] = value
        where = np.empty(len(tasks), dtype=np.int64)
        for row, task in enumerate(tasks):
            if task.instance_id is None:
                where[row] = -1
            elif task.instance_id not in index:
                raise InputError(
                    f"task '{task.task_id}' is on unknown instance '{task.instance_id}'", field="instance_id"
                )
            else:
                where[row] = index[task.instance_id]
        return cls(
            instance_ids=np.array([inst.instance_id for inst in instances], dtype=object),
            cpu_capacity=np.array([inst.cpu_capacity for inst in instances], dtype=float),
            memory_capacity=np.array([inst.memory_capacity for inst in instances], dtype=float),
            risk=scores,
            state=np.array([inst.state.value for inst in instances], dtype=object),
            group=np.array([inst.group for inst in instances], dtype=object),
            task_ids=np.array([task.task_id for task in tasks], dtype=object),
            task_instance=where,
            task_cpu=np.array([task.cpu for task in tasks], dtype=float),
            task_memory=np.array([task.memory for task in tasks], dtype=float),
            task_value=np.array([task.value for task in tasks], dtype=float),
            task_splittable=np.array([task.splittable for task in tasks], dtype=bool),
            task_min_chunk=np.array([task.min_chunk for task in tasks], dtype=float),
            records=list(tasks),
        )

    @property
    def n_instances(self) -> int:
        return len(self.instance_ids)

    @property
    def n_tasks(self) -> int:
        return len(self.task_ids)

    def usable_cpu(self) -> np.ndarray:
        """CPU each instance may carry this cycle: capacity x (scale-back factor - reserved buffer)."""
        return self.cpu_capacity * np.clip(self.capacity_factor - self.reserved, 0.0, None)

    def usable_memory(self) -> np.ndarray:
        return self.memory_capacity * np.clip(self.capacity_factor - self.reserved, 0.0, None)

    def free_cpu(self) -> np.ndarray:
        return self.usable_cpu() - self.cpu_used

    def free_memory(self) -> np.ndarray:
        return self.usable_memory() - self.memory_used

    def tasks_on(self, rows: np.ndarray | Sequence[int], *, movable: bool = False) -> np.ndarray:
        """Task rows placed on any of the instance ``rows`` (one pass over the task array).

        With ``movable``, only those that did not opt out (see :attr:`task_pinned`).
        """
        on = np.isin(self.task_instance, np.asarray(rows, dtype=np.int64))
        return np.flatnonzero(on & ~self.task_pinned if movable else on)

    def move(self, task: int, target: int) -> None:
        """Put task row ``task`` on instance row ``target`` (-1 unplaces it); counts a migration if it had one."""
        source = int(self.task_instance[task])
        cpu, memory = self.task_cpu[task], self.task_memory[task]
        if source >= 0:
            self.cpu_used[source] -= cpu
            self.memory_used[source] -= memory
            if target >= 0 and target != source:
                self.moved_value += float(self.task_value[task])
        if target >= 0:
            self.cpu_used[target] += cpu
            self.memory_used[target] += memory
        self.task_instance[task] = target

    def split(self, task: int, fractions: Sequence[float]) -> list[int]:
        """Cut task row ``task`` into chunks of ``fractions`` (summing to 1) on the same instance.

        Chunk ids are ``<task>#1``, ``<task>#2``...; the first chunk reuses the row. Each chunk keeps the
        absolute minimum chunk of its parent, so a chunk is split again only into pieces of that size or more.
        """
        if len(fractions) < 2:
            return [task]
        if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) <= 0:
            raise ValueError(f"split fractions must be positive and sum to 1, got {list(fractions)}")
        base, k = str(self.task_ids[task]), len(fractions)
        part = np.asarray(fractions, dtype=float)
        rows = [task, *range(self.n_tasks, self.n_tasks + k - 1)]
        extra = np.full(k - 1, task)
        for name in (
            "task_instance",
            "task_cpu",
            "task_memory",
            "task_value",
            "task_splittable",
            "task_min_chunk",
            "task_origin",
            "task_fraction",
            "task_pinned",
            "task_ids",
        ):
            column = getattr(self, name)
            setattr(self, name, np.concatenate([column, column[extra]]))
        idx = np.asarray(rows)
        self.task_ids[idx] = [f"{base}#{j + 1}" for j in range(k)]
        for name in ("task_cpu", "task_memory", "task_value", "task_fraction"):
            getattr(self, name)[idx] *= part
        self.task_min_chunk[idx] = np.minimum(1.0, self.task_min_chunk[idx] / part)
        return rows

    def fail(self, instance: int) -> np.ndarray:
        """Mark instance row ``instance`` failed; its tasks become unplaced (never lost). Returns their rows."""
        self.state[instance] = InstanceState.FAILED.value
        self.accepting[instance] = False
        orphans = np.flatnonzero(self.task_instance == instance)
        self.task_instance[orphans] = -1
        self.cpu_used[instance] = 0.0
        self.memory_used[instance] = 0.0
        return orphans

    def objective(self, migration_cost: float) -> float:
        """Expected interruption cost (risk x value on each instance; unplaced work counts as lost) + migration cost."""
        placed = self.task_instance >= 0
        risk = np.nan_to_num(self.risk[self.task_instance[placed]], nan=0.0)
        lost = float(self.task_value[~placed].sum())
        return float(risk @ self.task_value[placed]) + lost + migration_cost * self.moved_value

    def to_tasks(self) -> list[Task]:
        """The tasks as records, with their instance after the plan; chunks get their own ids and demand."""
        ids = self.instance_ids
        out: list[Task] = []
        for row in range(self.n_tasks):
            where = int(self.task_instance[row])
            task_id, fraction = str(self.task_ids[row]), float(self.task_fraction[row])
            instance_id = str(ids[where]) if where >= 0 else None
            cpu, memory, value = float(self.task_cpu[row]), float(self.task_memory[row]), float(self.task_value[row])
            min_chunk = float(self.task_min_chunk[row])
            if self.records is None:
                out.append(
                    Task(
                        task_id=task_id,
                        instance_id=instance_id,
                        cpu=cpu,
                        memory=memory,
                        value=value,
                        splittable=bool(self.task_splittable[row]),
                        min_chunk=min_chunk,
                    )
                )
                continue
            record = self.records[int(self.task_origin[row])]
            update = {
                "task_id": task_id,
                "instance_id": instance_id,
                "cpu": cpu,
                "memory": memory,
                "value": value,
                "min_chunk": min_chunk,
                "data_size": record.data_size * fraction,
            }
            out.append(record.model_copy(update=update))
        return out
