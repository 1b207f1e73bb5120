"""The order a plan's actions run in, fixed when the plan is journalled.

The allocator lists a scale-back before the migrations that make room for it; the cloud refuses a
scale-back while the instance's tasks would not fit. So a scale-back runs after the plan's last migration
off the same instance. Everything else keeps the planner's order. Rollback reverts in reverse of this order.
"""

from __future__ import annotations

from collections.abc import Sequence

from forewarn.schemas import Action, ActionType


def run_order(actions: Sequence[Action]) -> list[Action]:
    """``actions`` with each scale-back moved just after the last migration off its instance, if later."""
    ordered = list(actions)
    for back in [a for a in actions if a.type == ActionType.SCALE_BACK]:
        moves = [i for i, a in enumerate(ordered) if a.type == ActionType.MIGRATE and a.instance_id == back.instance_id]
        position = ordered.index(back)
        if moves and moves[-1] > position:
            ordered.pop(position)
            ordered.insert(moves[-1], back)
    return ordered
