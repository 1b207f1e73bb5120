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
  A fleet share allows ``floor(fleet_size * percent / 100)`` distinct instances.

A migration depends on the cordon of its source in the same plan (so no new work lands while it moves): when
a guardrail other than the cooldown drops that cordon, its migrations are dropped with it.

Cooldowns, window shares and concurrent migrations are counted from what happened, never from what was
planned: :class:`GuardrailState` is built each cycle from the journal (``Context.guard_state``), whose
SUCCEEDED actions (stamped with the time their success was recorded, in the same write) are the only charges.
So a recommend-mode plan, a dry run, an action dropped by claims or one that failed charges nothing.

The circuit breaker (:mod:`forewarn.policy.breaker`) latches: once tripped by a spike or a slow ramp of the
high-risk share, plans stay shadow plans (recorded, never run) until calm cycles or an operator's reset.
Dry-run is not decided here; the applier owns it.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from pydantic import Field

from forewarn.policy import breaker
from forewarn.policy.actions import PolicyModel
from forewarn.policy.breaker import BreakerState
from forewarn.policy.schema import Policy
from forewarn.schemas import Action, ActionType, Plan, PlanState, PolicyMode, UtcDatetime

PASSIVE = frozenset({ActionType.NOTIFY, ActionType.NONE})
"""Action types that do not change the fleet: no cooldown, no fleet share."""

SEVERITY: dict[ActionType, int] = {
    ActionType.NONE: 0,
    ActionType.RELEASE: 0,
    ActionType.NOTIFY: 0,
    ActionType.RESERVE_BUFFER: 1,
    ActionType.AUTOSCALE: 1,
    ActionType.SCALE_BACK: 2,
    ActionType.ROLLBACK: 3,
    ActionType.CORDON: 3,
    ActionType.MIGRATE: 4,
}
"""How drastic an action is to its instance; a cooldown lets through only more drastic ones (so a release
waits until the cooldown of the hold it undoes is over)."""


class ActionRecord(PolicyModel):
    """An action let through by an earlier cycle."""

    action_id: str
    instance_id: str
    type: ActionType
    at: UtcDatetime
    target_instance_id: str | None = None


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


