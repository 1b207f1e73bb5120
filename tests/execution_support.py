"""Shared builders for the execution tests: a small fleet, a plan touching every kind of action, an applier,
the journal's databases (SQLite always, the machine's PostgreSQL 15 when it can be started), and a simulated
cloud that outlives a killed process.

Test modules use the fixtures by importing them: ``from tests.execution_support import database, postgres_db``.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from adapters.simulated import SimulatedAdapter
from forewarn.cloud import root_id
from forewarn.execution.applier import Applier, Hook
from forewarn.execution.journal import Journal
from forewarn.execution.resilience import AdapterBreaker, default_retry
from forewarn.schemas import Action, ActionType, Instance, Plan, PlanState, PolicyMode, Task
from forewarn.store.models import Base
from forewarn.store.repository import Repository
from tests.servers import throwaway_postgres

T = TypeVar("T")


class Crash(BaseException):
    """A simulated kill of the process: nothing in Forewarn catches it."""


A = TypeVar("A", bound=SimulatedAdapter)


def fleet_of(cls: type[A], *, dry_run: bool = False) -> A:
    """Four instances of capacity 1; t1 and t2 (splittable) on i1, t3 on i2."""
    instances = [Instance(instance_id=f"i{n}", cpu_capacity=1.0, memory_capacity=1.0) for n in range(1, 5)]
    tasks = [
        Task(task_id="t1", instance_id="i1", cpu=0.3, memory=0.3),
        Task(task_id="t2", instance_id="i1", cpu=0.4, memory=0.2, splittable=True, min_chunk=0.25),
        Task(task_id="t3", instance_id="i2", cpu=0.5, memory=0.5),
    ]
    return cls(instances, tasks, dry_run=dry_run)


def fleet(*, dry_run: bool = False) -> SimulatedAdapter:
    return fleet_of(SimulatedAdapter, dry_run=dry_run)


def full_plan(state: PlanState = PlanState.APPROVED) -> Plan:
    """Cordon i1, move t1 to i3, half of t2 to i4, reserve a buffer on i2, scale the group by one."""
    return Plan(
        policy="test",
        mode=PolicyMode.AUTO,
        state=state,
        actions=[
            Action(action_id="a-cordon", type=ActionType.CORDON, instance_id="i1"),
            Action(
                action_id="a-move", type=ActionType.MIGRATE, instance_id="i1", target_instance_id="i3", task_ids=["t1"]
            ),
            Action(
                action_id="a-split",
                type=ActionType.MIGRATE,
                instance_id="i1",
                target_instance_id="i4",
                task_ids=["t2"],
                params={"fractions": [0.5]},
            ),
            Action(action_id="a-reserve", type=ActionType.RESERVE_BUFFER, instance_id="i2", params={"fraction": 0.2}),
            Action(action_id="a-scale", type=ActionType.AUTOSCALE, instance_id="i2", params={"delta": 1}),
        ],
    )


PLAN_ACTIONS = [a.action_id for a in full_plan().actions]
STEPS: list[tuple[str, str | None]] = [("after-start", None), ("after-snapshot", None), ("before-finish", None)] + [
    (point, action_id)
    for point in ("before-intent", "after-intent", "after-execute", "after-outcome")
    for action_id in PLAN_ACTIONS
]
"""Every point of a run of :func:`full_plan` where the process can be killed."""

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
    return Applier(adapter, journal, dry_run=False, breaker=AdapterBreaker(threshold=50), hook=hook, **kwargs)  # type: ignore[arg-type]


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


@pytest.fixture(scope="session")
def postgres_db() -> Iterator[str]:
    """A throwaway database with the journal's schema on the local PostgreSQL 15."""
    with throwaway_postgres("forewarn_exec") as url:
        repo = Repository(url)
        repo.create_all()
        repo.dispose()
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty journal database: a fresh SQLite file, or the Postgres one emptied after the test."""
    if request.param == "sqlite":
        journal(tmp_path).repo.dispose()
        yield f"sqlite:///{tmp_path / 'forewarn.db'}"
        return
    url: str = request.getfixturevalue("postgres_db")
    yield url
    repo = Repository(url)
    with repo.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    repo.dispose()


class DurableFleet(SimulatedAdapter):
    """The simulated cloud, written to ``path`` after every change, so it outlives a killed process."""

    path: Path

    @classmethod
    def create(cls, path: Path) -> DurableFleet:
        adapter = fleet_of(cls)
        adapter.path = path
        adapter.save()
        return adapter

    @classmethod
    def load(cls, path: Path) -> DurableFleet:
        adapter = cls.__new__(cls)
        adapter.__dict__.update(pickle.loads(path.read_bytes()))
        return adapter

    def save(self) -> None:
        partial = self.path.with_suffix(".partial")
        partial.write_bytes(pickle.dumps(self.__dict__))
        os.replace(partial, self.path)

    def _act(self, method: str, key: str, what: str, effect: Callable[[], T]) -> T | None:
        try:
            return super()._act(method, key, what, effect)
        finally:
            self.save()


def placed_once(adapter: SimulatedAdapter, demand: dict[str, tuple[float, float]]) -> None:
    """Every original task is on live instances, whole: its chunks add up to its demand, none is lost."""
    tasks = adapter.list_tasks()
    assert all(t.instance_id in adapter.state.instances for t in tasks), "a task on no (or an unknown) instance"
    assert demand_by_root(adapter) == demand


def effects_once(adapter: SimulatedAdapter) -> list[str]:
    """The keys of every change the cloud made; asserts none was made twice."""
    keys = [key for _, key in adapter.effects]
    assert len(keys) == len(set(keys)), f"a change was made twice: {keys}"
    return keys


@pytest.fixture
def journals(database: str) -> Iterator[Callable[[], Journal]]:
    """Opens the test's journal database as a new process would: a new engine each call (disposed after)."""
    repos: list[Repository] = []

    def open_journal() -> Journal:
        repos.append(Repository(database))
        return Journal(repos[-1])

    yield open_journal
    for repo in repos:
        repo.dispose()
