"""The OpenStack cloud: Nova servers through openstacksdk (an injected ``openstack.connection.Connection``).

The CloudAdapter calls keep Forewarn's task registry in server metadata (the codec of
:mod:`adapters.aws_tags`: ``forewarn:task:<id>`` keys) under the simulated cloud's rules; cordon is the
``forewarn:cordoned`` metadata key. Nova's own operations are methods of their own, each idempotent by key
and by a pre-condition (a server already on the target host is not migrated again): live and cold migration,
resize (confirmed), evacuate, disabling and enabling a compute service, server groups, image snapshots and
rebuild, and the status of a server's migrations. Credentials come from ``clouds.yaml`` (``openstack.connect``)
or the injected connection; nothing here logs them. Dry-run is the default.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import openstack
import pandas as pd

from adapters.aws_calls import KeyLedger
from adapters.aws_tags import CORDONED, FACTOR, PREFIX, RESERVED, TASK, record_changes, tasks_from, unit_float
from adapters.fleet import FleetState
from adapters.openstack_calls import capacity_of, guarded, host_of
from adapters.openstack_ops import UP, NovaOperations
from forewarn.capacity import fits
from forewarn.cloud import EVERY_ACTION
from forewarn.errors import AdapterError, NotFoundError
from forewarn.schemas import ActionType, Instance, InstanceState, Task, utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")


class OpenStackAdapter(NovaOperations):
    """Forewarn's CloudAdapter over the servers of one project.

    It cannot change a group's size (that needs Heat or Senlin), so it declares no ``autoscale`` capability.

    Args:
        connection: an openstacksdk connection (default: ``openstack.connect(cloud)`` from clouds.yaml).
        cloud: the clouds.yaml entry when no connection is given.
        dry_run: log mutating calls instead of sending them.
        state_dir: where used keys and snapshots (``snapshots/<id>.json``) are kept; in memory when ``None``,
            so that with a state directory a restarted process can still restore a snapshot taken before.
    """

    name = "openstack"
    capabilities = EVERY_ACTION - {ActionType.AUTOSCALE}

    def __init__(
        self,
        connection: openstack.connection.Connection | None = None,
        *,
        cloud: str | None = None,
        dry_run: bool = True,
        state_dir: Path | None = None,
    ) -> None:
        self.conn = connection or openstack.connect(cloud=cloud)
        self.compute: Any = self.conn.compute
        self.dry_run = dry_run
        self.ledger = KeyLedger(state_dir / "openstack-keys.json" if state_dir else None)
        self.state_dir = state_dir
        self.snapshots: dict[str, dict[str, dict[str, str]]] = {}

    # -- reads ---------------------------------------------------------------------------------------------
    def servers(self) -> dict[str, Any]:
        return {s.id: s for s in guarded("list servers", lambda: list(self.compute.servers(details=True)))}

    def server(self, server_id: str) -> Any:
        return guarded(f"get server {server_id}", lambda: self.compute.get_server(server_id))

    def list_instances(self) -> list[Instance]:
        groups = {
            m: g.name
            for g in guarded("list server groups", lambda: list(self.compute.server_groups()))
            for m in (g.member_ids or [])
        }
        return [self._instance(s, groups.get(s.id, "default")) for s in self.servers().values()]

    def list_tasks(self) -> list[Task]:
        return list(tasks_from({sid: dict(s.metadata or {}) for sid, s in self.servers().items()})[0].values())

    def read_telemetry(self, instance_ids: Sequence[str], start: datetime, end: datetime) -> pd.DataFrame:
        """Nova keeps no time series; use Prometheus (node_exporter) beside it."""
        return pd.DataFrame({"instance_id": pd.Series(dtype=str), "timestamp": pd.Series(dtype="datetime64[ns, UTC]")})

    def health(self, instance_id: str) -> bool:
        server = self.server(instance_id)
        if server.status not in UP:
            return False
        host = host_of(server)
        services = guarded("list services", lambda: list(self.compute.services(binary="nova-compute", host=host)))
        return all(s.state == "up" for s in services) if host else True

    # -- the CloudAdapter mutating calls -------------------------------------------------------------------
    def cordon(self, instance_id: str, *, key: str) -> None:
        self._act("cordon", key, f"cordon {instance_id}", lambda: self._meta(instance_id, {CORDONED: "true"}))

    def uncordon(self, instance_id: str, *, key: str) -> None:
        self._act("uncordon", key, f"uncordon {instance_id}", lambda: self._unset(instance_id, CORDONED))

    def migrate(
        self, task_ids: Sequence[str], source: str, target: str, *, key: str, fractions: Sequence[float] | None = None
    ) -> None:
        def effect() -> None:
            fleet = self._fleet()
            before = {tid: t.model_copy() for tid, t in fleet.tasks.items()}
            fleet.migrate(list(task_ids), source, target, fractions)
            self._write_tasks(before, fleet)

        self._act("migrate", key, f"migrate {list(task_ids)} {source} -> {target}", effect)

    def scale(
        self, instance_id_or_group: str, *, factor: float | None = None, delta: int | None = None, key: str
    ) -> float | None:
        """A server's soft capacity (metadata); returns the previous factor. Groups grow by Heat or Senlin."""
        if factor is None or delta is not None:
            raise AdapterError(
                "scale: OpenStack servers scale by factor (soft capacity) or by resize(); "
                "growing a group needs an orchestrator (Heat, Senlin)"
            )
        if factor <= 0:
            raise AdapterError(f"scale: factor must be positive, got {factor}")

        def effect() -> float:
            fleet, server = self._fleet(), self.server(instance_id_or_group)
            before = unit_float(dict(server.metadata or {}), FACTOR, 1.0)
            cpu, memory = capacity_of(server)
            used_cpu, used_memory = fleet.used(server.id)
            if factor < before and not (fits(used_cpu, cpu * factor) and fits(used_memory, memory * factor)):
                raise AdapterError(f"scale: {server.id} at {factor:.0%} is below what its tasks use; move work first")
            if factor != 1.0:
                self._meta(server.id, {FACTOR: f"{factor:.6g}"})
            elif FACTOR in (server.metadata or {}):
                self._meta(server.id, {}, [FACTOR])
            return before

        return self._act("scale", key, f"scale {instance_id_or_group} to {factor}", effect)

    def reserve(self, instance_id: str, fraction: float, *, key: str) -> None:
        def effect() -> None:
            self._fleet().reserve(instance_id, fraction)
            if fraction > 0:
                self._meta(instance_id, {RESERVED: f"{fraction:.6g}"})
            else:
                self._unset(instance_id, RESERVED)

        self._act("reserve", key, f"reserve {fraction:.0%} of {instance_id}", effect)

    def snapshot(self, *, key: str) -> str:
        def effect() -> str:
            snapshot_id = "os-snap-" + hashlib.sha256(key.encode()).hexdigest()[:12]
            self._save_snapshot(snapshot_id, {sid: _own(s.metadata) for sid, s in self.servers().items()})
            return snapshot_id

        return self._act("snapshot", key, "snapshot server metadata", effect) or "snapshot-dry-run"

    def restore(self, snapshot_id: str, *, key: str) -> None:
        def effect() -> None:
            saved, servers = self._load_snapshot(snapshot_id), self.servers()
            lost = sorted(
                sid
                for sid, meta in saved.items()
                if any(k.startswith(TASK) for k in meta) and (sid not in servers or servers[sid].status not in UP)
            )
            if lost:
                raise AdapterError(f"restore: it would put tasks back on failed or gone {', '.join(lost)}")
            for sid, server in servers.items():
                now, want = _own(server.metadata), saved.get(sid, {})
                self._meta(sid, {k: v for k, v in want.items() if now.get(k) != v})
            for sid, server in servers.items():
                want = saved.get(sid, {})
                self._meta(sid, {}, [k for k in _own(server.metadata) if k not in want])

        self._act("restore", key, f"restore {snapshot_id}", effect)

    # -- internals -----------------------------------------------------------------------------------------
    def _save_snapshot(self, snapshot_id: str, record: dict[str, dict[str, str]]) -> None:
        """Keep the record in memory and, with a state directory, in ``snapshots/<id>.json`` (written atomically)."""
        self.snapshots[snapshot_id] = record
        if self.state_dir is not None:
            path = self.state_dir / "snapshots" / f"{snapshot_id}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.with_suffix(".tmp").write_text(json.dumps(record, indent=1, sort_keys=True))
            path.with_suffix(".tmp").replace(path)

    def _load_snapshot(self, snapshot_id: str) -> dict[str, dict[str, str]]:
        if snapshot_id not in self.snapshots and self.state_dir is not None:
            path = self.state_dir / "snapshots" / f"{snapshot_id}.json"
            if path.is_file():
                self.snapshots[snapshot_id] = json.loads(path.read_text())
        if snapshot_id not in self.snapshots:
            raise NotFoundError(f"no snapshot {snapshot_id!r}")
        return self.snapshots[snapshot_id]

    def _act(self, method: str, key: str, what: str, effect: Callable[[], T]) -> T | None:
        return self.ledger.act(method, key, what, effect, dry_run=self.dry_run)

    def _instance(self, server: Any, group: str) -> Instance:
        meta = dict(server.metadata or {})
        cpu, memory = capacity_of(server)
        factor = unit_float(meta, FACTOR, 1.0)
        factor = factor if factor > 0 else 1.0
        reserved = unit_float(meta, RESERVED, 0.0)
        state = (
            InstanceState.FAILED
            if server.status not in UP
            else (InstanceState.CORDONED if CORDONED in meta else InstanceState.RUNNING)
        )
        return Instance(
            instance_id=server.id,
            cpu_capacity=cpu * factor,
            memory_capacity=memory * factor,
            group=group,
            zone=str(server.availability_zone or "nova"),
            state=state,
            tags={k: str(v) for k, v in meta.items() if not k.startswith(PREFIX)},
            capacity_factor=factor,
            reserved=reserved if 0.0 <= reserved < 1.0 else 0.0,
        )

    def _fleet(self) -> FleetState:
        servers = self.servers()
        metas = {sid: dict(s.metadata or {}) for sid, s in servers.items()}
        tasks, left = tasks_from(metas)
        return FleetState(
            instances={sid: self._instance(s, "default") for sid, s in servers.items()},
            tasks=tasks,
            cordoned={sid for sid, m in metas.items() if CORDONED in m},
            reserved={sid: unit_float(m, RESERVED, 0.0) for sid, m in metas.items() if RESERVED in m},
            failed={sid: utcnow() for sid, s in servers.items() if s.status not in UP},
            left=left,
        )

    def _meta(self, server_id: str, put: dict[str, str], drop: Sequence[str] = ()) -> None:
        if put:
            guarded(f"set metadata of {server_id}", lambda: self.compute.set_server_metadata(server_id, **put))
        if drop:
            guarded(f"delete metadata of {server_id}", lambda: self.compute.delete_server_metadata(server_id, drop))

    def _unset(self, server_id: str, key: str) -> None:
        """Drop one metadata key if the server has it (Nova answers 404 for a key it does not have)."""
        if key in (self.server(server_id).metadata or {}):
            self._meta(server_id, {}, [key])

    def _write_tasks(self, before: dict[str, Task], fleet: FleetState) -> None:
        """Write the task records that changed: new ones first, then the deletions (see aws_tags)."""
        put, drop = record_changes(before, fleet)
        for instance_id, tags in put.items():
            self._meta(instance_id, tags)
        for instance_id, keys in drop.items():
            self._meta(instance_id, {}, keys)


def _own(metadata: dict[str, Any] | None) -> dict[str, str]:
    return {k: str(v) for k, v in (metadata or {}).items() if k.startswith(PREFIX)}
