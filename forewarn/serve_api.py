"""The calls ``forewarn serve`` makes to its Prefect server's REST API (``URL/api``), with the standard library.

missed run: a scheduled run whose time came while no worker was there to take it (serve was stopped, or the
    first model was training); a worker would otherwise start all of them at once.
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from datetime import UTC, datetime
from typing import Any

from forewarn.errors import ForewarnError


class ServeError(ForewarnError):
    """A part of ``forewarn serve`` did not start or stop; the message names the log to read."""


def post(url: str, body: object, method: str = "POST") -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method=method
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def deployment(url: str, name: str) -> dict[str, Any]:
    """The deployment ``FLOW/NAME``; a :class:`ServeError` when the server does not have it."""
    try:
        with urllib.request.urlopen(f"{url}/api/deployments/name/{name}", timeout=30) as response:
            found: dict[str, Any] = json.loads(response.read())
    except OSError as exc:
        raise ServeError(f"no deployment {name} on {url} ({exc}); read the deploy log") from None
    return found


def set_parameters(url: str, name: str, parameters: dict[str, object]) -> None:
    """Merge ``parameters`` into a deployment's defaults (what the UI's "Edit" does)."""
    found = deployment(url, name)
    merged = {**(found.get("parameters") or {}), **parameters}
    post(f"{url}/api/deployments/{found['id']}", {"parameters": merged}, method="PATCH")


def set_interval(url: str, name: str, seconds: float, *, replace_cron: bool = False) -> None:
    """Set a deployment's interval schedule to ``seconds``; the server drops the runs it had scheduled ahead.
    With ``replace_cron``, a cron schedule becomes that interval too (a daily cron on a fleet's faster clock)."""
    found = deployment(url, name)
    schedules = found.get("schedules") or []
    intervals = [s for s in schedules if replace_cron or "interval" in (s.get("schedule") or {})]
    if not intervals:
        raise ServeError(f"FOREWARN_SERVE_INTERVALS names {name}, which has no interval schedule in prefect.yaml")
    for schedule in intervals:
        kept = {k: v for k, v in (schedule["schedule"] or {}).items() if k in {"timezone", "anchor_date"}}
        body = {"schedule": {**kept, "interval": seconds}}
        post(f"{url}/api/deployments/{found['id']}/schedules/{schedule['id']}", body, method="PATCH")


def _set_cancelled(url: str, runs: list[dict[str, Any]], message: str) -> None:
    state = {"type": "CANCELLED", "name": "Cancelled", "message": message}
    for run in runs:
        post(f"{url}/api/flow_runs/{run['id']}/set_state", {"state": state, "force": True})


def cancel_live_runs(url: str) -> None:
    """Mark the flow runs left RUNNING, PENDING or CANCELLING as CANCELLED, so the UI does not show them live."""
    body = {"flow_runs": {"state": {"type": {"any_": ["RUNNING", "PENDING", "CANCELLING"]}}}}
    with contextlib.suppress(OSError, ValueError, KeyError):  # best effort: the server may already be gone
        _set_cancelled(url, post(f"{url}/api/flow_runs/filter", body) or [], "stopped by forewarn serve stop")


def skip_missed_runs(url: str, now: datetime | None = None) -> int:
    """Mark the missed runs of every deployment CANCELLED; how many there were.

    Each cycle reads the state it acts on, so a missed cycle is not owed: the next scheduled one does its work.
    """
    now = now or datetime.now(UTC)
    runs = {
        "state": {"type": {"any_": ["SCHEDULED"]}},
        "expected_start_time": {"before_": now.isoformat()},
        "deployment_id": {"is_null_": False},
    }
    missed: set[str] = set()
    while batch := [r for r in post(f"{url}/api/flow_runs/filter", {"flow_runs": runs, "limit": 200}) or []]:
        if missed.issuperset(r["id"] for r in batch):
            break  # the server kept them scheduled: leave them to the worker rather than loop
        _set_cancelled(url, batch, "skipped by forewarn serve start: its time came while no worker ran")
        missed |= {r["id"] for r in batch}
    return len(missed)
