"""The fleet as arrays: one row per instance and one per task, so a cycle over 100k tasks stays vectorised.

A :class:`Fleet` also carries the state of one planning cycle: usable-capacity factors (scale-back),
reserved buffers, which instances accept new work, how many migrations target each instance, which
instances the plan has touched and which earlier cycles touched within the sliding window. Tasks are never
dropped: a split replaces a row by its chunks (the first chunk reuses the row) and a failed instance leaves
its tasks unplaced (instance index -1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import numpy as np

from forewarn.capacity import nominal, usable
from forewarn.errors import InputError
from forewarn.schemas import Instance, InstanceState, Task

__all__ = ["Fleet"]


def _index_of(ids: Sequence[str], what: str) -> dict[str, int]:
    index: dict[str, int] = {}
    for row, key in enumerate(ids):
        if key in index:
            raise InputError(f"{what} '{key}' appears twice (rows {index[key] + 1} and {row + 1})", field=what)
        index[key] = row
    return index


def _columns(records: Sequence[Instance] | Sequence[Task], names: tuple[str, ...]) -> list[list[Any]]:
    """The attributes ``names`` of every record, one list per name, in one pass."""
    rows = list(map(attrgetter(*names), records))
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in names]


def _risk_array(index: Mapping[str, int], risk: Mapping[str, float]) -> np.ndarray:
    """Scores by instance row (NaN where none); the first score of a known instance outside [0, 1] is refused."""
    scores = np.full(len(index), np.nan)
    known = [(key, value) for key, value in risk.items() if key in index]
    if not known:
        return scores
    keys, values = zip(*known, strict=True)
    array = np.array(values, dtype=float)
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(array) & (array >= 0.0) & (array <= 1.0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"risk of '{keys[row]}' is {values[row]}; a probability lies in [0, 1]", field="risk")
    scores[[index[key] for key in keys]] = array
    return scores


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
    windowed: np.ndarray = field(init=False)
    window_cap: int | None = field(init=False, default=None)
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
        self.touched = np.zeros(n, dtype=bool)  # by this plan (see forewarn.policy.limits for "touched")
        self.windowed = np.zeros(n, dtype=bool)  # by actions that succeeded within the sliding window
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
        inst_ids, cpu_cap, mem_cap, states, groups, factors, reserved = _columns(
            instances,
            ("instance_id", "cpu_capacity", "memory_capacity", "state", "group", "capacity_factor", "reserved"),
        )
        index = dict(zip(inst_ids, range(len(inst_ids)), strict=True))
        if len(index) != len(inst_ids):
            _index_of(inst_ids, "instance_id")
        task_ids, on, cpu, memory, value, splittable, min_chunk = _columns(
            tasks, ("task_id", "instance_id", "cpu", "memory", "value", "splittable", "min_chunk")
        )
        if len(set(task_ids)) != len(task_ids):
            _index_of(task_ids, "task_id")
        scores = _risk_array(index, risk)
        where = np.array([-1 if key is None else index.get(key, -2) for key in on], dtype=np.int64)
        if (where == -2).any():
            row = int(np.flatnonzero(where == -2)[0])
            raise InputError(f"task '{task_ids[row]}' is on unknown instance '{on[row]}'", field="instance_id")
        factor = np.array(factors, dtype=float)
        fleet = cls(
            instance_ids=np.array(inst_ids, dtype=object),
            cpu_capacity=nominal(np.array(cpu_cap, dtype=float), factor),  # the fleet applies the factor itself
            memory_capacity=nominal(np.array(mem_cap, dtype=float), factor),
            risk=scores,
            state=np.array([state.value for state in states], dtype=object),
            group=np.array(groups, dtype=object),
            task_ids=np.array(task_ids, dtype=object),
            task_instance=where,
            task_cpu=np.array(cpu, dtype=float),
            task_memory=np.array(memory, dtype=float),
            task_value=np.array(value, dtype=float),
            task_splittable=np.array(splittable, dtype=bool),
            task_min_chunk=np.array(min_chunk, dtype=float),
            records=list(tasks),
        )
        fleet.capacity_factor = factor  # as the cloud reports them: a scale-back or buffer already in force
        fleet.reserved = np.array(reserved, dtype=float)
        return fleet

    @property
    def n_instances(self) -> int:
        return len(self.instance_ids)

    @property
    def n_tasks(self) -> int:
        return len(self.task_ids)

    def usable_cpu(self) -> np.ndarray:
        """CPU each instance may carry this cycle (:func:`forewarn.capacity.usable`; capacities are nominal)."""
        return usable(self.cpu_capacity, self.capacity_factor, self.reserved)

    def usable_memory(self) -> np.ndarray:
        return usable(self.memory_capacity, self.capacity_factor, self.reserved)

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

    def undo_move(self, task: int, source: int) -> None:
        """Put task row ``task`` back on ``source`` after :meth:`move` and its count by ``apply`` (a refused move)."""
        target = int(self.task_instance[task])
        self.move(task, source)
        self.moved_value -= 2 * float(self.task_value[task])
        self.incoming[target] -= 1

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
