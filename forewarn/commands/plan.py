"""`forewarn plan`: read and steer the plans in the journal."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from forewarn.commands.common import console, friendly
from forewarn.errors import InputError
from forewarn.schemas import PlanState


def _state(name: str | None) -> PlanState | None:
    if name is None:
        return None
    try:
        return PlanState(name.upper())
    except ValueError:
        raise InputError(
            f"unknown plan state '{name}'", field="--state", allowed=[s.value for s in PlanState]
        ) from None


app = typer.Typer(help="Read and steer the plans in the journal.", no_args_is_help=True)


@app.command("list")
@friendly
def plan_list(state: Annotated[str | None, typer.Option(help="Only plans in this state.")] = None) -> None:
    """List the plans in the journal, newest first."""
    from forewarn.service import journal

    table = Table("plan", "created", "policy", "mode", "state", "actions")
    for plan in journal().list(state=_state(state)):
        table.add_row(
            plan.plan_id,
            f"{plan.created_at:%Y-%m-%d %H:%M}",
            plan.policy,
            plan.mode,
            plan.state,
            str(len(plan.actions)),
        )
    console.print(table)


@app.command("show")
@friendly
def plan_show(plan_id: str) -> None:
    """Show a plan: each action with its reason (score, top features, rule, budget used)."""
    from forewarn.service import journal, plan_table

    console.print(plan_table(journal().get(plan_id)))


@app.command("approve")
@friendly
def plan_approve(
    plan_id: str,
    dry_run: Annotated[bool, typer.Option(help="Approve and run in dry-run (nothing changes in the cloud).")] = True,
) -> None:
    """Approve a RECOMMENDED plan and run it through the cloud adapter."""
    from forewarn.service import approve_and_run

    plan = approve_and_run(plan_id, dry_run=dry_run)
    console.print(f"{plan.plan_id}: {plan.state}")


@app.command("cancel")
@friendly
def plan_cancel(plan_id: str) -> None:
    """Cancel a plan that has not run yet."""
    from forewarn.service import journal

    journal().cancel(plan_id)
    console.print(f"{plan_id}: CANCELLED")
