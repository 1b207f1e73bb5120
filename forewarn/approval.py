"""Approving a recommended plan: it runs as it stands now, or it is left as it was with one clear line.

``forewarn plan approve`` and the apply flow go through :func:`approve_and_run`, which in order

1. refuses a plan that is not RECOMMENDED (the apply flow also takes one APPROVED and never started), or
   older than the policy's ``guardrails.max-plan-age-minutes`` at ``now`` (the fleet has moved on: re-plan);
2. checks the guardrails as they stand now (:func:`forewarn.policy.guardrails.refusals`: the breaker, cooldowns
   and budgets charged by what succeeded since the plan was made, the concurrent migrations);
3. checks every action is one the executor can run;
4. claims every instance the plan touches, all or none (another run acting on one of them refuses it);
5. approves and runs it, releasing the claims after.

A refusal raises :class:`~forewarn.errors.PlanError` with one line and leaves the plan as it was (RECOMMENDED,
or APPROVED); an error after the approval but before the plan started running puts it back as it was too.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from forewarn.cloud import CloudAdapter
from forewarn.errors import ForewarnError, PlanError
from forewarn.execution.actions import handler_for
from forewarn.execution.applier import Applier
from forewarn.execution.runner import ActionRunner
from forewarn.policy.guardrails import refusals
from forewarn.schemas import InstanceState, Plan, PlanState
from forewarn.service import Context
from forewarn.store.lease import LeaseStore, touched

GONE = (InstanceState.FAILED, InstanceState.TERMINATED)


APPROVE_ONLY = (PlanState.RECOMMENDED,)
"""What ``plan approve`` takes; the apply flow also runs an APPROVED plan that never started, after the same checks."""


def check(
    ctx: Context, cloud: CloudAdapter, plan: Plan, now: datetime, *, states: tuple[PlanState, ...] = APPROVE_ONLY
) -> None:
    """Raise PlanError (one line) when ``plan`` may not be approved (or run, if already APPROVED) at ``now``."""
    if plan.state not in states:
        allowed = " or ".join(s.value for s in states)
        verb = "approved" if states == APPROVE_ONLY else "run"
        raise PlanError(f"plan {plan.plan_id} is {plan.state}; only a {allowed} plan is {verb}")
    stays = f"it stays {plan.state}"
    limit = ctx.policy.guardrails.max_plan_age_minutes
    age = (now - plan.created_at).total_seconds() / 60.0
    if age > limit:
        raise PlanError(
            f"plan {plan.plan_id} is {age:,.0f} minutes old (guardrails.max-plan-age-minutes {limit:g}): "
            f"not approved, {stays}; re-plan instead"
        )
    fleet = sum(1 for i in cloud.list_instances() if i.state not in GONE)  # the fleet a cycle plans over
    refused = refusals(plan, ctx.policy, fleet_size=fleet, state=ctx.guard_state(now), now=now)
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise PlanError(f"plan {plan.plan_id} not approved, {stays}: {refused[0]}{more}")
    for action in plan.actions:
        try:
            handler_for(action).validate(action)
        except PlanError as exc:
            raise PlanError(f"plan {plan.plan_id} not approved, {stays}: {exc}") from None


def approve_and_run(
    ctx: Context,
    cloud: CloudAdapter,
    plan_id: str,
    *,
    now: datetime,
    owner: str | None = None,
    ttl_seconds: int = 3600,
    runner: ActionRunner | None = None,
    states: tuple[PlanState, ...] = APPROVE_ONLY,
) -> Plan:
    """Approve a RECOMMENDED plan and run it through ``cloud`` (see the module docstring); returns it as it ended.

    ``runner`` runs each change (the apply flow's Prefect tasks); ``states``: the states accepted (the apply
    flow adds APPROVED: a plan approved but never started runs only after the same checks).
    """
    plan = ctx.journal.get(plan_id)
    check(ctx, cloud, plan, now, states=states)
    was = plan.state
    owner = owner or f"approve-{uuid.uuid4().hex[:12]}"
    store = LeaseStore(ctx.repo.engine)
    needs = set().union(*touched(plan).values()) if plan.actions else set()
    granted = store.claim(needs, owner, cycle=f"approve:{plan_id}", ttl=timedelta(seconds=ttl_seconds))
    try:
        if granted != needs:
            held = ", ".join(sorted(needs - granted))
            why = f"instances claimed by another run ({held})"
            raise PlanError(f"plan {plan_id} not approved, it stays {was}: {why}")
        if was == PlanState.RECOMMENDED:
            ctx.journal.approve(plan_id)
        applier = Applier(cloud, ctx.journal, dry_run=ctx.dry_run, clock=lambda: now, runner=runner)
        try:
            return applier.run(ctx.journal.get(plan_id))
        except Exception as exc:
            if ctx.journal.get(plan_id).state != PlanState.APPROVED:
                raise
            if was == PlanState.RECOMMENDED:  # never started: undo the approval
                ctx.journal.transition(plan_id, PlanState.RECOMMENDED, note=f"approval undone: {exc}")
            if isinstance(exc, ForewarnError):
                raise PlanError(f"plan {plan_id} could not start, it stays {was}: {exc}") from None
            raise
    finally:
        store.release_claims(granted, owner)
