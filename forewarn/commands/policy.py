"""`forewarn policy`: check policy files before they are merged, review a change, explain a decision."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from forewarn.commands.common import console, err, friendly

if TYPE_CHECKING:
    from forewarn.policy.schema import Policy
    from forewarn.policy.whatif import ReplayComparison

app = typer.Typer(
    help="Check policy files, review a change on recorded history, explain a decision.", no_args_is_help=True
)


class Format(StrEnum):
    TEXT = "text"
    GITHUB = "github"


@friendly
def policy_check(
    paths: Annotated[list[Path], typer.Argument(help="Policy files, or folders of *.yaml policies.")],
    output: Annotated[
        Format, typer.Option("--format", help="text, or github: annotations a pull request shows on the line.")
    ] = Format.TEXT,
) -> None:
    """Check policy files: YAML, structure, schema and meaning.

    Prints one line per bad file, as file:line:column, the key path, what is wrong and the allowed values;
    exits 2 if any file is bad.
    """
    from forewarn.commands.guard import one_line
    from forewarn.policy.review import check_paths, github_annotation

    checked, problems = check_paths(paths)
    for problem in problems:
        if output is Format.GITHUB:
            print(github_annotation(problem), flush=True)
        err.print(f"[red]error:[/] {escape(one_line(problem, 1000))}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(2)
    console.print(f"{len(checked)} policy file(s) valid", highlight=False)


app.command("check")(policy_check)
app.command("validate", help="The same as `forewarn policy check`.")(policy_check)


@app.command("diff")
@friendly
def policy_diff(
    old: Annotated[Path, typer.Argument(help="The policy in force.")],
    new: Annotated[Path, typer.Argument(help="The proposed policy.")],
    replay: Annotated[
        Path | None, typer.Option(help="Dataset directory: replay it under both policies and compare.")
    ] = None,
    model: Annotated[Path | None, typer.Option(help="Model registry directory (default FOREWARN_HOME/models).")] = None,
    start: Annotated[str | None, typer.Option(help="Replay from this time (RFC 3339); default the last day.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the comparison as JSON here.")] = None,
) -> None:
    """Say what a policy change changes, field by field; with --replay, what it would have done on history.

    The replay runs the dataset reactively, under OLD and under NEW, with the current model, and prints
    actions by type (planned / run), migrations, failures and interruptions avoided, side by side.
    """
    from forewarn.policy.loader import load_policy
    from forewarn.policy.review import diff_policies

    before, after = load_policy(old), load_policy(new)
    console.print(diff_policies(before, after))
    if replay is None:
        return
    comparison = _replay(before, after, replay, model, start)
    table = Table("", *[run.name for run in comparison.runs], title=comparison.render().splitlines()[0])
    for label, values in comparison.rows():
        table.add_row(label, *values)
    console.print(table)
    if json_out:
        json_out.write_text(json.dumps(comparison.model_dump(mode="json"), indent=2))
        console.print(f"wrote {json_out}")


def _replay(before: Policy, after: Policy, dataset: Path, model: Path | None, start: str | None) -> ReplayComparison:
    from rich.progress import Progress, TaskID

    from forewarn.policy.whatif import replay_policy_change
    from forewarn.settings import get_settings

    settings = get_settings()
    with Progress(console=err, transient=True) as bar:
        jobs: dict[str, TaskID] = {}

        def tick(name: str, done: int, total: int) -> None:
            if name not in jobs:
                jobs[name] = bar.add_task(f"replay {name}", total=total)
            bar.update(jobs[name], completed=done)

        return replay_policy_change(
            before,
            after,
            dataset,
            model_dir=model or settings.models_dir,
            start=start,
            workdir=settings.home / "policy-diff",
            progress=tick,
        )


@app.command("explain")
@friendly
def policy_explain(
    instance: Annotated[str, typer.Argument(help="Instance id.")],
    policy: Annotated[Path | None, typer.Option(help="Policy file (default FOREWARN_POLICY).")] = None,
) -> None:
    """Say why an instance got its band and action in the latest plan: score, band with thresholds and
    dwell, the rule that matched (or why none did), and the guardrail notes that concern it."""
    from forewarn.policy.explain import explain_instance
    from forewarn.service import context

    ctx = context(policy=policy)
    lines = explain_instance(instance, ctx.journal.list(), ctx.cycle_state("bands"), ctx.policy)
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)


@app.command("breaker")
@friendly
def policy_breaker(
    policy: Annotated[Path | None, typer.Option(help="Policy file (default FOREWARN_POLICY).")] = None,
) -> None:
    """Show whether the circuit breaker is open (plans are shadow plans) and why."""
    from forewarn.service import context

    ctx = context(policy=policy)
    console.print(ctx.guard_state().breaker.describe(), highlight=False, markup=False, soft_wrap=True)


@app.command("reset-breaker")
@friendly
def policy_reset_breaker(
    policy: Annotated[Path | None, typer.Option(help="Policy file (default FOREWARN_POLICY).")] = None,
) -> None:
    """Close the circuit breaker now: the next cycle's plans run again; its baseline starts afresh."""
    from forewarn.service import context

    ctx = context(policy=policy)
    was_open = ctx.guard_state().breaker.open
    state = ctx.reset_breaker()
    console.print(
        ("reset: " if was_open else "was not open; reset anyway: ") + state.breaker.describe(),
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
