"""The simulated cloud with a memory: its fleet, idempotency keys and snapshots live in a JSON file.

Each flow run is a new process; without this the simulated fleet would be rebuilt on every cycle and no
action would outlive the cycle that took it. The file is rewritten atomically (temporary file, then
rename) after every change, so a process killed mid-write leaves the previous state whole.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from adapters.fleet import FleetState
from adapters.simulated import SimulatedAdapter
from forewarn.errors import InputError
from forewarn.schemas import Instance, Task

T = TypeVar("T")
VERSION = 1


def dump_state(state: FleetState) -> dict[str, Any]:
    """A FleetState as JSON data."""
    return {
        "instances": [i.model_dump(mode="json") for i in state.instances.values()],
        "tasks": [t.model_dump(mode="json") for t in state.tasks.values()],
        "cordoned": sorted(state.cordoned),
        "reserved": state.reserved,
        "failed": {k: v.isoformat() for k, v in state.failed.items()},
        "left": state.left,
        "auto_count": state.auto_count,
        "moved": state.moved,
        "nominal": {k: list(v) for k, v in state.nominal.items()},
        "factors": state.factors,
    }


def load_state(data: dict[str, Any]) -> FleetState:
    """The FleetState that :func:`dump_state` wrote."""
    instances = [Instance.model_validate(i) for i in data["instances"]]
    tasks = [Task.model_validate(t) for t in data["tasks"]]
    return FleetState(
        instances={i.instance_id: i for i in instances},
        tasks={t.task_id: t for t in tasks},
        cordoned=set(data["cordoned"]),
        reserved={k: float(v) for k, v in data["reserved"].items()},
        failed={k: datetime.fromisoformat(v) for k, v in data["failed"].items()},
        left=dict(data["left"]),
        auto_count=int(data["auto_count"]),
        moved=int(data["moved"]),
        nominal={k: (float(v[0]), float(v[1])) for k, v in data["nominal"].items()},
        factors={k: float(v) for k, v in data["factors"].items()},
    )


class PersistentSimulatedAdapter(SimulatedAdapter):
    """A :class:`SimulatedAdapter` whose state survives the process (see the module docstring).

    Args:
        path: the state file; read when it exists, else the fleet starts from ``instances`` and ``tasks``.

    Attributes:
        extra: a driver's own JSON data (the fleet service's event cursor), saved in the same atomic write as
            the fleet, so the two never disagree after a crash.
        autosave: save after every change; a driver that applies a batch of events turns it off and calls
            :meth:`save` once at the end.
    """

    def __init__(
        self, path: Path, instances: Sequence[Instance], tasks: Sequence[Task], *, dry_run: bool = False
    ) -> None:
        super().__init__(instances, tasks, dry_run=dry_run)
        self.path = path
        self.extra: dict[str, Any] = {}
        self.autosave = True
        if path.exists():
            try:
                data = json.loads(path.read_text())
                self.state = load_state(data["state"])
                self._snapshots = {k: load_state(v) for k, v in data["snapshots"].items()}
                self._results = {k: (m, r) for k, (m, r) in data["results"].items()}
                self.extra = dict(data.get("extra", {}))
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError(
                    f"{path}: not a simulated fleet state file ({exc}); move it away to start anew"
                ) from None
        else:
            self.save()

    def save(self) -> None:
        """Write the state atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "version": VERSION,
            "state": dump_state(self.state),
            "snapshots": {k: dump_state(v) for k, v in self._snapshots.items()},
            "results": {k: list(v) for k, v in self._results.items()},
            "extra": self.extra,
        }
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".fleet-", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.replace(tmp, self.path)

    def fail_instance(self, instance_id: str, at: datetime | None = None) -> None:
        super().fail_instance(instance_id, at)
        self._autosave()

    def recover_instance(self, instance_id: str) -> None:
        super().recover_instance(instance_id)
        self._autosave()

    def _act(self, method: str, key: str, what: str, effect: Callable[[], T]) -> T | None:
        result = super()._act(method, key, what, effect)
        if not self.dry_run:
            self.save()
        return result

    def _autosave(self) -> None:
        if self.autosave:
            self.save()
