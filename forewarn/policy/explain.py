"""Why an instance got its band and action: ``forewarn policy explain INSTANCE``.

Reads what the last cycle left behind: the latest plan in the journal (actions with their reason, and the
notes the allocator and the guardrails wrote) and the saved band tracker (band and since when). Plans carry
a score only for instances they act on, so for the others the latest earlier plan that did is searched.
Rules are walked in order to say which one matched, or why none did; conditions on tags, groups and
workloads need the fleet, which the journal does not hold, so they are listed as what the rule required.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from forewarn.errors import InputError, PlanError
from forewarn.policy.engine import BandState
from forewarn.policy.schema import Policy, Rule
from forewarn.schemas import Action, Band, Plan


def _concerns(note: str, instance_id: str) -> bool:
    if note.startswith("circuit-breaker"):
        return True
    return re.search(rf"(?<![\w.-]){re.escape(instance_id)}(?![\w-])", note) is not None


def _band_lines(policy: Policy, state: BandState | None, now: datetime) -> list[str]:
    b = policy.bands
    lines = [
        f"thresholds ({policy.name}): high enter {b.high.enter:g} / exit {b.high.exit:g}, "
        f"moderate enter {b.moderate.enter:g} / exit {b.moderate.exit:g}, min dwell {b.min_dwell_minutes:g} min"
    ]
    if state is None:
        return [*lines, "band: not in the saved band tracker (never scored while the model was in use)"]
    free = state.since + timedelta(minutes=b.min_dwell_minutes)
    lines.insert(0, f"band: {state.band.value} since {state.since:%Y-%m-%d %H:%M} UTC")
    if state.band is not Band.LOW:
        when = "already may" if free <= now else f"may from {free:%H:%M} UTC"
        lines.append(f"dwell: it {when} move down once its score falls below the {state.band.value} exit")
    return lines


def _rule_line(rule: Rule, band: Band | None, fresh: bool) -> tuple[bool, str]:
    """Whether ``rule`` can have matched, and a line saying what it required."""
    m = rule.match
    if m.model_fresh is not None and m.model_fresh != fresh:
        return False, f"rule '{rule.name}': needs model-fresh {str(m.model_fresh).lower()}"
    if not fresh and m.model_fresh is None:
        return False, f"rule '{rule.name}': applies only while the model is in use"
    if m.band is not None and band is not None and m.band != band:
        return False, f"rule '{rule.name}': needs band {m.band.value}, instance is {band.value}"
    needs = [f"tags {dict(m.tags)}" if m.tags else "", f"groups {m.groups}" if m.groups else ""]
    needs.append(f"a task of kind {m.workload_kinds}" if m.workload_kinds else "")
    extra = ", ".join(n for n in needs if n)
    verdict = f"matches if the instance has {extra}" if extra else "matches"
    return True, f"rule '{rule.name}': {verdict} -> {rule.action.type}"


def _last_score(plans: Sequence[Plan], instance_id: str) -> tuple[Plan, Action] | None:
    for plan in reversed(plans):
        for action in plan.actions:
            if action.instance_id == instance_id and action.reason.probability is not None:
                return plan, action
    return None


def _action_lines(plan: Plan, actions: list[Action]) -> list[str]:
    lines = []
    for a in actions:
        target = f" -> {a.target_instance_id}" if a.target_instance_id else ""
        budget = ", ".join(f"{k} {v:g}" for k, v in sorted(a.reason.budget_used.items()))
        lines.append(f"action: {a.type.value}{target} ({a.state.value}), rule '{a.reason.rule}'")
        if budget:
            lines.append(f"  budget used: {budget}")
    return lines


def explain_instance(
    instance_id: str,
    plans: Sequence[Plan],
    tracker: dict[str, Any] | None,
    policy: Policy,
    *,
    now: datetime | None = None,
) -> list[str]:
    """The lines ``forewarn policy explain`` prints for ``instance_id``.

    Args:
        plans: the journal's plans, oldest first. tracker: the saved ``BandTracker`` dump, if any.
        policy: the policy in force (for thresholds, dwell and rules).
        now: the time the dwell is judged at; by default that of the latest plan (the last cycle).

    Raises:
        PlanError: the journal has no plan yet. InputError: neither the plans nor the tracker know the instance.
    """
    if not plans:
        raise PlanError("no plan in the journal yet: run `forewarn run score-and-allocate` first")
    plan = plans[-1]
    states = (tracker or {}).get("states", {})
    state = BandState.model_validate(states[instance_id]) if instance_id in states else None
    mine = [a for a in plan.actions if a.instance_id == instance_id]
    notes = [n for n in plan.notes if _concerns(n, instance_id)]
    if state is None and not mine and not notes and _last_score(plans, instance_id) is None:
        known = sorted(states)[:5]
        hint = f"; known instances include {', '.join(known)}" if known else ""
        raise InputError(f"instance '{instance_id}' is in no plan and not in the band tracker{hint}", field="INSTANCE")
    fresh = plan.model_version is not None
    lines = [
        f"instance {instance_id}, latest plan {plan.plan_id} ({plan.state.value}, policy {plan.policy}, "
        f"mode {plan.mode.value}) at {plan.created_at:%Y-%m-%d %H:%M} UTC",
        f"model: {plan.model_version}" if fresh else "model: none or stale; the fallback policy was in force",
    ]
    if plan.policy != policy.name:
        lines.append(f"note: that plan came from policy '{plan.policy}'; rules below are those of '{policy.name}'")
    scored = _last_score(plans, instance_id)
    if scored is None:
        lines.append("score: not recorded (plans keep the score of instances they act on only)")
    else:
        at, action = scored
        top = ", ".join(f"{f.feature} {f.contribution:+.2f}" for f in action.reason.top_features) or "-"
        when = "" if at is plan else f" (from plan {at.plan_id} at {at.created_at:%H:%M} UTC)"
        lines.append(f"score: {action.reason.probability:.4f}{when}; top features: {top}")
    lines += _band_lines(policy, state, now or plan.created_at)
    lines += _action_lines(plan, mine) or ["action: none in the latest plan"]
    band = state.band if state is not None else (mine[0].reason.band if mine else None)
    if not mine or plan.model_version is None:
        lines.append("rules, first match wins:")
        lines += [f"  {_rule_line(rule, band, fresh)[1]}" for rule in policy.rules] or ["  (the policy has no rules)"]
    lines += [f"guardrail/allocation note: {n}" for n in notes]
    return lines
