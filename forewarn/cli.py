"""The ``forewarn`` command line: run any flow on demand, steer plans, check policies and datasets.

Every command catches Forewarn's own errors and prints them as one line; exit code 2 means bad input,
1 a failed run.
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from forewarn.errors import ForewarnError, InputError
from forewarn.schemas import PlanState

F = TypeVar("F", bound=Callable[..., Any])

# Libraries' deprecation notices are for their developers, not for an operator reading a run.
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=FutureWarning)

console = Console()
err = Console(stderr=True)

HELP = """Forewarn predicts which virtual machines will fail and moves work off them before they do.

A typical session: [bold]forewarn simulate[/] writes a dataset, [bold]forewarn run train[/] fits the model,
[bold]forewarn run score-and-allocate[/] scores the fleet and plans (dry-run by default), and
[bold]forewarn plan approve ID[/] lets a recommended plan run. [bold]forewarn demo[/] does all of it on a
simulated fleet and compares the outcome with a reactive run. Settings come from FOREWARN_* variables
(FOREWARN_HOME, FOREWARN_DATASET, FOREWARN_DATABASE_URL, FOREWARN_POLICY, FOREWARN_CLOUD, FOREWARN_DRY_RUN).
"""

app = typer.Typer(help=HELP, no_args_is_help=True, rich_markup_mode="rich", pretty_exceptions_enable=False)
plan_app = typer.Typer(help="Read and steer the plans in the journal.", no_args_is_help=True)
policy_app = typer.Typer(help="Check policy files before they are merged.", no_args_is_help=True)
dataset_app = typer.Typer(help="Check datasets in the Forewarn dataset format.", no_args_is_help=True)
bench_app = typer.Typer(help="Speed and memory figures, each beside its floor.", no_args_is_help=True)
app.add_typer(plan_app, name="plan")
app.add_typer(policy_app, name="policy")
app.add_typer(dataset_app, name="dataset")
app.add_typer(bench_app, name="bench")


def friendly(func: F) -> F:
    """Print Forewarn's own errors as one line and exit 2 (bad input) or 1 (a failed run)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            err.print(f"[red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except ForewarnError as exc:
            err.print(f"[red]failed:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@friendly
def simulate(
    out: Annotated[Path, typer.Option(help="Directory to write the dataset into.")] = Path(".forewarn/dataset"),
    instances: Annotated[int, typer.Option(min=1, help="Number of instances in the fleet.")] = 200,
    days: Annotated[float, typer.Option(min=0.1, help="Days of telemetry to simulate.")] = 3.0,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes the same files.")] = 0,
    step_minutes: Annotated[int, typer.Option(min=1, help="Telemetry step in minutes.")] = 5,
) -> None:
    """Simulate a fleet and write it in the dataset format (telemetry, failures, errors, workloads).

    Load shapes come from real PlanetLab VM traces, failure inter-arrival times from a Weibull fitted to
    the LANL records; some failures announce themselves in telemetry, some are sudden.
    """
    from forewarn.sim import SimConfig, write

    config = SimConfig(instances=instances, days=days, seed=seed, step_minutes=step_minutes)
    with console.status(f"simulating {instances} instances over {days:g} days"):
        path = write(config, out)
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
    flow: Annotated[str, typer.Argument(help="materialize, train or score-and-allocate.")],
    dataset: Annotated[Path | None, typer.Option(help="Dataset directory (default FOREWARN_DATASET).")] = None,
    dry_run: Annotated[bool, typer.Option(help="Plan and journal, but change nothing in the cloud.")] = True,
) -> None:
    """Run one of the flows the Prefect deployments run, now, in this process."""
    from flows import FLOWS

    if flow not in FLOWS:
        raise InputError(f"unknown flow '{flow}'", field="flow", allowed=sorted(FLOWS))
    result = FLOWS[flow](dataset=str(dataset) if dataset else None, dry_run=dry_run)
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


@app.command()
@friendly
def replay(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory.")],
    model: Annotated[Path | None, typer.Option(help="Model registry directory (default FOREWARN_HOME/models).")] = None,
    policy: Annotated[Path | None, typer.Option(help="Policy file (default policies/default.yaml).")] = None,
    start: Annotated[str | None, typer.Option(help="Replay from this time (RFC 3339); default the last day.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the results as JSON here.")] = None,
) -> None:
    """Replay a dataset in simulated time with Forewarn acting, against a reactive run (no prediction)."""
    from forewarn.demo import run_replay

    results = run_replay(dataset=dataset, model_dir=model, policy=policy, start=start, console=console)
    if json_out:
        json_out.write_text(json.dumps(results, indent=2, default=str))
        console.print(f"wrote {json_out}")


@plan_app.command("list")
@friendly
def plan_list(state: Annotated[str | None, typer.Option(help="Only plans in this state.")] = None) -> None:
    """List the plans in the journal, newest first."""
    from forewarn.service import journal

    table = Table("plan", "created", "policy", "mode", "state", "actions")
    for plan in journal().list(state=PlanState(state.upper()) if state else None):
        table.add_row(
            plan.plan_id,
            f"{plan.created_at:%Y-%m-%d %H:%M}",
            plan.policy,
            plan.mode,
            plan.state,
            str(len(plan.actions)),
        )
    console.print(table)


@plan_app.command("show")
@friendly
def plan_show(plan_id: str) -> None:
    """Show a plan: each action with its reason (score, top features, rule, budget used)."""
    from forewarn.service import journal, plan_table

    console.print(plan_table(journal().get(plan_id)))


@plan_app.command("approve")
@friendly
def plan_approve(
    plan_id: str,
    dry_run: Annotated[bool, typer.Option(help="Approve and run in dry-run (nothing changes in the cloud).")] = True,
) -> None:
    """Approve a RECOMMENDED plan and run it through the cloud adapter."""
    from forewarn.service import approve_and_run

    plan = approve_and_run(plan_id, dry_run=dry_run)
    console.print(f"{plan.plan_id}: {plan.state}")


@plan_app.command("cancel")
@friendly
def plan_cancel(plan_id: str) -> None:
    """Cancel a plan that has not run yet."""
    from forewarn.service import journal

    journal().cancel(plan_id)
    console.print(f"{plan_id}: CANCELLED")


@policy_app.command("validate")
@friendly
def policy_validate(paths: Annotated[list[Path], typer.Argument(help="Policy files to check.")]) -> None:
    """Check policy files: YAML, structure, schema and meaning. Exit 2 naming file, line and field."""
    from forewarn.policy.review import validate_paths

    problems = validate_paths(paths)
    for problem in problems:
        err.print(f"[red]error:[/] {problem}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(2)
    console.print(f"{len(paths)} policy file(s) valid")


@policy_app.command("diff")
@friendly
def policy_diff(old: Path, new: Path) -> None:
    """Say what a policy change changes, field by field, for a pull-request review."""
    from forewarn.policy.loader import load_policy
    from forewarn.policy.review import diff_policies

    console.print(diff_policies(load_policy(old), load_policy(new), scores_frame=None))


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


def main() -> None:
    app()
