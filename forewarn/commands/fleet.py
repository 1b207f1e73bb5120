"""``forewarn fleet``: run a simulated fleet as a service, and ask one how it is."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from forewarn.commands.common import console, friendly

app = typer.Typer(
    help="A simulated fleet that keeps running: its metrics, its history and its cloud API on 127.0.0.1.",
    no_args_is_help=True,
)


@app.command("serve")
@friendly
def serve(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 9108,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where the fleet lives (its clock, cloud, actions in force and cached days); "
            "default FOREWARN_HOME/fleet. Start again with the same one to continue the same fleet."
        ),
    ] = None,
    size: Annotated[int | None, typer.Option(min=1, help="Instances (first start only; default 50).")] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            min=0, help="Seed (first start only; default 0): the same seed, start and options give the same fleet."
        ),
    ] = None,
    scenario: Annotated[
        str | None, typer.Option(help="default, bursty or sudden, as `forewarn simulate` (first start only).")
    ] = None,
    failure_rate: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=24,
            help="Mean failures per instance per simulated day (default 0.1; first start "
            "only). Raise it, e.g. to 4 with --speed 60, to see a prediction and a migration within minutes.",
        ),
    ] = None,
    speed: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            help="Fleet seconds per wall second (default 1, or the saved speed). Fleet time is "
            "saved as an anchor, so a restart continues the same timeline; set FOREWARN_CLOCK=fleet for "
            "the flows when it is not 1.",
        ),
    ] = None,
    history_days: Annotated[
        float, typer.Option(min=0, help="Days of history behind the first start, so a model can be trained at once.")
    ] = 3.0,
    start: Annotated[
        str | None,
        typer.Option(help="Fleet time at the first start (RFC 3339); default the wall clock. For reproducible runs."),
    ] = None,
) -> None:
    """Run the simulator as a fleet that keeps running, until Ctrl-C or SIGTERM (its state is saved).

    On first start the fleet's timeline begins --history-days before now; each simulated day is simulated
    once (seeded from --seed and the day) and cached. As fleet time passes, failures strike instances (their
    tasks are interrupted), repairs bring them back, tasks arrive and end. It serves, on 127.0.0.1 only:
    /metrics (node_exporter names, one instance label each), /api/pull (what the fleet emitted, for the `fleet`
    source of FOREWARN_SOURCES), /api/clock, and /api/cloud/METHOD (the simulated cloud, for
    FOREWARN_FLEET_URL). Every action taken there stays in force across restarts.
    """
    from forewarn.clock import parse_time
    from forewarn.fleet_service.config import FleetConfig, new_config
    from forewarn.fleet_service.http import HOST
    from forewarn.fleet_service.http import serve as run
    from forewarn.fleet_service.service import open_or_create
    from forewarn.settings import get_settings

    where = state_dir or get_settings().home / "fleet"
    given = {"size": size, "seed": seed, "scenario": scenario, "failure_rate_per_day": failure_rate}
    first = parse_time(start, field="--start") if start else None

    def make() -> FleetConfig:
        return new_config(
            size=size if size is not None else 50,
            seed=seed if seed is not None else 0,
            scenario=scenario or "default",
            failure_rate_per_day=failure_rate if failure_rate is not None else 0.1,
            step_minutes=5,
            history_days=history_days,
            speed=speed or 1.0,
            start=first,
        )

    with console.status(f"preparing the fleet in {where} (simulating its history the first time)"):
        service = open_or_create(where, given, speed, make)
        service.advance()
    cfg = service.config
    console.print(
        f"fleet of {cfg.size} instances (seed {cfg.seed}, {cfg.scenario}, {cfg.failure_rate_per_day:g} failures "
        f"per instance-day) at fleet time [bold]{service.now():%Y-%m-%d %H:%M:%S}[/] x{cfg.speed:g}\n"
        f"serving on [bold]http://{HOST}:{port}[/]  (metrics /metrics, API /api/...)\n"
        f"state in [bold]{where}[/]; stop with Ctrl-C or SIGTERM"
    )
    run(service, port)
    console.print(f"fleet stopped at fleet time {service.now():%Y-%m-%d %H:%M:%S}; state saved in {where}")


@app.command("status")
@friendly
def status(url: Annotated[str, typer.Option(help="The fleet service.")] = "http://127.0.0.1:9108") -> None:
    """Fleet now, size, failed instances and the actions in force (cordons, buffers, scale-backs)."""
    from forewarn.fleet_service.client import FleetApi

    data = FleetApi(url, attempts=1).get("/api/status")
    console.print(
        f"fleet at {url}: now [bold]{data['now']}[/] (x{data['speed']:g}, since {data['start']}), "
        f"{data['size']} instances, {data['tasks']} tasks"
    )
    failed = data["failed"]
    console.print(f"failed: {', '.join(f'{k} (since {v})' for k, v in failed.items()) or 'none'}")
    console.print(f"cordoned: {', '.join(data['cordoned']) or 'none'}")
    console.print(f"buffers: {', '.join(f'{k} {v:.0%}' for k, v in data['reserved'].items()) or 'none'}")
    console.print(f"scaled: {', '.join(f'{k} x{v:g}' for k, v in data['scaled'].items()) or 'none'}")
    console.print(
        f"snapshots {data['snapshots']}, actions taken {data['keys']}, tasks interrupted {data['interrupted']}"
    )
