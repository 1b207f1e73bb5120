"""What an action touches and which actions go together: the words the limit engine, the guardrails and the
claims share (one meaning each).

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
    buffer for scale-backs: a reserve-buffer the planner made for the plan's scale-backs (it carries the rule
        of a scale-back in the plan); it is dropped when every scale-back of that rule in the plan is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from forewarn.policy.actions import PolicyModel
from forewarn.schemas import Action, ActionType, UtcDatetime

PASSIVE = frozenset({ActionType.NOTIFY, ActionType.NONE})
"""Action types that do not change the fleet: they touch nothing and start no cooldown."""

SEVERITY: dict[ActionType, int] = {
    ActionType.NONE: 0,
    ActionType.RELEASE: 0,
    ActionType.NOTIFY: 0,
    ActionType.RESERVE_BUFFER: 1,
    ActionType.AUTOSCALE: 1,
    ActionType.SCALE_BACK: 2,
    ActionType.RESTORE_SNAPSHOT: 3,
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


def anchors(actions: Sequence[Action]) -> dict[int, list[int]]:
    """Position of each buffer reserved for scale-backs -> positions of those scale-backs (module docstring)."""
    backs: dict[str, list[int]] = {}
    for position, action in enumerate(actions):
        if action.type is ActionType.SCALE_BACK and action.reason.rule:
            backs.setdefault(action.reason.rule, []).append(position)
    return {
        position: backs[action.reason.rule]
        for position, action in enumerate(actions)
        if action.type is ActionType.RESERVE_BUFFER and action.reason.rule in backs
    }


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
