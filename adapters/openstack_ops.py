"""Nova's own operations for the OpenStack adapter, each idempotent by key and, where Nova allows, by state.

A server already on the target host is not migrated again; a server group that exists is returned, not
created twice; a confirm with nothing to confirm is a no-op.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from openstack.compute.v2.server import Server

from adapters.openstack_calls import guarded, host_of
from forewarn.errors import NotFoundError

T = TypeVar("T")
UP = frozenset({"ACTIVE"})


class NovaOperations:
    """Live and cold migration, resize, evacuate, compute services, server groups, images, rebuild."""

    compute: Any

    def server(self, server_id: str) -> Any:
        raise NotImplementedError

    def _act(self, method: str, key: str, what: str, effect: Callable[[], T]) -> T | None:
        raise NotImplementedError

    def migration_status(self, server_id: str) -> list[dict[str, Any]]:
        """Every migration of a server, newest first: id, kind, status, source and destination hosts."""
        found = guarded("list migrations", lambda: list(self.compute.migrations(instance_uuid=server_id)))
        rows = [
            {
                "id": m.id,
                "kind": m.migration_type,
                "status": m.status,
                "source": m.source_compute,
                "dest": m.dest_compute,
                "updated_at": m.updated_at,
            }
            for m in found
        ]
        return sorted(rows, key=lambda r: str(r["updated_at"] or ""), reverse=True)

    def live_migrate(
        self, server_id: str, host: str | None = None, *, key: str, block_migration: bool | str = "auto"
    ) -> None:
        """Live-migrate to ``host`` (or where the scheduler picks); a server already there is left alone."""

        def effect() -> None:
            if host is not None and host_of(self.server(server_id)) == host:
                return
            guarded(
                f"live-migrate {server_id}",
                lambda: self.compute.live_migrate_server(server_id, host=host, block_migration=block_migration),
            )

        self._act("live_migrate", key, f"live-migrate {server_id} to {host or 'any host'}", effect)

    def cold_migrate(self, server_id: str, host: str | None = None, *, key: str) -> None:
        """Cold-migrate (resize to the same flavor); confirm it with :meth:`confirm` once VERIFY_RESIZE."""

        def effect() -> None:
            if host is not None and host_of(self.server(server_id)) == host:
                return
            guarded(f"migrate {server_id}", lambda: self.compute.migrate_server(server_id, host=host))

        self._act("cold_migrate", key, f"cold-migrate {server_id} to {host or 'any host'}", effect)

    def resize(self, server_id: str, flavor: str, *, key: str) -> None:
        def effect() -> None:
            found = guarded(f"find flavor {flavor}", lambda: self.compute.find_flavor(flavor, ignore_missing=False))
            guarded(f"resize {server_id}", lambda: self.compute.resize_server(server_id, found))

        self._act("resize", key, f"resize {server_id} to {flavor}", effect)

    def confirm(self, server_id: str, *, key: str) -> None:
        """Confirm a resize or cold migration waiting in VERIFY_RESIZE (no-op otherwise)."""

        def effect() -> None:
            if self.server(server_id).status == "VERIFY_RESIZE":
                guarded(f"confirm {server_id}", lambda: self.compute.confirm_server_resize(server_id))

        self._act("confirm", key, f"confirm resize of {server_id}", effect)

    def evacuate(self, server_id: str, host: str | None = None, *, key: str) -> None:
        """Rebuild a server of a down compute host (see :meth:`force_down_host`) elsewhere."""
        self._act(
            "evacuate",
            key,
            f"evacuate {server_id} to {host or 'any host'}",
            lambda: guarded(f"evacuate {server_id}", lambda: self.compute.evacuate_server(server_id, host=host)),
        )

    def disable_host(self, host: str, reason: str, *, key: str) -> None:
        """Disable the nova-compute service of ``host``: the scheduler places nothing new there."""
        self._act(
            "disable_host",
            key,
            f"disable nova-compute on {host}",
            lambda: guarded(
                f"disable {host}",
                lambda: self.compute.disable_service(
                    self._service(host), host=host, binary="nova-compute", disabled_reason=reason
                ),
            ),
        )

    def force_down_host(self, host: str, *, key: str, forced: bool = True) -> None:
        """Mark the nova-compute service of a fenced host down (or up again), so its servers can be evacuated."""
        self._act(
            "force_down_host",
            key,
            f"mark nova-compute on {host} {'down' if forced else 'up'}",
            lambda: guarded(
                f"force down {host}",
                lambda: self.compute.update_service_forced_down(
                    self._service(host), host=host, binary="nova-compute", forced=forced
                ),
            ),
        )

    def enable_host(self, host: str, *, key: str) -> None:
        self._act(
            "enable_host",
            key,
            f"enable nova-compute on {host}",
            lambda: guarded(
                f"enable {host}",
                lambda: self.compute.enable_service(self._service(host), host=host, binary="nova-compute"),
            ),
        )

    def server_group(self, name: str, policy: str, *, key: str) -> str | None:
        """The id of the server group ``name``, created with ``policy`` (anti-affinity, ...) if absent."""

        def effect() -> str:
            found = [
                g for g in guarded("list server groups", lambda: list(self.compute.server_groups())) if g.name == name
            ]
            if found:
                return str(found[0].id)
            made = guarded(
                f"create server group {name}", lambda: self.compute.create_server_group(name=name, policy=policy)
            )
            return str(made.id)

        return self._act("server_group", key, f"create server group {name} ({policy})", effect)

    def image(self, server_id: str, name: str, *, key: str) -> str | None:
        """Snapshot a server to an image (Nova's ``createImage``); the image id, as Nova answers it.

        Only the compute endpoint is used: the SDK's ``create_server_image`` would also read the image back from
        Glance, which a compute-only connection (or a Glance outage) turns into a failure after the image exists.
        """
        return self._act(
            "image",
            key,
            f"image {server_id} as {name}",
            lambda: str(
                guarded(f"image {server_id}", lambda: Server.existing(id=server_id).create_image(self.compute, name))
            ),
        )

    def rebuild(self, server_id: str, image_id: str, *, key: str) -> None:
        self._act(
            "rebuild",
            key,
            f"rebuild {server_id} from {image_id}",
            lambda: guarded(f"rebuild {server_id}", lambda: self.compute.rebuild_server(server_id, image_id)),
        )

    def _service(self, host: str) -> Any:
        found = guarded("list services", lambda: list(self.compute.services(binary="nova-compute", host=host)))
        if not found:
            raise NotFoundError(f"no nova-compute service on host {host!r}")
        return found[0]