class _Budget:
    """Counters for one plan, seeded from the remembered state."""

    def __init__(self, policy: Policy, fleet_size: int, state: GuardrailState, now: datetime) -> None:
        g = policy.guardrails
        self.g = g
        self.now = now
        self.fleet_size = fleet_size
        self.cycle_cap = math.floor(fleet_size * g.max_fleet_percent_per_cycle / 100.0 + 1e-9)
        self.window_cap = math.floor(fleet_size * g.max_fleet_percent_per_window.percent / 100.0 + 1e-9)
        window_start = now - timedelta(minutes=g.max_fleet_percent_per_window.window_minutes)
        cooldown_start = now - timedelta(minutes=g.cooldown_minutes)
        self.window = {r.instance_id for r in state.history if r.at > window_start and r.type not in PASSIVE}
        self.cooling: dict[str, int] = {}
        for r in state.history:
            if r.at > cooldown_start and r.type not in PASSIVE:
                self.cooling[r.instance_id] = max(self.cooling.get(r.instance_id, 0), SEVERITY[r.type])
        by_id = {r.action_id: r for r in state.history}
        flying = [by_id[a] for a in state.in_flight_migrations if a in by_id]
        self.migrations = len(state.in_flight_migrations)
        self.per_target: dict[str, int] = {}
        for record in flying:
            if record.target_instance_id:
                self.per_target[record.target_instance_id] = self.per_target.get(record.target_instance_id, 0) + 1
        self.actions = 0
        self.per_type: dict[ActionType, int] = {}
        self.touched: set[str] = set()

    def refusal(self, action: Action) -> str | None:
        """The guardrail this action would break, or None."""
        g, kind = self.g, action.type
        if kind not in PASSIVE and SEVERITY[kind] <= self.cooling.get(action.instance_id, -1):
            return f"cooldown-minutes ({g.cooldown_minutes:g}): acted on within the cooldown"
        if self.actions >= g.max_actions_per_cycle:
            return f"max-actions-per-cycle ({g.max_actions_per_cycle})"
        cap = g.max_actions_per_type.get(kind)
        if cap is not None and self.per_type.get(kind, 0) >= cap:
            return f"max-actions-per-type.{kind.value} ({cap})"
        if kind is ActionType.MIGRATE:
            if self.migrations >= g.max_concurrent_migrations:
                return f"max-concurrent-migrations ({g.max_concurrent_migrations})"
            target = action.target_instance_id
            if target is not None and self.per_target.get(target, 0) >= g.max_migrations_per_target:
                return f"max-migrations-per-target ({g.max_migrations_per_target}) for target {target}"
        if kind not in PASSIVE and action.instance_id not in self.touched:
            if len(self.touched) + 1 > self.cycle_cap:
                return f"max-fleet-percent-per-cycle ({g.max_fleet_percent_per_cycle:g}% of {self.fleet_size})"
            if len(self.window | self.touched | {action.instance_id}) > self.window_cap:
                percent = g.max_fleet_percent_per_window.percent
                return f"max-fleet-percent-per-window ({percent:g}% of {self.fleet_size})"
        return None

    def take(self, action: Action) -> None:
        self.actions += 1
        self.per_type[action.type] = self.per_type.get(action.type, 0) + 1
        if action.type is ActionType.MIGRATE:
            self.migrations += 1
            if action.target_instance_id is not None:
                target = action.target_instance_id
                self.per_target[target] = self.per_target.get(target, 0) + 1
        if action.type not in PASSIVE:
            self.touched.add(action.instance_id)

    def used(self, action: Action) -> dict[str, float]:
        size = max(self.fleet_size, 1)
        used = {
            "actions": float(self.actions),
            "actions_max": float(self.g.max_actions_per_cycle),
            "fleet_percent": 100.0 * len(self.touched) / size,
            "fleet_percent_max": self.g.max_fleet_percent_per_cycle,
            "window_fleet_percent": 100.0 * len(self.window | self.touched) / size,
            "window_fleet_percent_max": self.g.max_fleet_percent_per_window.percent,
        }
        if action.type is ActionType.MIGRATE:
            used["concurrent_migrations"] = float(self.migrations)
            used["concurrent_migrations_max"] = float(self.g.max_concurrent_migrations)
        return used


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
    budget = _Budget(policy, fleet_size, state, now)
    kept: list[Action] = []
    uncordoned: set[str] = set()  # sources whose cordon this plan wanted and a guardrail (not a cooldown) dropped
    for action in plan.actions:
        refusal = budget.refusal(action)
        if refusal is None and action.type is ActionType.MIGRATE and action.instance_id in uncordoned:
            refusal = "dependency: the cordon of its source was dropped"
        if refusal is not None:
            plan.notes.append(f"guardrail {refusal}: dropped {action.type.value} on {action.instance_id}")
            if action.type is ActionType.CORDON and not refusal.startswith("cooldown"):
                uncordoned.add(action.instance_id)  # (a cooldown means a cordon or more is already in force)
            continue
        budget.take(action)
        action.reason.budget_used = budget.used(action)
        kept.append(action)
    plan.actions = kept
    new_state.last_high_risk_count = high_risk_count
    return plan, new_state


def refusals(plan: Plan, policy: Policy, *, fleet_size: int, state: GuardrailState, now: datetime) -> list[str]:
    """What keeps ``plan`` from running as it stands now (an approval's check): an open breaker, and each action
    a guardrail would drop today, counted by the same budget as :func:`enforce`. Empty when it may run."""
    out = [state.breaker.describe()] if state.breaker.open else []
    budget = _Budget(policy, fleet_size, state, now)
    for action in plan.actions:
        refusal = budget.refusal(action)
        if refusal is None:
            budget.take(action)
        else:
            out.append(f"guardrail {refusal}: {action.type.value} on {action.instance_id}")
    return out
