"""Undo data: what an action's ``execute`` returned so that its ``revert`` can put things back.

The applier journals it inside the action's params under :data:`UNDO` (the journal keeps the first record and
refuses plans that set the key themselves); the handlers (:mod:`forewarn.execution.actions`) and
``forewarn plan show`` read it back. Both sides import it from here, so the journal does not depend on the
handlers.
"""

from __future__ import annotations

from typing import Any

from forewarn.schemas import Action

UNDO = "_undo"
"""The params key under which the journal keeps what ``execute`` returned; plans may not set it."""


def undo_of(action: Action) -> dict[str, Any]:
    """What ``execute`` recorded for the revert (empty when it recorded nothing)."""
    return dict(action.params.get(UNDO) or {})


def own_params(action: Action) -> dict[str, Any]:
    """The action's params as the plan wrote them, without the undo data."""
    return {k: v for k, v in action.params.items() if k != UNDO}
