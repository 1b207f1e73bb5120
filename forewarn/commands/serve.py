"""`forewarn serve start|stop|status`: the fleet, Prefect server, deployments and worker of `make serve`."""

from __future__ import annotations

import typer

from forewarn.commands.common import console, friendly

app = typer.Typer(
    help="Run Forewarn live on this machine against the simulated fleet service (`make serve`). "
    "Ports and the state directory come from FOREWARN_PREFECT_PORT, FOREWARN_FLEET_PORT, FOREWARN_SERVE_STATE "
    "and the other variables listed in docs/operations.md.",
    no_args_is_help=True,
)


def _say(line: str) -> None:
    console.print(line, highlight=False, markup=False, soft_wrap=True)


@app.command("start")
@friendly
def start() -> None:
    """Start the fleet, Prefect server, deployments, a first model when there is none, and a worker."""
    from forewarn.serve import ServeSettings
    from forewarn.serve import start as serve_start

    serve_start(ServeSettings(), say=_say)


@app.command("stop")
@friendly
def stop() -> None:
    """Stop the worker (SIGINT), its flow runs, then the rest; SIGKILL by process group after a bounded wait."""
    from forewarn.serve import ServeError, ServeSettings
    from forewarn.serve import stop as serve_stop

    cfg = ServeSettings()
    left = serve_stop(cfg, say=_say)
    if left:
        raise ServeError(f"processes of {cfg.state} still run after stop: {sorted(left)}")
    _say(f"nothing of {cfg.state} is running")


@app.command("status")
@friendly
def status() -> None:
    """Which of the processes serve started still run; exit code 1 when none does."""
    from forewarn.serve import ServeSettings
    from forewarn.serve import status as serve_status

    lines, running = serve_status(ServeSettings())
    for line in lines:
        _say(line)
    if not running:
        raise typer.Exit(1)
