"""The ``forewarn`` command line: run any flow on demand, steer plans, check policies and datasets.

Every failure of every command is one line (forewarn/commands/guard.py); exit code 2 means bad input,
1 a failed run; FOREWARN_DEBUG=1 shows the traceback instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from forewarn.commands import backtest, fleet, ingest, model, plan, policy, replay, serve
from forewarn.commands.common import console, friendly
from forewarn.commands.guard import GuardedGroup
from forewarn.errors import InputError

HELP = (
    "Forewarn predicts which virtual machines will fail and moves work off them before they do.\n\n"
    "A typical session: [bold]forewarn simulate[/] writes a dataset, [bold]forewarn run materialize[/] and "
    "[bold]forewarn run train[/] fit the model, [bold]forewarn run score-and-allocate[/] scores the fleet and "
    "plans (dry-run by default), and [bold]forewarn plan approve ID[/] lets a recommended plan run. "
    "[bold]forewarn demo[/] does all of it on a simulated fleet and compares the outcome with a reactive run.\n\n"
    "Settings come from FOREWARN_* variables: FOREWARN_HOME, FOREWARN_DATASET, FOREWARN_DATABASE_URL, "
    "FOREWARN_POLICY, FOREWARN_CLOUD, FOREWARN_DRY_RUN."
)

# GuardedGroup: whatever a command raises is one line and exit 2 (bad input) or 1 (failed run).
app = typer.Typer(
    cls=GuardedGroup, help=HELP, no_args_is_help=True, rich_markup_mode="rich", pretty_exceptions_enable=False
)
dataset_app = typer.Typer(help="Check datasets in the Forewarn dataset format.", no_args_is_help=True)
bench_app = typer.Typer(help="Speed and memory figures, each beside its floor.", no_args_is_help=True)
app.add_typer(plan.app, name="plan")
app.add_typer(model.app, name="model")
app.add_typer(ingest.app, name="ingest")
app.add_typer(fleet.app, name="fleet")
app.command("backtest")(backtest.command)
app.command("replay")(replay.command)
app.add_typer(policy.app, name="policy")
app.add_typer(serve.app, name="serve")
app.add_typer(dataset_app, name="dataset")
app.add_typer(bench_app, name="bench")


@app.command()
@friendly
def simulate(
    out: Annotated[Path, typer.Option(help="Directory to write the dataset into.")] = Path(".forewarn/dataset"),
    instances: Annotated[int, typer.Option(min=1, help="Number of instances in the fleet.")] = 200,
    days: Annotated[float, typer.Option(min=0.1, help="Days of telemetry to simulate.")] = 3.0,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes the same files.")] = 0,
    step_minutes: Annotated[int, typer.Option(min=1, help="Telemetry step in minutes.")] = 5,
    scenario: Annotated[
        str,
        typer.Option(
            help="default, bursty (correlated failures shaped on the Alpine/Campaign disk records) "
            "or sudden (90% of failures without warning)."
        ),
    ] = "default",
) -> None:
    """Simulate a fleet and write it in the dataset format (telemetry, failures, errors, workloads).

    Load shapes come from real PlanetLab VM traces, failure inter-arrival times from a Weibull fitted to
    the LANL records; some failures announce themselves in telemetry, some are sudden.
    """
    from forewarn.sim import SimConfig
    from forewarn.sim.scenarios import write_scenario

    config = SimConfig(instances=instances, days=days, seed=seed, step_minutes=step_minutes)
    with console.status(f"simulating {instances} instances over {days:g} days"):
        path = write_scenario(scenario, config, out)
    console.print(f"wrote dataset to [bold]{path}[/]")


@dataset_app.command("check")
@friendly
def dataset_check(path: Annotated[Path, typer.Argument(help="Dataset directory.")]) -> None:
    """Read a dataset directory and report the first problem, naming file, line and column."""
    from forewarn.dataset import read_dataset

    ds = read_dataset(path)
    console.print(
        f"{path}: {len(ds.telemetry):,} telemetry rows for {len(ds.instance_ids):,} instances "
        f"({', '.join(ds.metrics)}), {len(ds.failures):,} failures, from {ds.start} to {ds.end}"
    )


@app.command("run")
@friendly
def run_flow(
    flow: Annotated[
        str,
        typer.Argument(
            help="materialize, train, score-and-allocate, or the Dask-sharded materialize-scaled and "
            "score-and-allocate-scaled."
        ),
    ],
    dataset: Annotated[Path | None, typer.Option(help="Dataset directory (default FOREWARN_DATASET).")] = None,
    dry_run: Annotated[bool, typer.Option(help="Plan and journal, but change nothing in the cloud.")] = True,
    at: Annotated[
        str | None,
        typer.Option(
            help="Run as of this time (RFC 3339, e.g. 2024-05-01T12:00:00Z) on recorded data: materialize "
            "features up to it, train on data before it, score and plan at it. Default: the wall clock."
        ),
    ] = None,
) -> None:
    """Run one of the flows the Prefect deployments run, now, in this process.

    The cycle's time comes from the wall clock, or from --at on recorded data; never from a file's last row.
    """
    from forewarn.clock import parse_time

    if at is not None:
        at = parse_time(at).isoformat()  # one clear line for a bad time, before Prefect starts
    from forewarn.settings import get_settings

    get_settings()  # and for a bad FOREWARN_* setting
    from flows import FLOWS

    if flow not in FLOWS:
        raise InputError(f"unknown flow '{flow}'", field="flow", allowed=sorted(FLOWS))
    with console.status(f"running {flow} (the first run in a fresh Prefect home takes ~10 s to start)"):
        result = FLOWS[flow](dataset=str(dataset) if dataset else None, dry_run=dry_run, at=at)
    console.print(result)


@app.command()
@friendly
def demo(
    out: Annotated[Path, typer.Option(help="Directory for the dataset, state and report.")] = Path("out/demo"),
    instances: Annotated[int, typer.Option(min=10, help="Instances in the simulated fleet.")] = 200,
    days: Annotated[float, typer.Option(min=2.0, help="Days simulated; the last one is replayed.")] = 4.0,
    seed: Annotated[int, typer.Option(help="Random seed; another seed gives other numbers.")] = 7,
) -> None:
    """Simulate a fleet, train on all but the last day, then replay the last day in closed loop.

    Prints failures, how many were predicted in time, migrations made, and tasks interrupted with
    Forewarn against a reactive run on the same seed; writes a report with plots.
    """
    from forewarn.demo import run_demo

    run_demo(out=out, instances=instances, days=days, seed=seed, console=console)


@app.command("import")
@friendly
def import_data(
    kind: Annotated[str, typer.Argument(help="backblaze, lanl or fta.")],
    path: Annotated[Path, typer.Argument(help="The published file or folder.")],
    out: Annotated[Path, typer.Option(help="Directory to write the dataset into.")],
) -> None:
    """Import public failure data into the dataset format."""
    from forewarn.telemetry.importers import run_import

    console.print(run_import(kind, path, out))


@bench_app.command("allocate")
@friendly
def bench_allocate(
    instances: int = 10_000,
    tasks: int = 100_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
) -> None:
    """Time one allocation pass beside its floor (sorting the scores plus one pass over the tasks)."""
    from bench.allocate import run

    result = run(instances, tasks)
    console.print_json(data=result) if as_json else console.print(result)


@bench_app.command("cycle")
@friendly
def bench_cycle(
    instances: Annotated[int, typer.Option(min=10, help="Instances in the fleet and the Feast store.")] = 10_000,
    dask_workers: Annotated[
        int, typer.Option(min=0, help="Read and score shard by shard on a LocalCluster of this many workers.")
    ] = 0,
    shard_size: Annotated[
        int | None, typer.Option(min=1, help="Instances per shard (default: FOREWARN_SHARD_SIZE).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
) -> None:
    """Time the production cycle (online read, score, policy, allocate, guardrails, journal, apply, publish)
    over a Feast store filled with N instances, each stage beside its floor."""
    from bench.cycle import run

    result = run(instances, dask_workers=dask_workers, shard_size=shard_size)
    console.print_json(data=result) if as_json else console.print(result)


@app.callback()
def _prepare() -> None:
    # Prefect creates its home directory but not the parents of it.
    home = os.environ.get("PREFECT_HOME")
    if home:
        Path(home).expanduser().mkdir(parents=True, exist_ok=True)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
