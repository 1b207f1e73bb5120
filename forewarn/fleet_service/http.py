"""The fleet service's HTTP API, on 127.0.0.1 only.

``GET /health`` and ``GET /api/clock`` (fleet now, origin, speed), ``GET /metrics`` (Prometheus text; ``?at=``
an earlier fleet time), ``GET /api/pull?since=&until=`` (what the fleet emitted), ``GET /api/status``,
``GET /api/state`` (the cloud's fleet state, as the persistent simulated cloud writes it) and
``POST /api/cloud/{method}`` (a CloudAdapter call with its keyword arguments as a JSON object; the answer is
``{"result": ...}`` or ``{"error": {"type", "message"}}``).
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from forewarn.clock import parse_time
from forewarn.errors import ConfigError, ForewarnError
from forewarn.fleet_service.service import FleetService
from forewarn.fleet_service.wire import error_to_json, frame_to_json, pulled_to_json

log = logging.getLogger(__name__)
HOST = "127.0.0.1"
CALLS = (
    "list_instances", "list_tasks", "get_instance", "find_tasks", "read_telemetry", "health", "free", "cordon",
    "uncordon", "migrate", "scale", "reserve", "snapshot", "restore", "fail_instance", "repair_instance",
)  # fmt: skip
TICK_SECONDS = 1.0
EXPOSITION = "text/plain; version=0.0.4; charset=utf-8"


def _time(request: Request, name: str) -> datetime | None:
    value = request.query_params.get(name)
    return parse_time(value, field=name) if value else None


def _plain(result: Any) -> Any:
    if hasattr(result, "model_dump"):
        return result.model_dump(mode="json")
    if isinstance(result, list | tuple):
        return [_plain(r) for r in result]
    return result


def _call(service: FleetService, method: str, body: dict[str, Any]) -> Any:
    if method not in CALLS:
        raise ConfigError(f"no cloud call '{method}'", field="method", allowed=CALLS)
    if method == "read_telemetry":
        start, end = parse_time(body["start"], field="start"), parse_time(body["end"], field="end")
        return frame_to_json(service.read_telemetry(list(body["instance_ids"]), start, end))
    if method == "fail_instance" and body.get("at"):
        body = {**body, "at": parse_time(body["at"], field="at")}
    with service.held():
        return _plain(getattr(service.cloud, method)(**body))


def app(service: FleetService) -> Starlette:
    """The API over ``service``."""

    def guarded(handler: Any) -> Any:
        def endpoint(request: Request) -> Response:
            try:
                return handler(request)
            except (ForewarnError, KeyError, TypeError, ValueError) as exc:
                if not isinstance(exc, ForewarnError):
                    exc = ConfigError(f"bad request: {exc}")
                status, body = error_to_json(exc)
                return JSONResponse(body, status_code=status)

        return endpoint

    def health(request: Request) -> Response:
        return JSONResponse({"now": service.now().isoformat()})

    def clock(request: Request) -> Response:
        cfg = service.config
        return JSONResponse(
            {"now": service.now().isoformat(), "start": cfg.origin.isoformat(), "speed": cfg.speed, "size": cfg.size}
        )

    def metrics(request: Request) -> Response:
        return PlainTextResponse(service.metrics(_time(request, "at")), media_type=EXPOSITION)

    def pull(request: Request) -> Response:
        until = _time(request, "until") or service.now()
        return JSONResponse(pulled_to_json(service.pull(_time(request, "since"), until)))

    def status(request: Request) -> Response:
        return JSONResponse(service.status())

    def state(request: Request) -> Response:
        from forewarn.compose import dump_fleet_state

        with service.held():
            return JSONResponse(dump_fleet_state(service.cloud))

    async def cloud(request: Request) -> Response:
        body = await request.json() if (await request.body()) else {}
        method = request.path_params["method"]
        from starlette.concurrency import run_in_threadpool

        def run() -> Response:
            if not isinstance(body, dict):
                raise ConfigError("the body must be a JSON object of keyword arguments")
            return JSONResponse({"result": _call(service, method, body)})

        return await run_in_threadpool(guarded(lambda _: run()), request)

    routes = [
        Route("/health", guarded(health)),
        Route("/api/clock", guarded(clock)),
        Route("/metrics", guarded(metrics)),
        Route("/api/pull", guarded(pull)),
        Route("/api/status", guarded(status)),
        Route("/api/state", guarded(state)),
        Route("/api/cloud/{method}", cloud, methods=["POST"]),
    ]
    return Starlette(routes=routes)


def serve(service: FleetService, port: int) -> None:
    """Serve until SIGINT or SIGTERM, moving the cloud along with fleet time every second; save on the way out."""
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(TICK_SECONDS):
            try:
                service.advance()
            except Exception:  # a tick that fails is logged and tried again next second
                log.exception("the fleet could not advance")

    service.advance()
    ticker = threading.Thread(target=tick, name="fleet-tick", daemon=True)
    ticker.start()
    server = uvicorn.Server(uvicorn.Config(app(service), host=HOST, port=port, log_level="warning", access_log=False))

    def stopping(sig: int, frame: Any) -> None:  # uvicorn re-raises the signal it shut down on: end here instead
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stopping)
    try:
        server.run()
    finally:
        stop.set()
        ticker.join(timeout=5)
        service.save()
