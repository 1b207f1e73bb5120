"""Approving a recommended plan: it runs as it stands now, or it is left as it was with one clear line.

``forewarn plan approve`` (and the apply flow) go through :func:`approve_and_run`, which in order

1. refuses a plan that is not RECOMMENDED, or older than the policy's ``guardrails.max-plan-age-minutes`` at
   ``now`` (the fleet has moved on since: re-plan instead);
2. checks the guardrails as they stand now (:func:`forewarn.policy.guardrails.refusals`: the breaker, cooldowns
   and budgets charged by what succeeded since the plan was made, the concurrent migrations);
3. checks every action is one the executor can run;
4. claims every instance the plan touches, all or none (another run acting on one of them refuses it);
5. approves and runs it, releasing the claims after.

A refusal raises :class:`~forewarn.errors.PlanError` with one line and leaves the plan RECOMMENDED; an error
after the approval but before the plan started running puts it back to RECOMMENDED as well.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from forewarn.cloud import CloudAdapter
from forewarn.errors import ForewarnError, PlanError
from forewarn.execution.actions import handler_for
from forewarn.execution.applier import Applier
from forewarn.policy.guardrails import refusals
from forewarn.schemas import Plan, PlanState
from forewarn.service import Context
from forewarn.store.lease import LeaseStore, touched


def check(ctx: Context, cloud: CloudAdapter, plan: Plan, now: datetime) -> None:
    """Raise PlanError (one line) when ``plan`` may not be approved at ``now``."""
    if plan.state != PlanState.RECOMMENDED:
        raise PlanError(f"plan {plan.plan_id} is {plan.state}; only a RECOMMENDED plan is approved")
    limit = ctx.policy.guardrails.max_plan_age_minutes
    age = (now - plan.created_at).total_seconds() / 60.0
    if age > limit:
        raise PlanError(
            f"plan {plan.plan_id} is {age:,.0f} minutes old (guardrails.max-plan-age-minutes {limit:g}): "
            "not approved, it stays RECOMMENDED; re-plan instead"
        )
    fleet = len(cloud.list_instances())
    refused = refusals(plan, ctx.policy, fleet_size=fleet, state=ctx.guard_state(now), now=now)
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise PlanError(f"plan {plan.plan_id} not approved, it stays RECOMMENDED: {refused[0]}{more}")
    for action in plan.actions:
        try:
            handler_for(action).validate(action)
        except PlanError as exc:
            raise PlanError(f"plan {plan.plan_id} not approved, it stays RECOMMENDED: {exc}") from None


def approve_and_run(
    ctx: Context, cloud: CloudAdapter, plan_id: str, *, now: datetime, owner: str | None = None, ttl_seconds: int = 3600
) -> Plan:
    """Approve a RECOMMENDED plan and run it through ``cloud`` (see the module docstring); returns it as it ended."""
    plan = ctx.journal.get(plan_id)
    check(ctx, cloud, plan, now)
    owner = owner or f"approve-{uuid.uuid4().hex[:12]}"
    store = LeaseStore(ctx.repo.engine)
    store.create()
    needs = set().union(*touched(plan).values()) if plan.actions else set()
    granted = store.claim(needs, owner, cycle=f"approve:{plan_id}", ttl=timedelta(seconds=ttl_seconds))
    try:
        if granted != needs:
            held = ", ".join(sorted(needs - granted))
            why = f"instances claimed by another run ({held})"
            raise PlanError(f"plan {plan_id} not approved, it stays RECOMMENDED: {why}")
        ctx.journal.approve(plan_id)
        applier = Applier(cloud, ctx.journal, dry_run=ctx.dry_run, clock=lambda: now)
        try:
            return applier.run(ctx.journal.get(plan_id))
        except Exception as exc:
            if ctx.journal.get(plan_id).state != PlanState.APPROVED:
                raise
            ctx.journal.transition(plan_id, PlanState.RECOMMENDED, note=f"approval undone: {exc}")  # never started
            if isinstance(exc, ForewarnError):
                raise PlanError(f"plan {plan_id} could not start, it stays RECOMMENDED: {exc}") from None
            raise
    finally:
        store.release_claims(granted, owner)
