"""The fleet service seen from another process: its API, its clock, and the ``fleet`` source of the ingest flow.

Requests time out; a connection that cannot be made is tried again (tenacity, a few times with backoff) and then
raises :class:`TransientAdapterError`; an error the service answers with is raised as the type it names.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import httpx
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from forewarn.errors import ConfigError, TransientAdapterError
from forewarn.fleet_service.config import DEFAULT_PORT
from forewarn.fleet_service.wire import error_from_json, pulled_from_json
from forewarn.telemetry.sources import Pulled

DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
CONNECTION_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)
FRAMES = ("telemetry", "errors", "failures", "workloads", "instances")
"""What a fleet pull can land (``FleetSpec.frames``); failures bring their recoveries."""


class FleetApi:
    """HTTP calls to a fleet service at ``url``."""

    def __init__(self, url: str = DEFAULT_URL, *, timeout: float = 10.0, attempts: int = 3) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.attempts = attempts

    def get(self, path: str, **params: Any) -> Any:
        return self._call("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._call("POST", path, json=body)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        sender = retry(
            retry=retry_if_exception_type(CONNECTION_ERRORS),
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=0.2, max=2.0),
            reraise=True,
        )(self._send)
        try:
            response = sender(method, path, **kwargs)
        except CONNECTION_ERRORS as exc:
            raise TransientAdapterError(f"fleet service {self.url} cannot be reached: {exc}") from None
        except httpx.TimeoutException as exc:
            raise TransientAdapterError(f"fleet service {self.url} timed out on {path}: {exc}") from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            raise error_from_json(body, response.status_code)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with httpx.Client(timeout=self.timeout) as client:
            return client.request(method, self.url + path, **kwargs)


class FleetClock:
    """The fleet's clock (``GET /api/clock``): the cycles' time when the fleet runs faster than the wall."""

    def __init__(self, url: str = DEFAULT_URL) -> None:
        self.api = FleetApi(url)

    def now(self) -> datetime:
        return datetime.fromisoformat(self.api.get("/api/clock")["now"])


class FleetSource:
    """The ``fleet`` source: ``GET /api/pull`` in windows of at most ``max_window``.

    The first pull (no watermark) starts at the fleet's origin and brings the instances. Failures come as the
    simulated source's do; one still down comes without its recovery, which a later pull brings. ``frames``
    names what is landed (default all of :data:`FRAMES`); failures bring their recoveries with them.
    """

    kind = "fleet"

    def __init__(
        self, url: str = DEFAULT_URL, *, name: str | None = None, max_window: timedelta = timedelta(days=1),
        timeout: float = 30.0, attempts: int = 3, frames: Collection[str] = FRAMES,
    ) -> None:  # fmt: skip
        from forewarn.sources.prometheus import safe_name

        self.api = FleetApi(url, timeout=timeout, attempts=attempts)
        self.name = name or f"fleet:{safe_name(url)}"
        self.max_window = max_window
        unknown = sorted(set(frames) - set(FRAMES))
        if unknown:
            raise ConfigError(f"unknown frame(s) {', '.join(unknown)}", field="frames", allowed=list(FRAMES))
        self.frames = frozenset(frames)

    def pull(self, since: datetime | None, until: datetime) -> Pulled:
        start = since or datetime.fromisoformat(self.api.get("/api/clock")["start"])
        end = min(until, start + self.max_window)
        data = self.api.get("/api/pull", since=since.isoformat() if since is not None else None, until=end.isoformat())
        pulled = pulled_from_json(data)
        left_out: dict[str, Any] = {name: None for name in FRAMES[:4] if name not in self.frames}
        if "failures" in left_out:
            left_out["recoveries"] = None
        if "instances" not in self.frames:
            left_out["instances"] = []
        return replace(pulled, **left_out)
