"""One limit engine: the budget the allocator plans within and the guardrails enforce, counted the same way.

An instance is touched by a plan when an action of the plan changes its state or its work, or acts for it
(the instance an action names, but for ``notify`` and ``none``; a migration's target; the instances a
scale-down removes); the fleet shares count distinct touched instances. That and the other terms (subject,
charge, unit, buffer for scale-backs) are defined in :mod:`forewarn.policy.touch`.

:class:`LimitEngine` counts every limit of :class:`Caps` over one plan, seeded from the charges and the
migrations still in flight: the allocator asks it before it emits each action (so it never plans what the
guardrails would drop), and :func:`forewarn.policy.guardrails.enforce` admits the plan through a fresh one,
unit by unit (dependent actions are kept or dropped together).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from forewarn.policy.touch import (
    COOLDOWN,
    HOLDS,
    PASSIVE,
    SEVERITY,
    ActionRecord,
    anchors,
    named,
    touched,
    units,
)
from forewarn.schemas import Action, ActionType, VelocityLimits

if TYPE_CHECKING:
    from forewarn.policy.schema import Guardrails

__all__ = [
    "COOLDOWN",
    "HOLDS",
    "PASSIVE",
    "SEVERITY",
    "ActionRecord",
    "Caps",
    "LimitEngine",
    "anchors",
    "named",
    "share",
    "touched",
    "units",
]


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
        needs = anchors(actions)
        for unit in units(actions):
            orphan = unit[0] in needs and not any(p in kept or p > unit[0] for p in needs[unit[0]])
            if orphan:
                back = actions[needs[unit[0]][0]]
                notes[unit[0]] = f"dependency: reserved for scale-back on {back.instance_id}, dropped"
                continue
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
