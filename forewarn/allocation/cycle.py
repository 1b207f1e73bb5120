"""One planning cycle: the fleet being changed, the budget spent so far and what the plan says.

Every action goes through :meth:`Cycle.emit`, which asks the limit engine the guardrails use
(:class:`forewarn.policy.limits.LimitEngine`, seeded with the guardrails' state when the planner is given
one): what the allocator plans, the guardrails let through. The fleet's arrays (``touched``, ``windowed``,
``incoming``) mirror the engine's counts so target selection stays vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from forewarn.allocation.model import Fleet
from forewarn.allocation.placement import CAPACITY, FLEET_FRACTION, VELOCITY
from forewarn.policy.limits import Caps, LimitEngine, touched
from forewarn.schemas import Action, ActionReason, ActionType, Decision, VelocityLimits

COOLDOWN = "cooldown"
WHY = {
    VELOCITY: "velocity limit reached (max_concurrent_migrations or max_actions_per_cycle)",
    FLEET_FRACTION: "max_fleet_fraction reached: no more instances may be touched this cycle",
    CAPACITY: "no lower-risk instance has room for it",
    COOLDOWN: "its instance is in its cooldown (cooldown-minutes)",
}


@dataclass
class Cycle:
    """Mutable state of one call to the planner; ``engine`` counts the limits (default: ``limits`` alone)."""

    fleet: Fleet
    limits: VelocityLimits
    migration_cost: float
    engine: LimitEngine | None = None
    actions: list[Action] = field(default_factory=list)
    explanations: list[str] = field(default_factory=list)
    unplaced: list[str] = field(default_factory=list)
    short: list[int] = field(default_factory=list)
    short_decision: Decision | None = None
    held: int = 0
    moved: set[str] = field(default_factory=set)
    refused: str | None = None
    """Why the last :meth:`emit` returned None."""

    def __post_init__(self) -> None:
        fleet = self.fleet
        if self.engine is None:
            self.engine = LimitEngine(Caps.of_velocity(self.limits), fleet.n_instances)
        index = fleet.index
        rows = [index[i] for i in self.engine.window if i in index]
        fleet.windowed[np.asarray(rows, dtype=np.int64)] = True
        fleet.window_cap = self.engine.window_cap
        for target, count in self.engine.per_target.items():
            if target in index:
                fleet.incoming[index[target]] += count

    @property
    def limit(self) -> LimitEngine:
        assert self.engine is not None
        return self.engine

    @property
    def migrations(self) -> int:
        """Migrations of this plan plus those still in flight."""
        return self.limit.migrations

    def velocity(self) -> VelocityLimits:
        """The limits as :func:`select` should see them: concurrency capped by the actions left too."""
        left = min(self.actions_left(), self.limit.type_left(ActionType.MIGRATE))
        room = min(self.limits.max_concurrent_migrations, self.migrations + max(left, 0))
        return self.limits.model_copy(update={"max_concurrent_migrations": room})

    def actions_left(self) -> int:
        """Actions still allowed, less one held back for a scale-up request once capacity ran short."""
        return self.limits.max_actions_per_cycle - len(self.actions) - self.held

    def may_migrate_from(self, row: int) -> bool:
        """Whether work may leave instance ``row`` (no migration cooldown on it)."""
        return self.limit.cooldown(str(self.fleet.instance_ids[row]), ActionType.MIGRATE) is None

    def can_touch(self, rows: list[int]) -> bool:
        return self.limit.can_touch({str(self.fleet.instance_ids[row]) for row in rows})

    def emit(
        self,
        type_: ActionType,
        instance: int,
        decision: Decision | None,
        note: str,
        *,
        target: int | None = None,
        task_ids: list[str] | None = None,
        params: dict[str, object] | None = None,
    ) -> Action | None:
        """Append an action if the limits allow (None otherwise, with why in :attr:`refused` and a note),
        marking the instances it touches."""
        fleet = self.fleet
        action = Action(
            type=type_,
            instance_id=str(fleet.instance_ids[instance]),
            target_instance_id=None if target is None else str(fleet.instance_ids[target]),
            task_ids=task_ids or [],
            params=dict(params or {}),
        )
        held = "max-actions-per-cycle (the last action is kept for a scale-up)" if self.actions_left() <= 0 else None
        self.refused = self.limit.refusal(action) or held
        if self.refused is not None:
            self.explanations.append(f"guardrail {self.refused}: dropped {type_.value} on {action.instance_id}")
            return None
        self.limit.take(action)
        rows = [fleet.index[i] for i in touched(action) if i in fleet.index]
        fleet.touched[np.asarray(rows, dtype=np.int64)] = True
        action.reason = reason(decision, note, self.limit.used(action))
        self.actions.append(action)
        self.explanations.append(note)
        return action

    def miss(self, row: int, why: str, decision: Decision | None = None) -> None:
        """Record that task row ``row`` should have moved (as ``decision`` asked) and could not."""
        fleet = self.fleet
        task, source = str(fleet.task_ids[row]), int(fleet.task_instance[row])
        self.unplaced.append(task)
        where = fleet.instance_ids[source] if source >= 0 else "no instance"
        self.explanations.append(f"task {task} (cpu {fleet.task_cpu[row]:.2f}) stays on {where}: {WHY[why]}")
        if why == CAPACITY:
            self.short.append(row)
            if self.short_decision is None:
                self.short_decision = decision
            if not self.held and self.actions_left() > 0:
                self.held = 1


def reason(decision: Decision | None, note: str, budget: dict[str, float]) -> ActionReason:
    """The reason an action carries: its decision's score, band, features and rule, plus a note."""
    if decision is None:
        return ActionReason(note=note, budget_used=budget)
    return ActionReason(
        probability=decision.probability,
        band=decision.band,
        top_features=list(decision.top_features),
        rule=decision.rule,
        budget_used=budget,
        note=note,
    )
