"""One planning cycle: the fleet being changed, the velocity budget spent so far and what the plan says.

Every action goes through :meth:`Cycle.emit`, the single place where ``max_actions_per_cycle`` is counted;
``max_fleet_fraction`` is checked by :meth:`Cycle.can_touch` (and by target selection for migrations).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from forewarn.allocation.model import Fleet
from forewarn.allocation.placement import CAPACITY, FLEET_FRACTION, VELOCITY, touch_budget
from forewarn.schemas import Action, ActionReason, ActionType, Decision, VelocityLimits

WHY = {
    VELOCITY: "velocity limit reached (max_concurrent_migrations or max_actions_per_cycle)",
    FLEET_FRACTION: "max_fleet_fraction reached: no more instances may be touched this cycle",
    CAPACITY: "no lower-risk instance has room for it",
}


@dataclass
class Cycle:
    """Mutable state of one call to the planner."""

    fleet: Fleet
    limits: VelocityLimits
    migration_cost: float
    actions: list[Action] = field(default_factory=list)
    explanations: list[str] = field(default_factory=list)
    unplaced: list[str] = field(default_factory=list)
    short: list[int] = field(default_factory=list)
    short_decision: Decision | None = None
    migrations: int = 0
    held: int = 0
    moved: set[str] = field(default_factory=set)

    def velocity(self) -> VelocityLimits:
        """The limits as :func:`select` should see them: concurrency capped by the actions left too."""
        room = min(self.limits.max_concurrent_migrations, self.migrations + self.actions_left())
        return self.limits.model_copy(update={"max_concurrent_migrations": room})

    def actions_left(self) -> int:
        """Actions still allowed, less one held back for a scale-up request once capacity ran short."""
        return self.limits.max_actions_per_cycle - len(self.actions) - self.held

    def can_touch(self, rows: list[int]) -> bool:
        fresh = len({row for row in rows if not self.fleet.touched[row]})
        return fresh <= touch_budget(self.fleet, self.limits)

    def budget_used(self) -> dict[str, float]:
        return {
            "actions": float(len(self.actions)),
            "migrations": float(self.migrations),
            "instances_touched": float(self.fleet.touched.sum()),
        }

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
        touches: list[int] | None = None,
    ) -> Action | None:
        """Append an action if the budget allows (None otherwise), marking the instances it touches."""
        if self.actions_left() <= 0:
            self.explanations.append(f"{type_.value} on {self.fleet.instance_ids[instance]} dropped: {WHY[VELOCITY]}")
            return None
        rows = [instance] if touches is None else touches
        if not self.can_touch(rows):
            self.explanations.append(
                f"{type_.value} on {self.fleet.instance_ids[instance]} dropped: {WHY[FLEET_FRACTION]}"
            )
            return None
        self.fleet.touched[np.asarray(rows, dtype=np.int64)] = True
        if type_ is ActionType.MIGRATE:
            self.migrations += 1
        action = Action(
            type=type_,
            instance_id=str(self.fleet.instance_ids[instance]),
            target_instance_id=None if target is None else str(self.fleet.instance_ids[target]),
            task_ids=task_ids or [],
            params=dict(params or {}),
            reason=reason(decision, note, self.budget_used()),
        )
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
