"""One limit engine: the budget the allocator plans within and the guardrails enforce, counted the same way.

Terms:
    touched: an instance is touched by a plan when an action of the plan changes its state or its work, or
        acts for it: the instance an action names (all but ``notify`` and ``none``, which change nothing;
        for an autoscale, the group member it acts for), the target of a migration (work arrives there),
        and each instance a scale-down removes (``params.instances``). The fleet shares
        (``max-fleet-percent-per-cycle`` and ``-per-window``) count distinct touched instances.
    subject: the instance an action names (``instance_id``); cooldowns are kept per subject.
    charge: an action that succeeded (from the journal, :class:`ActionRecord`); cooldowns and the window
        share count charges, never plans.
    unit: actions that only make sense together and are kept or dropped together (:func:`units`): the
        cordon of an instance with the migrations off it (no new work lands while it empties), and a
        scale-back with the migrations off its instance (they make the room the cloud wants before it
        shrinks the instance). A cordon or scale-back dropped only by its cooldown leaves its migrations
        standing: that hold (or a stronger one) is already in force.

:class:`LimitEngine` counts every limit of :class:`Caps` over one plan, seeded from the charges and the
migrations still in flight: the allocator asks it before it emits each action (so it never plans what the
guardrails would drop), and :func:`forewarn.policy.guardrails.enforce` admits the plan through a fresh one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import Field

from forewarn.policy.actions import PolicyModel
from forewarn.schemas import Action, ActionType, UtcDatetime, VelocityLimits

if TYPE_CHECKING:
    from forewarn.policy.schema import Guardrails

PASSIVE = frozenset({ActionType.NOTIFY, ActionType.NONE})
"""Action types that do not change the fleet: they touch nothing and start no cooldown."""

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

HOLDS = (ActionType.CORDON, ActionType.SCALE_BACK)
"""Actions a migration off the same instance goes with (see units)."""

COOLDOWN = "cooldown-minutes"
"""How every cooldown refusal starts."""


class ActionRecord(PolicyModel):
    """An action that succeeded (or a migration still running), as the journal reports it."""

    action_id: str
    instance_id: str
    type: ActionType
    at: UtcDatetime
    target_instance_id: str | None = None
    removed: list[str] = Field(default_factory=list, description="instances a scale-down removed")


def touched(action: Action | ActionRecord) -> frozenset[str]:
    """The instances ``action`` touches (see the module docstring)."""
    if action.type in PASSIVE:
        return frozenset()
    out = {action.instance_id}
    if action.target_instance_id:
        out.add(action.target_instance_id)
    removed = action.removed if isinstance(action, ActionRecord) else action.params.get("instances") or []
    return frozenset(out | {str(i) for i in removed})


def named(action: Action) -> frozenset[str]:
    """The instances a run must hold to carry out ``action``: those it touches and its subject."""
    return touched(action) | {action.instance_id}


def units(actions: Sequence[Action]) -> list[list[int]]:
    """Positions of ``actions`` grouped into units (module docstring), ordered by their first member."""
    moved = {a.instance_id for a in actions if a.type is ActionType.MIGRATE}
    held = {a.instance_id for a in actions if a.type in HOLDS} & moved
    pairs = (*HOLDS, ActionType.MIGRATE)
    out: list[list[int]] = []
    by_source: dict[str, list[int]] = {}
    for position, action in enumerate(actions):
        if action.type in pairs and action.instance_id in held:
            unit = by_source.get(action.instance_id)
            if unit is None:
                unit = by_source[action.instance_id] = []
                out.append(unit)
            unit.append(position)
        else:
            out.append([position])
    return out


@dataclass(frozen=True)
class Caps:
    """The limits one plan stays within (the policy's ``guardrails``, or the allocator's velocity limits)."""

    max_actions_per_cycle: int
    max_concurrent_migrations: int
    max_migrations_per_target: int
    cycle_percent: float
    window_percent: float
    window_minutes: float = 60.0
    cooldown_minutes: float = 0.0
    max_actions_per_type: Mapping[ActionType, int] = field(default_factory=dict)

    @classmethod
    def of(cls, g: Guardrails) -> Caps:
        return cls(
            max_actions_per_cycle=g.max_actions_per_cycle,
            max_concurrent_migrations=g.max_concurrent_migrations,
            max_migrations_per_target=g.max_migrations_per_target,
            cycle_percent=g.max_fleet_percent_per_cycle,
            window_percent=g.max_fleet_percent_per_window.percent,
            window_minutes=g.max_fleet_percent_per_window.window_minutes,
            cooldown_minutes=g.cooldown_minutes,
            max_actions_per_type=dict(g.max_actions_per_type),
        )

    @classmethod
    def of_velocity(cls, v: VelocityLimits) -> Caps:
        """Velocity limits alone: no window beyond the cycle, no cooldown, no cap per type."""
        percent = 100.0 * v.max_fleet_fraction
        return cls(v.max_actions_per_cycle, v.max_concurrent_migrations, v.max_migrations_per_target, percent, percent)

    def velocity(self) -> VelocityLimits:
        return VelocityLimits(
            max_actions_per_cycle=self.max_actions_per_cycle,
            max_concurrent_migrations=self.max_concurrent_migrations,
            max_migrations_per_target=self.max_migrations_per_target,
            max_fleet_fraction=min(self.cycle_percent / 100.0, 1.0),
        )


def share(fleet_size: int, percent: float) -> int:
    """Distinct instances a fleet share allows: ``floor(fleet_size * percent / 100)``."""
    return math.floor(fleet_size * percent / 100.0 + 1e-9)


class LimitEngine:
    """The counters of one plan against :class:`Caps`, seeded from charges and migrations in flight.

    Args:
        caps: the limits.
        fleet_size: instances in the fleet (the base of the fleet shares).
        history: charges (and running migrations); only those within the window or cooldown before ``now`` count.
        in_flight: action ids of migrations still running (in ``history``).
        now: the cycle's time.
    """

    def __init__(
        self,
        caps: Caps,
        fleet_size: int,
        history: Iterable[ActionRecord] = (),
        in_flight: Iterable[str] = (),
        now: datetime | None = None,
    ) -> None:
        self.caps = caps
        self.fleet_size = fleet_size
        self.cycle_cap = share(fleet_size, caps.cycle_percent)
        self.window_cap = share(fleet_size, caps.window_percent)
        records = list(history)
        window_start = None if now is None else now - timedelta(minutes=caps.window_minutes)
        cooldown_start = None if now is None else now - timedelta(minutes=caps.cooldown_minutes)
        self.window: set[str] = set()
        self.cooling: dict[str, int] = {}
        for r in records:
            if window_start is None or r.at > window_start:
                self.window |= touched(r)
            if r.type not in PASSIVE and (cooldown_start is None or r.at > cooldown_start):
                self.cooling[r.instance_id] = max(self.cooling.get(r.instance_id, 0), SEVERITY[r.type])
        by_id = {r.action_id: r for r in records}
        flying = list(dict.fromkeys(in_flight))
        self.migrations = len(flying)
        self.per_target: dict[str, int] = {}
        for action_id in flying:
            target = by_id[action_id].target_instance_id if action_id in by_id else None
            if target:
                self.per_target[target] = self.per_target.get(target, 0) + 1
        self.actions = 0
        self.per_type: dict[ActionType, int] = {}
        self.touched: set[str] = set()
        self.window_count = len(self.window)
        """``len(window | touched)``, kept as actions are taken (a set union per action would cost O(fleet))."""

    # -- one action -------------------------------------------------------------------------------------
    def cooldown(self, instance_id: str, kind: ActionType) -> str | None:
        """The cooldown refusal of a ``kind`` action on ``instance_id``, or None."""
        if kind not in PASSIVE and SEVERITY[kind] <= self.cooling.get(instance_id, -1):
            return f"{COOLDOWN} ({self.caps.cooldown_minutes:g}): acted on within the cooldown"
        return None

    def type_left(self, kind: ActionType) -> int:
        cap = self.caps.max_actions_per_type.get(kind)
        return 10**9 if cap is None else cap - self.per_type.get(kind, 0)

    def refusal(self, action: Action) -> str | None:
        """The limit this action would break, or None."""
        c, kind = self.caps, action.type
        cooling = self.cooldown(action.instance_id, kind)
        if cooling is not None:
            return cooling
        if self.actions >= c.max_actions_per_cycle:
            return f"max-actions-per-cycle ({c.max_actions_per_cycle})"
        if self.type_left(kind) <= 0:
            return f"max-actions-per-type.{kind.value} ({c.max_actions_per_type[kind]})"
        if kind is ActionType.MIGRATE:
            if self.migrations >= c.max_concurrent_migrations:
                return f"max-concurrent-migrations ({c.max_concurrent_migrations})"
            target = action.target_instance_id
            if target is not None and self.per_target.get(target, 0) >= c.max_migrations_per_target:
                return f"max-migrations-per-target ({c.max_migrations_per_target}) for target {target}"
        return self.share_refusal(touched(action))

    def share_refusal(self, instance_ids: Iterable[str]) -> str | None:
        """The fleet share that touching ``instance_ids`` besides what the plan touched would exceed, or None."""
        c = self.caps
        fresh = set(instance_ids) - self.touched
        if not fresh:
            return None
        if len(self.touched) + len(fresh) > self.cycle_cap:
            return f"max-fleet-percent-per-cycle ({c.cycle_percent:g}% of {self.fleet_size})"
        if self.window_count + len(fresh - self.window) > self.window_cap:
            return f"max-fleet-percent-per-window ({c.window_percent:g}% of {self.fleet_size})"
        return None

    def can_touch(self, instance_ids: Iterable[str]) -> bool:
        return self.share_refusal(instance_ids) is None

    def take(self, action: Action) -> frozenset[str]:
        """Count ``action``; returns the instances it touched first (for :meth:`give_back`)."""
        self.actions += 1
        self.per_type[action.type] = self.per_type.get(action.type, 0) + 1
        if action.type is ActionType.MIGRATE:
            self.migrations += 1
            if action.target_instance_id is not None:
                target = action.target_instance_id
                self.per_target[target] = self.per_target.get(target, 0) + 1
        fresh = touched(action) - self.touched
        self.touched |= fresh
        self.window_count += len(fresh - self.window)
        return fresh

    def give_back(self, action: Action, fresh: frozenset[str]) -> None:
        """Undo :meth:`take` (a unit that did not pass as a whole)."""
        self.actions -= 1
        self.per_type[action.type] -= 1
        if action.type is ActionType.MIGRATE:
            self.migrations -= 1
            if action.target_instance_id is not None:
                self.per_target[action.target_instance_id] -= 1
        self.touched -= fresh
        self.window_count -= len(fresh - self.window)

    def used(self, action: Action) -> dict[str, float]:
        """The budget used so far, as an action's ``reason.budget_used`` shows it."""
        size = max(self.fleet_size, 1)
        used = {
            "actions": float(self.actions),
            "actions_max": float(self.caps.max_actions_per_cycle),
            "fleet_percent": 100.0 * len(self.touched) / size,
            "fleet_percent_max": self.caps.cycle_percent,
            "window_fleet_percent": 100.0 * self.window_count / size,
            "window_fleet_percent_max": self.caps.window_percent,
        }
        if action.type is ActionType.MIGRATE:
            used["concurrent_migrations"] = float(self.migrations)
            used["concurrent_migrations_max"] = float(self.caps.max_concurrent_migrations)
        return used

    # -- a whole plan -----------------------------------------------------------------------------------
    def admit(self, actions: Sequence[Action]) -> tuple[list[Action], list[str]]:
        """The actions that pass, unit by unit, in plan order (each with ``reason.budget_used``), and one
        note per dropped action: ``<why>: dropped <type> on <instance>``."""
        kept: set[int] = set()
        notes: dict[int, str] = {}
        for unit in units(actions):
            taken: list[tuple[int, frozenset[str]]] = []
            failed: tuple[int, str] | None = None
            for position in unit:
                action = actions[position]
                why = self.refusal(action)
                if why is not None and why.startswith(COOLDOWN) and action.type in HOLDS and len(unit) > 1:
                    notes[position] = why  # held already (or more): its migrations stand on their own
                    continue
                if why is not None:
                    failed = (position, why)
                    break
                taken.append((position, self.take(action)))
                action.reason.budget_used = self.used(action)
            if failed is None:
                kept.update(position for position, _ in taken)
                continue
            for position, fresh in reversed(taken):
                self.give_back(actions[position], fresh)
            culprit, why = failed
            lead = actions[culprit]
            for position in unit:
                if position not in notes:
                    with_ = f"dependency: goes with {lead.type.value} on {lead.instance_id}, dropped by {why}"
                    notes[position] = why if position == culprit else with_
        dropped = [f"{notes[p]}: dropped {actions[p].type.value} on {actions[p].instance_id}" for p in sorted(notes)]
        return [a for p, a in enumerate(actions) if p in kept], dropped
