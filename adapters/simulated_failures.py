"""Failures of the simulated cloud: the fleet's failed instances with their times, healthy again once repaired.

The persistent simulated cloud (:mod:`adapters.persistent`) is read from its state file at every pull, so a
fleet that another process drives (``forewarn fleet serve``, replay) is seen as it is now.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapters.cloud_failures import Failure, Observed
from adapters.fleet import FleetState
from adapters.persistent import load_state

TYPE = "instance-failure"
CAUSE = "the simulated cloud reports the instance failed"


class SimulatedFailures:
    """Reads ``FleetState.failed`` of a simulated adapter (its file, for the persistent one)."""

    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter

    def state(self) -> FleetState:
        path = getattr(self.adapter, "path", None)
        if isinstance(path, Path) and path.is_file():
            return load_state(json.loads(path.read_text())["state"])
        state: FleetState = self.adapter.state
        return state

    def observe(self, since: datetime | None, until: datetime) -> Observed:
        state = self.state()
        failed = {iid: at if at.tzinfo else at.replace(tzinfo=UTC) for iid, at in state.failed.items()}
        return Observed(
            failures=[Failure(iid, at, TYPE, CAUSE) for iid, at in failed.items() if iid in state.instances],
            healthy={iid: None for iid in state.instances if iid not in failed},
            present=set(state.instances),
        )
