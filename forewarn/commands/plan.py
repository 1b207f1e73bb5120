"""`forewarn plan`: read and steer the plans in the journal.

The journal is the database of FOREWARN_DATABASE_URL (default: SQLite under FOREWARN_HOME).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from forewarn.commands.common import console, friendly
from forewarn.errors import InputError

if TYPE_CHECKING:
    from forewarn.execution.journal import Journal
    from forewarn.schemas import Action, ActionReason, Plan, PlanState

ENDED_BADLY = {"ROLLED_BACK", "FAILED"}


def _journal() -> Journal:
    """The journal alone: no feature store, model registry or cloud is imported to read or steer plans."""
    from forewarn.execution.journal import open_journal

    return open_journal()


def _state(name: str | None) -> PlanState | None:
    from forewarn.schemas import PlanState

    if name is None:
        return None
    try:
        return PlanState(name.upper())
    except ValueError:
        raise InputError(
            f"unknown plan state '{name}'", field="--state", allowed=[s.value for s in PlanState]
        ) from None


def outcomes(plan: Plan) -> str:
    """How the plan's actions ended, e.g. ``3 succeeded, 1 failed``."""
    counts = Counter(a.state.value for a in plan.actions)
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no actions"


def reason_line(reason: ActionReason) -> str:
    """The why of an action: score and band, the rule, the top features and the budget it used."""
    parts = []
    if reason.probability is not None:
        band = f" ({reason.band.value})" if reason.band else ""
        parts.append(f"score {reason.probability:.3f}{band}")
    parts.append(f"rule {reason.rule or '-'}")
    if reason.top_features:
        features = ", ".join(f"{f.feature} {f.contribution:+.2f}" for f in reason.top_features)
        parts.append(f"top features {features}")
    if reason.budget_used:
        parts.append("budget used " + ", ".join(f"{k} {v:g}" for k, v in sorted(reason.budget_used.items())))
    if reason.note:
        parts.append(reason.note)
    return "; ".join(parts)


def outcome_line(action: Action) -> str:
    """The journalled outcome: state, why (for skipped, failed, reverted), and what a revert restores."""
    from forewarn.execution.undo import undo_of

    text = action.state.value
    if action.error:
        text += f": {action.error}"
    undo = undo_of(action)
    if undo:
        text += " (before it: " + ", ".join(f"{k} {v}" for k, v in sorted(undo.items())) + ")"
    return text


def action_lines(number: int, action: Action) -> list[str]:
    from forewarn.execution.undo import own_params

    target = f" -> {action.target_instance_id}" if action.target_instance_id else ""
    tasks = f" tasks {', '.join(action.task_ids)}" if action.task_ids else ""
    params = own_params(action)
    shown = f" {params}" if params else ""
    return [
        f"{number}. {action.action_id}  {action.type.value} {action.instance_id}{target}{tasks}{shown}",
        f"   reason: {reason_line(action.reason)}",
        f"   outcome: {outcome_line(action)}",
    ]


def plan_text(plan: Plan) -> list[str]:
    """Every line ``forewarn plan show`` prints."""
    model = f", model {plan.model_version}" if plan.model_version else ""
    lines = [
        f"plan {plan.plan_id}: {plan.state.value}",
        f"policy {plan.policy} ({plan.mode.value}){model}, created {plan.created_at:%Y-%m-%d %H:%M:%S} UTC",
        f"actions: {outcomes(plan)}",
    ]
    for number, action in enumerate(plan.actions, start=1):
        lines += action_lines(number, action)
    if plan.notes:
        lines += ["notes:", *[f"  - {note}" for note in plan.notes]]
    return lines


app = typer.Typer(help="Read and steer the plans in the journal.", no_args_is_help=True)


@app.command("list")
@friendly
def plan_list(state: Annotated[str | None, typer.Option(help="Only plans in this state.")] = None) -> None:
    """List the plans in the journal, newest first."""
    plans = list(reversed(_journal().list(state=_state(state))))
    if not plans:
        console.print("no plans" + (f" in state {state.upper()}" if state else ""))
        return
    table = Table("plan", "created", "policy", "mode", "state", "actions")
    table.columns[0].no_wrap = True
    for plan in plans:
        table.add_row(
            plan.plan_id,
            f"{plan.created_at:%Y-%m-%d %H:%M}",
            plan.policy,
            plan.mode.value,
            plan.state.value,
            outcomes(plan),
        )
    console.print(table)


@app.command("show")
@friendly
def plan_show(plan_id: str) -> None:
    """Show a plan: each action with its reason (score, top features, rule, budget used) and its outcome."""
    for line in plan_text(_journal().get(plan_id)):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command("approve")
@friendly
def plan_approve(
    plan_id: str,
    dry_run: Annotated[
        bool | None,
        typer.Option("--dry-run/--no-dry-run", help="Change nothing in the cloud; default FOREWARN_DRY_RUN (true)."),
    ] = None,
) -> None:
    """Approve a RECOMMENDED plan and run it through the cloud adapter; exit 1 if it rolls back or fails."""
    from forewarn.compose import approve_and_run
    from forewarn.settings import get_settings

    plan = approve_and_run(plan_id, dry_run=get_settings().dry_run if dry_run is None else dry_run)
    console.print(f"{plan.plan_id}: {plan.state.value} ({outcomes(plan)})", markup=False, highlight=False)
    if plan.notes:
        console.print(plan.notes[-1], markup=False, highlight=False, soft_wrap=True)
    if plan.state.value in ENDED_BADLY:
        raise typer.Exit(1)


@app.command("cancel")
@friendly
def plan_cancel(plan_id: str) -> None:
    """Cancel a plan that has not run yet (RECOMMENDED or APPROVED)."""
    _journal().cancel(plan_id)
    console.print(f"{plan_id}: CANCELLED")
