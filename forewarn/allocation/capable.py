"""Plan only what the cloud can do: decisions and actions checked against the adapter's capabilities.

Before allocation, a decision whose action the adapter cannot carry out is replaced by the next best action
the policy allows (its rules and fallback use that type) and the adapter can do, in the order of
:data:`SUBSTITUTES`; failing that it is dropped. After allocation, an action the allocator made on its own
(a scale-up for work that found no room) that the adapter cannot do is dropped: the work waits where it is.
Either way the plan says so in a note, and nothing is sent to the cloud to fail.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from forewarn.policy.actions import default_params, get_action
from forewarn.schemas import Action, ActionType, Decision

SUBSTITUTES: dict[ActionType, tuple[ActionType, ...]] = {
    ActionType.MIGRATE: (ActionType.CORDON, ActionType.SCALE_BACK, ActionType.NOTIFY),
    ActionType.RESTORE_SNAPSHOT: (ActionType.MIGRATE, ActionType.CORDON, ActionType.NOTIFY),
    ActionType.SCALE_BACK: (ActionType.CORDON, ActionType.NOTIFY),
    ActionType.CORDON: (ActionType.SCALE_BACK, ActionType.NOTIFY),
    ActionType.RESERVE_BUFFER: (ActionType.NOTIFY,),
    ActionType.AUTOSCALE: (),
    ActionType.RELEASE: (),
}
"""For each action, what may stand in for it, best first."""


def fit_decisions(
    decisions: Sequence[Decision], can: Collection[ActionType], allowed: Collection[ActionType], cloud: str
) -> tuple[list[Decision], list[str]]:
    """The decisions the cloud can carry out (substituted where needed) and a note per change."""
    kept: list[Decision] = []
    notes: list[str] = []
    for decision in decisions:
        kind = decision.action
        if kind in can or kind is ActionType.NONE:
            kept.append(decision)
            continue
        stand_in = next((s for s in SUBSTITUTES.get(kind, ()) if s in can and s in allowed), None)
        if stand_in is None:
            notes.append(
                f"capability: {cloud} cannot {kind.value}; dropped {kind.value} on {decision.instance_id} "
                f"(rule {decision.rule}; no other action the policy allows stands in)"
            )
            continue
        notes.append(
            f"capability: {cloud} cannot {kind.value}; {stand_in.value} on {decision.instance_id} instead "
            f"(rule {decision.rule})"
        )
        params = get_action(stand_in.value).process(default_params(stand_in.value))  # the policy's defaults
        kept.append(decision.model_copy(update={"action": stand_in, "params": params}))
    return kept, notes


def fit_actions(actions: Sequence[Action], can: Collection[ActionType], cloud: str) -> tuple[list[Action], list[str]]:
    """The allocator's actions less those the cloud cannot carry out, and a note per dropped one."""
    kept = [a for a in actions if a.type in can or a.type is ActionType.NONE]
    notes = []
    for action in actions:
        if action.type in can or action.type is ActionType.NONE:
            continue
        what = "change a group's size" if action.type is ActionType.AUTOSCALE else action.type.value
        waiting = action.params.get("tasks") or []
        extra = f"; {', '.join(map(str, waiting))} wait where they are" if waiting else ""
        notes.append(f"capability: {cloud} cannot {what}; dropped {action.type.value} on {action.instance_id}{extra}")
    return kept, notes
