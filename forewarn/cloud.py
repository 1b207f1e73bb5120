"""The port every cloud implements: list, read telemetry, cordon, migrate, scale, reserve, snapshot, health.

The adapters in ``adapters/`` implement it; in ``forewarn/`` only the composition root picks one.

Contract of every implementation:
    idempotency: every mutating call takes a ``key``; a repeated key is a no-op that returns the result of
        the first successful call with that key (so a retry after a time-out never acts twice).
    errors: failures raise :class:`forewarn.errors.AdapterError` subclasses: ``TransientAdapterError`` for
        throttling, time-outs and 5xx (worth retrying), ``NotFoundError`` for unknown instances or tasks.
    dry run: with ``dry_run`` true, mutating calls log what they would do and change nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from forewarn.schemas import ActionType, Instance, Task

if TYPE_CHECKING:
    import pandas as pd


def root_id(task_id: str) -> str:
    """The original task a chunk was cut from (``t1#2`` -> ``t1``): a split's chunks are ``<id>#k``."""
    return task_id.split("#", 1)[0]


MUTATING_CALLS = ("cordon", "uncordon", "migrate", "scale", "reserve", "snapshot", "restore")
"""The calls that change the fleet (``snapshot`` creates a record); the applier never sends them in dry-run."""


@runtime_checkable
class CloudAdapter(Protocol):
    """A cloud Forewarn can observe and act on."""

    name: str
    dry_run: bool

    def list_instances(self) -> list[Instance]:
        """Every instance the adapter manages, failed ones included (with state ``failed``)."""
        ...

    def list_tasks(self) -> list[Task]:
        """Every task with its current placement."""
        ...

    def read_telemetry(self, instance_ids: Sequence[str], start: datetime, end: datetime) -> pd.DataFrame:
        """Telemetry in the dataset format (``instance_id``, ``timestamp``, metrics); may be empty."""
        ...

    def cordon(self, instance_id: str, *, key: str) -> None:
        """Stop placing new work on an instance."""
        ...

    def uncordon(self, instance_id: str, *, key: str) -> None:
        """Allow new work on an instance again."""
        ...

    def migrate(
        self,
        task_ids: Sequence[str],
        source: str,
        target: str,
        *,
        key: str,
        fractions: Sequence[float] | None = None,
    ) -> None:
        """Move tasks from ``source`` to ``target``; with ``fractions``, move those shares as chunk tasks."""
        ...

    def scale(
        self,
        instance_id_or_group: str,
        *,
        factor: float | None = None,
        delta: int | None = None,
        key: str,
    ) -> float | None:
        """Resize one instance or a group (``delta`` instances, or ``factor`` on its size).

        For an instance, ``factor`` is the share of its nominal capacity to run at: repeating a call does not
        compound, and ``factor=1.0`` restores the nominal capacity. A shrink that would leave the instance's
        tasks over its new capacity raises AdapterError. Returns the factor in force before the call (what a
        revert restores; a repeated key returns the first call's answer), or None for a group or when the
        cloud cannot tell (a revert then restores 1.0).
        """
        ...

    def reserve(self, instance_id: str, fraction: float, *, key: str) -> None:
        """Hold back ``fraction`` of an instance's capacity as a buffer (0 releases it)."""
        ...

    def snapshot(self, *, key: str) -> str:
        """Capture placement and instance configuration; returns the snapshot id."""
        ...

    def restore(self, snapshot_id: str, *, key: str) -> None:
        """Return placement and configuration to a snapshot."""
        ...

    def health(self, instance_id: str) -> bool:
        """Whether the instance is up and able to run work."""
        ...


@runtime_checkable
class NarrowReads(Protocol):
    """Reads of a few instances and tasks, which an adapter may offer beside the listings (optional).

    The applier checks each action's conditions on one or two instances; without these it lists the whole
    fleet for each check (:func:`get_instance` and :func:`find_tasks` fall back to the listings). Each
    answers exactly what filtering the listing would, and fails as the listing would."""

    def get_instance(self, instance_id: str) -> Instance | None:
        """The instance as ``list_instances`` shows it, or None when there is no such instance."""
        ...

    def find_tasks(
        self, *, instances: Collection[str] | None = None, roots: Collection[str] | None = None
    ) -> list[Task]:
        """The tasks ``list_tasks`` shows that sit on one of ``instances`` and whose original task (see
        :func:`root_id`) is one of ``roots``; None: any."""
        ...


def get_instance(adapter: CloudAdapter, instance_id: str) -> Instance | None:
    """One instance as the adapter lists it (None: not there), through its narrow read when it has one."""
    if isinstance(adapter, NarrowReads):
        return adapter.get_instance(instance_id)
    return next((i for i in adapter.list_instances() if i.instance_id == instance_id), None)


def find_tasks(
    adapter: CloudAdapter, *, instances: Collection[str] | None = None, roots: Collection[str] | None = None
) -> list[Task]:
    """The adapter's tasks on ``instances`` with original task in ``roots`` (None: any), through its narrow
    read when it has one."""
    if isinstance(adapter, NarrowReads):
        return adapter.find_tasks(instances=instances, roots=roots)
    return select_tasks(adapter.list_tasks(), instances=instances, roots=roots)


def select_tasks(
    tasks: Collection[Task], *, instances: Collection[str] | None = None, roots: Collection[str] | None = None
) -> list[Task]:
    """The tasks of ``tasks`` on ``instances`` whose original task is in ``roots`` (None: any)."""
    on = None if instances is None else set(instances)
    of = None if roots is None else set(roots)
    return [t for t in tasks if (on is None or t.instance_id in on) and (of is None or root_id(t.task_id) in of)]


EVERY_ACTION: frozenset[ActionType] = frozenset(ActionType)


def capabilities(adapter: object) -> frozenset[ActionType]:
    """The action types ``adapter`` can carry out: its ``capabilities`` attribute, else every one.

    An adapter declares what it cannot do by leaving it out (OpenStack without Heat or Senlin cannot change a
    group's size: no ``autoscale``); the planner asks before it plans (:mod:`forewarn.allocation.capable`)."""
    declared = getattr(adapter, "capabilities", None)
    return EVERY_ACTION if declared is None else frozenset(declared)


@runtime_checkable
class SimulatedCloud(CloudAdapter, Protocol):
    """A simulated cloud, with the controls a driver (replay, the fleet service, tests) moves it by."""

    def fail_instance(self, instance_id: str, at: datetime | None = None) -> None:
        """The instance fails now (or at ``at``): it stays down until repaired."""
        ...

    def repair_instance(self, instance_id: str) -> None:
        """The instance comes back from repair as new: up, uncordoned, no buffer, its nominal size."""
        ...

    def add_task(self, task: Task) -> None:
        """A task arrives on its instance."""
        ...

    def end_task(self, task_id: str) -> None:
        """A task finished and leaves."""
        ...

    def free(self, instance_id: str) -> tuple[float, float]:
        """CPU and memory still free on an instance, after its reserved buffer."""
        ...
