"""The plan step of every cycle: scores -> policy decisions -> what the cloud can do -> allocation ->
guardrails -> a plan, journalled before it runs. Light on imports (no feature store): the Nova tier uses it."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from forewarn.execution.applier import Applier
from forewarn.execution.journal import Journal
from forewarn.policy.engine import PolicyEngine
from forewarn.policy.guardrails import GuardrailState, budget, enforce
from forewarn.policy.schema import Policy
from forewarn.schemas import ActionType, Band, Instance, Plan, PlanState, PolicyMode, RiskScore, Task
from forewarn.stages import UNTIMED, Stages


@dataclass
class CyclePlan:
    """One cycle's plan with the guardrail state to carry into the next cycle."""

    plan: Plan
    guard_state: GuardrailState
    high_risk: int


def plan_cycle(
    scores: Sequence[RiskScore],
    instances: Sequence[Instance],
    tasks: Sequence[Task],
    *,
    engine: PolicyEngine,
    policy: Policy,
    guard_state: GuardrailState,
    now: datetime,
    model_version: str | None,
    model_fresh: bool = True,
    features: Mapping[str, Mapping[str, float]] | None = None,
    stale: Sequence[str] = (),
    held: Collection[str] | None = None,
    can: Collection[ActionType] | None = None,
    cloud: str = "the cloud",
    stages: Stages = UNTIMED,
) -> CyclePlan:
    """Decide, allocate and enforce the guardrails: the plan of one cycle, not yet persisted or run.

    ``stale``: instances whose features are too old to score (the fallback decides them); ``held``: the
    instances Forewarn holds back (from the journal), the only ones a release may touch; ``can``: the action
    types the cloud (named ``cloud``) can carry out (default: all): the rest are substituted or dropped with
    a note (:mod:`forewarn.allocation.capable`), never planned to fail. ``stages`` times the policy, the
    allocation and the guardrails.
    """
    from forewarn.allocation.capable import fit_actions, fit_decisions
    from forewarn.allocation.planner import plan_actions

    with stages("policy"):
        decisions = engine.decide(
            scores, instances, tasks, now=now, model_fresh=model_fresh, features=features, stale=stale, held=held
        )
        notes: list[str] = []
        if can is not None:
            allowed = {ActionType(r.action.type) for r in policy.rules} | {ActionType(policy.fallback.action)}
            decisions, notes = fit_decisions(decisions, can, allowed, cloud)
    with stages("allocate"):
        risk = {s.instance_id: s.probability for s in scores}
        limits = budget(policy, len(instances), guard_state, now)  # the guardrails' engine: nothing planned is dropped
        allocation = plan_actions(decisions, instances, tasks, risk, policy.velocity_limits(), engine=limits)
        actions = allocation.actions
        if can is not None:
            actions, dropped = fit_actions(actions, can, cloud)
            notes += dropped
    mode = PolicyMode(policy.mode)
    plan = Plan(
        policy=policy.name,
        mode=mode,
        model_version=model_version,
        actions=actions,
        notes=[*allocation.explanations, *notes],
        created_at=now,
    )
    high = sum(1 for band in engine.last_bands.values() if band == Band.HIGH)
    with stages("guardrails"):
        plan, guard_state = enforce(
            plan, policy, fleet_size=len(instances), high_risk_count=high, state=guard_state, now=now
        )
    if plan.mode == PolicyMode.SHADOW:
        plan.state = PlanState.SHADOW
    elif plan.mode == PolicyMode.AUTO:
        plan.state = PlanState.APPROVED
    return CyclePlan(plan=plan, guard_state=guard_state, high_risk=high)


def apply_plan(journal: Journal, applier: Applier, plan: Plan, *, stages: Stages = UNTIMED) -> Plan:
    """Journal the plan before anything runs; run it when the policy's mode approved it. A plan with nothing
    to do ends SUCCEEDED at once rather than waiting APPROVED."""
    with stages("journal"):
        journal.save_plan(plan)
    with stages("apply"):
        if plan.state == PlanState.APPROVED and plan.actions:
            return applier.run(plan)
        if plan.state == PlanState.APPROVED:
            journal.transition(plan.plan_id, PlanState.RUNNING)
            journal.transition(plan.plan_id, PlanState.SUCCEEDED, note="no action needed")
            return journal.get(plan.plan_id)
        return plan


FINISHED = frozenset({PlanState.SUCCEEDED, PlanState.FAILED, PlanState.ROLLED_BACK, PlanState.CANCELLED})


def finish_cycle(plan: Plan, guard_state: GuardrailState) -> GuardrailState:
    """After the applier: the plan's migrations no longer count against the concurrent-migration cap."""
    if plan.state in FINISHED:
        guard_state.mark_finished([a.action_id for a in plan.actions])
    return guard_state
