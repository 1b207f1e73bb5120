"""The Markdown the flows publish as artifacts: a training run with its champion race, a plan, the risk table.

Pure functions of their inputs, beside the replay report (:mod:`forewarn.report`) and the backtest report
(:mod:`forewarn.backtest_report`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from forewarn.schemas import Plan, RiskScore

if TYPE_CHECKING:
    from forewarn.pipeline import TrainOutcome


def describe_training(outcome: TrainOutcome) -> str:
    lines = [f"# Training: {outcome.rows:,} rows", ""]
    if outcome.card is None:
        lines.append("The training frame failed validation; the current model stays.")
        lines += [f"- {failure}" for failure in outcome.validation.failures]
        return "\n".join(lines)
    card = outcome.card
    lines.append(
        f"Model **{card.version}** ({card.kind}) {'promoted to current' if outcome.promoted else 'kept as candidate'}."
    )
    lines += race_lines(card.challenge)
    lines += ["", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in card.metrics.items()]
    return "\n".join(lines)


def race_lines(race: dict[str, Any] | None) -> list[str]:
    """The champion race in words and as a table: each candidate's PR-AUC with its 90% interval."""
    if not race:
        return []
    lines = [
        "",
        f"Champion race on the newest {race['rows']:,} rows ({race['positives']} positive, "
        f"{race['instances']} instances; 90% intervals from {race['resamples']} resamples of whole instances):",
        "",
        "| scorer | PR-AUC | 90% interval |",
        "|---|---|---|",
    ]
    for standing in race["standings"]:
        value, ci = standing["pr_auc"], standing["ci"]
        shown = "n/a" if value is None else f"{value:.3f}"
        lines.append(f"| {standing['name']} | {shown} | {'-' if ci is None else f'{ci[0]:.3f}-{ci[1]:.3f}'} |")
    return [*lines, "", str(race["reason"]) + "."]


def risk_rows(scores: Sequence[RiskScore], plan: Plan, top: int = 20) -> list[dict[str, Any]]:
    """The risk table: the riskiest instances with score, action planned and top features."""
    planned = {a.instance_id: a.type.value for a in plan.actions}
    ranked = sorted(scores, key=lambda s: s.probability, reverse=True)[:top]
    return [
        {
            "instance": s.instance_id,
            "probability": round(s.probability, 4),
            "action": planned.get(s.instance_id, "-"),
            "top features": ", ".join(f"{f.feature} ({f.contribution:+.2f})" for f in s.top_features),
        }
        for s in ranked
    ]


def plan_markdown(plan: Plan) -> str:
    lines = [f"# Plan {plan.plan_id}: {plan.state}", "", f"Policy `{plan.policy}`, mode `{plan.mode}`.", ""]
    if plan.actions:
        lines += ["| action | instance | target | tasks | rule | probability |", "|---|---|---|---|---|---|"]
        for a in plan.actions:
            p = "" if a.reason.probability is None else f"{a.reason.probability:.3f}"
            lines.append(
                f"| {a.type} | {a.instance_id} | {a.target_instance_id or ''} | {len(a.task_ids)} | "
                f"{a.reason.rule} | {p} |"
            )
    lines += ["", *[f"- {n}" for n in plan.notes]]
    return "\n".join(lines)
