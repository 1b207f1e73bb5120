"""The in-memory cloud: the default adapter everywhere (demo, replay, tests).

The fleet's rules (placement, capacity, splits, scaling) are in :mod:`adapters.fleet`; this module adds
the CloudAdapter contract on top: idempotency by key, typed errors, dry-run, snapshots, and the test
controls (``fail_instance``, ``recover_instance``, fault injection through :class:`FaultPlan`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any, TypeVar

import pandas as pd

from adapters.faults import ALWAYS, FaultPlan
from adapters.fleet import FleetState
from forewarn.cloud import root_id, select_tasks
from forewarn.errors import AdapterError, NotFoundError
from forewarn.schemas import Instance, Task, utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")


class SimulatedAdapter:
    """An in-memory cloud.

    Args:
        instances: the fleet at the start.
        tasks: the tasks with their placement.
        dry_run: log mutating calls instead of carrying them out.
        migration_minutes: downtime each moved task accrues (summed in ``migration_downtime_minutes``).
        telemetry: a frame in the dataset format that ``read_telemetry`` serves, if any.

    Attributes:
        effects: ``(method, key)`` of every call that changed the fleet, in order (for exactly-once checks).
        faults: the injected faults; see :meth:`inject`.
    """

    name = "simulated"

    def __init__(
        self,
        instances: Sequence[Instance],
        tasks: Sequence[Task],
        *,
        dry_run: bool = False,
        migration_minutes: float = 0.0,
        telemetry: pd.DataFrame | None = None,
    ) -> None:
        self.dry_run = dry_run
        self.migration_minutes = migration_minutes
        self.state = FleetState({i.instance_id: i.model_copy() for i in instances}, {})
        for task in tasks:
            if task.instance_id is not None:
                self.state.instance(task.instance_id)
            self.state.tasks[task.task_id] = task.model_copy()
        self.faults = FaultPlan()
        self.effects: list[tuple[str, str]] = []
        self._results: dict[str, tuple[str, Any]] = {}
        self._snapshots: dict[str, FleetState] = {}
        self._telemetry = telemetry

    # -- test controls -------------------------------------------------------------------------------------
    def inject(self, method: str, **kwargs: Any) -> None:
        """Make calls of ``method`` fail; see :meth:`adapters.faults.FaultPlan.inject`."""
        self.faults.inject(method, **kwargs)

    def fail_instance(self, instance_id: str, at: datetime | None = None) -> None:
        self.state.instance(instance_id)
        self.state.failed[instance_id] = at or utcnow()

    def recover_instance(self, instance_id: str) -> None:
        self.state.failed.pop(instance_id, None)

    def repair_instance(self, instance_id: str) -> None:
        """The instance comes back from repair as new: up, uncordoned, no buffer, its nominal size."""
        self.recover_instance(instance_id)
        state = self.state
        state.cordoned.discard(instance_id)
        state.reserved.pop(instance_id, None)
        if instance_id in state.nominal:
            cpu, memory = state.nominal.pop(instance_id)
            inst = state.instances[instance_id]  # replaced, not changed: a snapshot may share it
            state.instances[instance_id] = inst.model_copy(update={"cpu_capacity": cpu, "memory_capacity": memory})
            state.factors.pop(instance_id, None)

    def add_task(self, task: Task) -> None:
        """A task arrives on its instance (a driver's control, not a cloud call)."""
        self.state.tasks[task.task_id] = task.model_copy()

    def end_task(self, task_id: str) -> None:
        """A task finished and leaves (a no-op when it is not there)."""
        self.state.tasks.pop(task_id, None)

    @property
    def migration_downtime_minutes(self) -> float:
        return self.migration_minutes * self.state.moved

    def used(self, instance_id: str) -> tuple[float, float]:
        return self.state.used(instance_id)

    def free(self, instance_id: str) -> tuple[float, float]:
        return self.state.free(instance_id)

    def placement(self) -> dict[str, str | None]:
        return {t.task_id: t.instance_id for t in self.state.tasks.values()}

    # -- reads ---------------------------------------------------------------------------------------------
    def list_instances(self) -> list[Instance]:
        self._read("list_instances")
        return [self.state.view(i) for i in self.state.instances.values()]

    def list_tasks(self) -> list[Task]:
        self._read("list_tasks")
        return [t.model_copy() for t in self.state.tasks.values()]

    def get_instance(self, instance_id: str) -> Instance | None:
        """One instance as ``list_instances`` shows it (a narrow read, failing as that listing would)."""
        self._read("list_instances")
        inst = self.state.instances.get(instance_id)
        return None if inst is None else self.state.view(inst)

    def find_tasks(
        self, *, instances: Collection[str] | None = None, roots: Collection[str] | None = None
    ) -> list[Task]:
        """The tasks ``list_tasks`` shows on ``instances`` of original task in ``roots`` (None: any); a narrow
        read, failing as that listing would, that copies only what it returns."""
        self._read("list_tasks")
        return [t.model_copy() for t in select_tasks(self.state.tasks.values(), instances=instances, roots=roots)]

    def read_telemetry(self, instance_ids: Sequence[str], start: datetime, end: datetime) -> pd.DataFrame:
        self._read("read_telemetry")
        frame = self._telemetry
        if frame is None:
            return pd.DataFrame({"instance_id": pd.Series(dtype=str), "timestamp": pd.Series(dtype="M8[ns, UTC]")})
        keep = frame["instance_id"].isin(list(instance_ids)) & frame["timestamp"].between(start, end)
        return frame[keep].reset_index(drop=True)

    def health(self, instance_id: str) -> bool:
        self._read("health")
        self.state.instance(instance_id)
        return instance_id not in self.state.failed

    # -- mutating calls ------------------------------------------------------------------------------------
    def cordon(self, instance_id: str, *, key: str) -> None:
        self._act("cordon", key, f"cordon {instance_id}", lambda: self.state.set_cordon(instance_id, True))

    def uncordon(self, instance_id: str, *, key: str) -> None:
        self._act("uncordon", key, f"uncordon {instance_id}", lambda: self.state.set_cordon(instance_id, False))

    def migrate(
        self,
        task_ids: Sequence[str],
        source: str,
        target: str,
        *,
        key: str,
        fractions: Sequence[float] | None = None,
    ) -> None:
        what = f"migrate {list(task_ids)} {source} -> {target}" + (f" in shares {list(fractions)}" if fractions else "")
        self._act("migrate", key, what, lambda: self.state.migrate(list(task_ids), source, target, fractions))

    def scale(
        self,
        instance_id_or_group: str,
        *,
        factor: float | None = None,
        delta: int | None = None,
        key: str,
    ) -> float | None:
        what = f"scale {instance_id_or_group} (factor {factor}, delta {delta})"
        return self._act("scale", key, what, lambda: self.state.scale(instance_id_or_group, factor, delta))

    def reserve(self, instance_id: str, fraction: float, *, key: str) -> None:
        what = f"reserve {fraction:.0%} of {instance_id}"
        self._act("reserve", key, what, lambda: self.state.reserve(instance_id, fraction))

    def snapshot(self, *, key: str) -> str:
        result = self._act("snapshot", key, "snapshot the fleet", self._snapshot)
        return result if result is not None else "snapshot-dry-run"

    def restore(self, snapshot_id: str, *, key: str) -> None:
        self._act("restore", key, f"restore {snapshot_id}", lambda: self._restore(snapshot_id))

    # -- internals -----------------------------------------------------------------------------------------
    def _read(self, method: str) -> None:
        self.faults.end(method, self.faults.begin(method))

    def _act(self, method: str, key: str, what: str, effect: Callable[[], T]) -> T | None:
        """Run one mutating call: faults, then idempotency by key, then dry-run, then the effect."""
        fault = self.faults.begin(method)
        if key in self._results:
            done, result = self._results[key]
            if done != method:
                raise AdapterError(f"key {key!r} was already used for {done}, not {method}")
            return result
        if self.dry_run:
            log.info("dry-run: would %s (key %s)", what, key)
            return None
        result = effect()
        self._results[key] = (method, result)
        self.effects.append((method, key))
        self.faults.end(method, fault)
        return result

    def _snapshot(self) -> str:
        snapshot_id = f"snap-{len(self._snapshots) + 1:04d}"
        self._snapshots[snapshot_id] = self.state.copy()
        return snapshot_id

    def _restore(self, snapshot_id: str) -> None:
        if snapshot_id not in self._snapshots:
            raise NotFoundError(f"no snapshot {snapshot_id!r}")
        self.state = self.state.restore(self._snapshots[snapshot_id])


__all__ = ["ALWAYS", "FaultPlan", "SimulatedAdapter", "root_id"]
