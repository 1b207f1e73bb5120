"""How the applier hands one action's change to an orchestrator.

An :class:`ActionRunner` is called as ``runner(action, verb, call)`` for each change the applier makes to
the cloud (``verb`` is ``"execute"`` or ``"revert"``) and must return ``call()``'s result or raise its
error. ``call`` is idempotent by key, so a runner may call it again after a transient error: retries are
the runner's job (the Prefect runner in ``flows/apply.py`` makes each call a task run with retries). Without
a runner, the applier calls directly with its own tenacity retries. The applier itself imports no
orchestrator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from forewarn.schemas import Action

T = TypeVar("T")


class ActionRunner(Protocol):
    """Runs one change of one action; see the module docstring."""

    def __call__(self, action: Action, verb: str, call: Callable[[], T], /) -> T: ...
