"""The one choke point every plan passes before anything acts: velocity limits and the circuit breaker.

:func:`enforce` keeps actions in plan order (the planner puts the most urgent first) and drops each one
that would break a limit, adding a note naming the guardrail and the instance. Limits counted:

* every action: ``max-actions-per-cycle`` and ``max-actions-per-type``;
* migrations: ``max-concurrent-migrations`` (this plan plus those still in flight) and
  ``max-migrations-per-target``;
* actions that change the fleet (all but ``notify`` and ``none``): ``cooldown-minutes`` since the last action
  on the same instance, and the share of the fleet touched in this cycle and in the sliding window. The
  cooldown stops flapping, never an escalation: an action more severe than the one that started it
  (see :data:`SEVERITY`: scale-back, then cordon, then migrate) goes through.
  A fleet share allows ``floor(fleet_size * percent / 100)`` distinct touched instances.

The counting is :class:`forewarn.policy.limits.LimitEngine`'s, which the allocator plans within too, so
nothing it plans is dropped here; what "touched" means, and which actions form a unit kept or dropped
together (a cordon and the migrations off its instance, a scale-back and the migrations that make its room),
is defined there.

Cooldowns, window shares and concurrent migrations are counted from what happened, never from what was
planned: :class:`GuardrailState` is built each cycle from the journal (``Context.guard_state``), whose
SUCCEEDED actions (stamped with the time their success was recorded, in the same write) are the only charges.
So a recommend-mode plan, a dry run, an action dropped by claims or one that failed charges nothing.

The circuit breaker (:mod:`forewarn.policy.breaker`) latches: once tripped by a spike or a slow ramp of the
high-risk share, plans stay shadow plans (recorded, never run) until calm cycles or an operator's reset.
Dry-run is not decided here; the applier owns it.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from forewarn.policy import breaker
from forewarn.policy.actions import PolicyModel
from forewarn.policy.breaker import BreakerState
from forewarn.policy.limits import PASSIVE, SEVERITY, ActionRecord, Caps, LimitEngine
from forewarn.policy.schema import Policy
from forewarn.schemas import ActionType, Plan, PlanState, PolicyMode

__all__ = ["PASSIVE", "SEVERITY", "ActionRecord", "GuardrailState", "budget", "enforce", "refusals"]


class GuardrailState(PolicyModel):
    """What the guardrails count: ``history`` and ``in_flight_migrations`` come from the journal each cycle (what
    succeeded, what is still running); the breaker is remembered between cycles (``model_dump`` /
    ``model_validate``)."""

    history: list[ActionRecord] = Field(default_factory=list, description="actions that succeeded")
    in_flight_migrations: list[str] = Field(default_factory=list, description="action ids still running")
    last_high_risk_count: int | None = None
    breaker: BreakerState = Field(default_factory=BreakerState)

    def mark_finished(self, action_ids: list[str]) -> None:
        """Migrations that ended (succeeded, failed or reverted) no longer count as concurrent."""
        done = set(action_ids)
        self.in_flight_migrations = [a for a in self.in_flight_migrations if a not in done]

    def mark_started(self, action_ids: list[str]) -> None:
        """Migrations of an approved (recommend-mode) plan that began running."""
        known = {r.action_id for r in self.history if r.type is ActionType.MIGRATE}
        self.in_flight_migrations += [a for a in action_ids if a in known and a not in self.in_flight_migrations]


def _breaker(
    policy: Policy, plan: Plan, fleet_size: int, high_risk_count: int, state: GuardrailState, now: datetime
) -> bool:
    """Move the breaker on by this cycle; when it is open, make ``plan`` a shadow plan. Returns whether open."""
    if fleet_size <= 0:
        return state.breaker.open
    if state.breaker.last_share is None and state.last_high_risk_count is not None:  # state of an older version
        state.breaker.last_share = 100.0 * state.last_high_risk_count / fleet_size
    share = 100.0 * high_risk_count / fleet_size
    note = breaker.step(policy.guardrails.circuit_breaker, state.breaker, share, now)
    if note is not None:
        plan.notes.append(f"{note} ({high_risk_count} of {fleet_size} instances high-risk)")
    if state.breaker.open:
        plan.mode = PolicyMode.SHADOW
        plan.state = PlanState.SHADOW
    return state.breaker.open


def budget(policy: Policy, fleet_size: int, state: GuardrailState, now: datetime) -> LimitEngine:
    """The limit engine of one plan: the policy's guardrails, seeded from the charges and migrations in flight."""
    return LimitEngine(Caps.of(policy.guardrails), fleet_size, state.history, state.in_flight_migrations, now)


def enforce(
    plan: Plan, policy: Policy, *, fleet_size: int, high_risk_count: int, state: GuardrailState, now: datetime
) -> tuple[Plan, GuardrailState]:
    """Apply every guardrail to ``plan``; return the limited plan and the state for the next cycle.

    Neither input is modified. Dropped actions leave a note naming the guardrail and the instance;
    kept actions get ``reason.budget_used``. Nothing is charged here: the journal charges what succeeds.
    """
    plan = plan.model_copy(deep=True)
    new_state = state.model_copy(deep=True)
    _breaker(policy, plan, fleet_size, high_risk_count, new_state, now)
    plan.actions, dropped = budget(policy, fleet_size, state, now).admit(plan.actions)
    plan.notes += [f"guardrail {note}" for note in dropped]
    new_state.last_high_risk_count = high_risk_count
    return plan, new_state


def refusals(plan: Plan, policy: Policy, *, fleet_size: int, state: GuardrailState, now: datetime) -> list[str]:
    """What keeps ``plan`` from running as it stands now (an approval's check): an open breaker, and each action
    a guardrail would drop today, counted by the same engine as :func:`enforce`. Empty when it may run."""
    out = [state.breaker.describe()] if state.breaker.open else []
    _, dropped = budget(policy, fleet_size, state, now).admit(plan.model_copy(deep=True).actions)
    return out + [f"guardrail {note}" for note in dropped]
