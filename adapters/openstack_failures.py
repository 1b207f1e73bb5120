"""Failures of the OpenStack cloud, from what Nova says about the project's servers.

Read at every pull (``GET /servers/detail``, and ``os-instance-actions`` of the servers that need it):
    ERROR: a server in status ERROR is a ``server-error``; its cause is the server's ``fault`` message (Nova
        records one when an operation fails on the compute host), else what its latest instance action says
        (``resetState`` by an admin, or the failed action); dated by the failed action that put it there (the
        same time its ``action-failed`` record has, so the two are one failure), else the fault, else the action.
    SHUTOFF: a ``server-shutoff``, dated by its ``stop`` action (the cause names who asked), or by the server's
        last update when it stopped outside the API (guest shutdown, host power loss). Forewarn never stops a
        server; one that carries the metadata key ``forewarn:stopped`` is left out.
    failed actions: an action whose event on the compute host (``compute_*``) failed, on a server that is
        ACTIVE again, is an ``action-failed`` failure already over (its recovery is the event's duration).
        Scheduler and conductor refusals (no valid host) are not failures of the server.
A server is healthy when ACTIVE; it came back at its latest start, reboot, resetState, rebuild or evacuate
action where Nova has one. Actions are read for the servers down now and those updated since a day before the
pull's ``since`` (all of them on a first pull); Nova keeps them until the server is deleted.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from adapters.cloud_failures import LOOKBACK, Failure, Observed
from adapters.openstack_calls import guarded
from adapters.openstack_ops import UP

STOPPED_BY_FOREWARN = "forewarn:stopped"
BACK_ACTIONS = frozenset({"start", "reboot", "resetState", "rebuild", "evacuate", "unshelve", "resume", "unpause"})


class NovaFailures:
    """The failure detector of an :class:`adapters.openstack.OpenStackAdapter`."""

    def __init__(self, adapter: Any) -> None:
        self.adapter, self.compute = adapter, adapter.compute

    def observe(self, since: datetime | None, until: datetime) -> Observed:
        servers = self.adapter.servers()
        seen = Observed(present=set(servers))
        after = since - LOOKBACK if since is not None else None
        for sid, server in servers.items():
            updated = _time(getattr(server, "updated_at", None))
            down = server.status in ("ERROR", "SHUTOFF")
            if not down and after is not None and (updated is None or updated < after):
                if server.status in UP:
                    seen.healthy[sid] = None
                continue
            actions = self.actions(sid)
            if server.status == "ERROR":
                seen.failures.append(error_failure(server, actions, updated or until))
            elif server.status == "SHUTOFF" and STOPPED_BY_FOREWARN not in (server.metadata or {}):
                seen.failures.append(shutoff_failure(server, actions, updated or until))
            elif server.status in UP:
                back = [_time(a.start_time) for a in actions if a.action in BACK_ACTIONS]
                seen.healthy[sid] = max((b for b in back if b is not None), default=None)
                seen.failures += self.failed_actions(sid, actions, after)
        return seen

    def actions(self, server_id: str) -> list[Any]:
        """The server's instance actions, newest first."""
        found = guarded(f"list actions of {server_id}", lambda: list(self.compute.server_actions(server_id)))
        return sorted(found, key=lambda a: str(a.start_time or ""), reverse=True)

    def events(self, server_id: str, request_id: str) -> list[Any]:
        """The events of one instance action (the list of actions does not carry them)."""
        detail = guarded(
            f"get action {request_id} of {server_id}", lambda: self.compute.get_server_action(request_id, server_id)
        )
        return list(detail.events or [])

    def failed_actions(self, server_id: str, actions: Iterable[Any], after: datetime | None) -> list[Failure]:
        out = []
        for action in actions:
            started = _time(action.start_time)
            if action.message != "Error" or started is None or (after is not None and started < after):
                continue
            for event in self.events(server_id, str(action.request_id)):
                if str(event.result).lower() != "error" or not str(event.event).startswith("compute_"):
                    continue
                finished = _time(event.finish_time) or started
                minutes = max((finished - started).total_seconds() / 60.0, 0.0)
                cause = f"{action.action} failed in {event.event}" + (f": {event.details}" if event.details else "")
                out.append(Failure(server_id, started, "action-failed", cause, minutes))
                break
        return out


def error_failure(server: Any, actions: list[Any], fallback: datetime) -> Failure:
    fault = dict(getattr(server, "fault", None) or {})
    latest = actions[0] if actions else None
    failed = bool(latest is not None and latest.message == "Error")
    if fault.get("message"):
        at = (_action_time(latest) if failed else None) or _time(fault.get("created")) or fallback
        code = f" (code {fault['code']})" if fault.get("code") else ""
        return Failure(server.id, at, "server-error", f"{fault['message']}{code}")
    if latest is not None and latest.action == "resetState":
        cause = "status ERROR set by an administrator (os-resetState)"
    elif latest is not None and failed:
        cause = f"status ERROR after a failed {latest.action}"
    else:
        cause = "status ERROR"
    return Failure(server.id, _action_time(latest) or fallback, "server-error", cause)


def shutoff_failure(server: Any, actions: list[Any], fallback: datetime) -> Failure:
    latest = actions[0] if actions else None
    if latest is not None and latest.action == "stop":
        who = f"user {latest.user_id}" if latest.user_id else "a user"
        return Failure(
            server.id, _action_time(latest) or fallback, "server-shutoff", f"stopped through the API by {who}"
        )
    cause = "powered off outside the API (guest shutdown or host failure)"
    return Failure(server.id, fallback, "server-shutoff", cause)


def _action_time(action: Any) -> datetime | None:
    return _time(action.start_time) if action is not None else None


def _time(value: Any) -> datetime | None:
    """Nova's times (ISO 8601, with or without a zone, which is then UTC) as aware datetimes."""
    if value in (None, ""):
        return None
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return stamp.floor("us").to_pydatetime()
