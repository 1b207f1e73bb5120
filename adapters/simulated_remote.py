"""The simulated cloud of a fleet service (``forewarn fleet serve``), acted on over its HTTP API.

Every call is ``POST /api/cloud/{method}`` on the service, which runs it on its persistent simulated cloud
under a lock: what one process does is in force for every other, and survives the service's restarts.
Idempotency keys are kept by the service. Connection errors are retried (tenacity, in
:class:`forewarn.fleet_service.client.FleetApi`), then raised as ``TransientAdapterError``; an error the service
answers with is raised as the same type (``NotFoundError``, ``AdapterError``, ...). Dry run is held here: a
mutating call in dry run logs what it would do and sends nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from adapters.fleet import FleetState
from adapters.persistent import load_state
from forewarn.fleet_service.client import DEFAULT_URL, FleetApi
from forewarn.fleet_service.wire import frame_from_json
from forewarn.schemas import Instance, Task

log = logging.getLogger(__name__)


class RemoteSimulatedAdapter:
    """A CloudAdapter over a fleet service's API.

    Args:
        url: the service, ``http://127.0.0.1:9108`` by default.
        dry_run: log mutating calls instead of sending them.
        timeout: seconds per request.
    """

    name = "simulated"

    def __init__(self, url: str = DEFAULT_URL, *, dry_run: bool = False, timeout: float = 10.0) -> None:
        self.url = url
        self.dry_run = dry_run
        self.api = FleetApi(url, timeout=timeout)

    def _call(self, method: str, **kwargs: Any) -> Any:
        return self.api.post(f"/api/cloud/{method}", kwargs)["result"]

    def _act(self, method: str, what: str, **kwargs: Any) -> Any:
        if self.dry_run:
            log.info("dry-run: would %s (key %s) on %s", what, kwargs.get("key"), self.url)
            return None
        return self._call(method, **kwargs)

    @property
    def state(self) -> FleetState:
        """The service's fleet state now (what the ``cloud`` failure source reads)."""
        return load_state(self.api.get("/api/state"))

    # -- reads ---------------------------------------------------------------------------------------------
    def list_instances(self) -> list[Instance]:
        return [Instance.model_validate(i) for i in self._call("list_instances")]

    def list_tasks(self) -> list[Task]:
        return [Task.model_validate(t) for t in self._call("list_tasks")]

    def get_instance(self, instance_id: str) -> Instance | None:
        found = self._call("get_instance", instance_id=instance_id)
        return None if found is None else Instance.model_validate(found)

    def find_tasks(
        self, *, instances: Collection[str] | None = None, roots: Collection[str] | None = None
    ) -> list[Task]:
        some = {
            "instances": None if instances is None else list(instances),
            "roots": None if roots is None else list(roots),
        }
        return [Task.model_validate(t) for t in self._call("find_tasks", **some)]

    def read_telemetry(self, instance_ids: Sequence[str], start: datetime, end: datetime) -> pd.DataFrame:
        data = self._call(
            "read_telemetry", instance_ids=list(instance_ids), start=start.isoformat(), end=end.isoformat()
        )
        frame = frame_from_json(data)
        assert frame is not None
        return frame

    def health(self, instance_id: str) -> bool:
        return bool(self._call("health", instance_id=instance_id))

    def free(self, instance_id: str) -> tuple[float, float]:
        cpu, memory = self._call("free", instance_id=instance_id)
        return float(cpu), float(memory)

    # -- mutating calls ------------------------------------------------------------------------------------
    def cordon(self, instance_id: str, *, key: str) -> None:
        self._act("cordon", f"cordon {instance_id}", instance_id=instance_id, key=key)

    def uncordon(self, instance_id: str, *, key: str) -> None:
        self._act("uncordon", f"uncordon {instance_id}", instance_id=instance_id, key=key)

    def migrate(
        self,
        task_ids: Sequence[str],
        source: str,
        target: str,
        *,
        key: str,
        fractions: Sequence[float] | None = None,
    ) -> None:
        what = f"migrate {list(task_ids)} {source} -> {target}"
        shares = list(fractions) if fractions is not None else None
        self._act("migrate", what, task_ids=list(task_ids), source=source, target=target, key=key, fractions=shares)

    def scale(
        self,
        instance_id_or_group: str,
        *,
        factor: float | None = None,
        delta: int | None = None,
        key: str,
    ) -> float | None:
        what = f"scale {instance_id_or_group} (factor {factor}, delta {delta})"
        result = self._act(
            "scale", what, instance_id_or_group=instance_id_or_group, factor=factor, delta=delta, key=key
        )
        return None if result is None else float(result)

    def reserve(self, instance_id: str, fraction: float, *, key: str) -> None:
        self._act(
            "reserve", f"reserve {fraction:.0%} of {instance_id}", instance_id=instance_id, fraction=fraction, key=key
        )

    def snapshot(self, *, key: str) -> str:
        result = self._act("snapshot", "snapshot the fleet", key=key)
        return str(result) if result is not None else "snapshot-dry-run"

    def restore(self, snapshot_id: str, *, key: str) -> None:
        self._act("restore", f"restore {snapshot_id}", snapshot_id=snapshot_id, key=key)

    # -- a driver's controls (the service's own timeline drives these; tests may too) ----------------------
    def fail_instance(self, instance_id: str, at: datetime | None = None) -> None:
        self._call("fail_instance", instance_id=instance_id, at=at.isoformat() if at else None)

    def repair_instance(self, instance_id: str) -> None:
        self._call("repair_instance", instance_id=instance_id)
