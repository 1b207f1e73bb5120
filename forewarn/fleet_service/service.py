"""The fleet: its timeline, its simulated cloud and its clock, behind one lock.

As fleet time passes, :meth:`FleetService.advance` applies the timeline's events in time order to the cloud:
a task ends (with its split chunks), an instance is repaired (back as new), an instance fails (its tasks are
interrupted: recorded, left where they are for the cycle to restore), a task arrives on its instance (or on
the freest instance up when its own is down). The cursor moves in the same atomic write as the cloud, so each
event is applied exactly once across crashes and restarts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from forewarn.cloud import SimulatedCloud, root_id
from forewarn.errors import InputError
from forewarn.fleet_service.chunks import Timeline
from forewarn.fleet_service.config import FleetConfig, load_config, save_config
from forewarn.fleet_service.exposition import render
from forewarn.schemas import Instance
from forewarn.telemetry.sources import Pulled

CLOUD_FILE = "cloud.json"
EPSILON = timedelta(microseconds=1)
ORDER = {"end": 0, "repair": 1, "fail": 2, "add": 3}
KEEP_INTERRUPTED = 1000


class FleetService:
    """One fleet in ``state_dir`` (see the package docstring).

    Args:
        state_dir: where ``fleet.json``, ``cloud.json`` and ``chunks/`` live.
        config: the fleet; saved on the first start, read on later ones.
    """

    def __init__(self, state_dir: Path, config: FleetConfig) -> None:
        from forewarn.compose import fleet_cloud

        self.state_dir = state_dir
        self.config = config
        save_config(state_dir, config)
        self.timeline = Timeline(config, state_dir / "chunks")
        self.lock = threading.RLock()
        self.cloud: SimulatedCloud = fleet_cloud(state_dir / CLOUD_FILE, self._instances())
        self.extra: dict[str, Any] = self.cloud.extra  # type: ignore[attr-defined]
        self.extra.setdefault("cursor", (self.timeline.origin - EPSILON).isoformat())
        self.extra.setdefault("interrupted", [])

    @classmethod
    def open(cls, state_dir: Path) -> FleetService:
        config = load_config(state_dir)
        if config is None:
            raise InputError(f"no fleet in {state_dir}: start one with `forewarn fleet serve`")
        return cls(state_dir, config)

    def now(self) -> datetime:
        return self.config.now()

    def _instances(self) -> list[Instance]:
        from forewarn.dataset import Dataset
        from forewarn.dataset_fleet import instances_from

        empty = pd.DataFrame({"instance_id": [], "timestamp": []})
        return instances_from(Dataset(telemetry=empty, failures=empty, instances=self.timeline.instances))

    @contextmanager
    def held(self) -> Iterator[None]:
        """The lock, with the cloud brought up to fleet now first."""
        with self.lock:
            self.advance()
            yield

    # -- time passing ------------------------------------------------------------------------------------------
    def advance(self, until: datetime | None = None) -> int:
        """Apply every event in ``(cursor, until]`` (default: now); returns how many were applied."""
        with self.lock:
            cursor = pd.Timestamp(self.extra["cursor"])
            end = pd.Timestamp(until or self.now())
            if end <= cursor:
                return 0
            events = self._events(cursor, end)
            if not events:
                self.extra["cursor"] = end.isoformat()
                return 0
            cloud = self.cloud
            cloud.autosave = False  # type: ignore[attr-defined]
            try:
                for when, kind, subject in events:
                    self._apply(when, kind, subject)
                self.extra["cursor"] = end.isoformat()
            finally:
                cloud.autosave = True  # type: ignore[attr-defined]
                cloud.save()  # type: ignore[attr-defined]
            return len(events)

    def _events(self, lo: pd.Timestamp, hi: pd.Timestamp) -> list[tuple[pd.Timestamp, str, Any]]:
        found: list[tuple[pd.Timestamp, str, Any]] = []
        for chunk in self.timeline.chunks(lo - pd.Timedelta(days=1), hi):
            f = chunk.failures
            for iid, at, minutes in zip(f["instance_id"], f["timestamp"], f["recovery_minutes"], strict=True):
                found.append((at, "fail", str(iid)))
                found.append((at + pd.Timedelta(minutes=float(minutes)), "repair", str(iid)))
            w = chunk.workloads
            for row in w.itertuples(index=False):
                found.append((row.start, "add", row))
                if not pd.isna(row.end):
                    found.append((row.end, "end", str(row.task_id)))
        return sorted((e for e in found if lo < e[0] <= hi), key=lambda e: (e[0], ORDER[e[1]], str(e[2])[:40]))

    def _apply(self, when: pd.Timestamp, kind: str, subject: Any) -> None:
        cloud = self.cloud
        if kind == "end":
            for task in cloud.list_tasks():
                if root_id(task.task_id) == subject:
                    cloud.end_task(task.task_id)
        elif kind == "repair":
            cloud.repair_instance(subject)
        elif kind == "fail":
            at = when.to_pydatetime()
            hit = [t.task_id for t in cloud.list_tasks() if t.instance_id == subject]
            cloud.fail_instance(subject, at=at)
            log = self.extra["interrupted"]
            log += [{"task_id": t, "instance_id": subject, "at": at.isoformat()} for t in hit]
            del log[:-KEEP_INTERRUPTED]
        elif kind == "add":
            self._arrive(subject)

    def _arrive(self, row: Any) -> None:
        from forewarn.dataset_fleet import workload_tasks

        cloud = self.cloud
        task = workload_tasks(pd.DataFrame([row._asdict()]))[0]
        up = [i.instance_id for i in cloud.list_instances() if i.state.value == "running"]
        if task.instance_id not in up and up:
            task = task.model_copy(update={"instance_id": max(up, key=lambda i: cloud.free(i)[0])})
        cloud.add_task(task)

    # -- reads -------------------------------------------------------------------------------------------------
    def pull(self, since: datetime | None, until: datetime) -> Pulled:
        """What the fleet emitted in ``(since, until]`` (``until`` capped at now; ``since`` None: from the origin).

        A failure whose repair is after ``until`` comes with ``recovery_minutes`` NaN, and its recovery in the
        pull whose window holds the repair; instances come with the first pull (``since`` None).
        """
        end = pd.Timestamp(min(until, self.now()))
        lo = pd.Timestamp(since) if since is not None else self.timeline.origin - EPSILON
        if end <= lo:
            return Pulled(until=end.to_pydatetime())
        chunks = self.timeline.chunks(lo - pd.Timedelta(days=1), end)

        def frame(name: str, column: str) -> pd.DataFrame:
            parts = [getattr(c, name) for c in chunks]
            whole = pd.concat(parts, ignore_index=True)
            return whole[(whole[column] > lo) & (whole[column] <= end)].reset_index(drop=True)

        failures = frame("failures", "timestamp")
        repaired = failures["timestamp"] + pd.to_timedelta(failures["recovery_minutes"], unit="min")
        failures.loc[repaired > end, "recovery_minutes"] = float("nan")
        every = pd.concat([c.failures for c in chunks], ignore_index=True)
        back = every["timestamp"] + pd.to_timedelta(every["recovery_minutes"], unit="min")
        late = every[(every["timestamp"] <= lo) & (back > lo) & (back <= end)]
        recoveries = late[["instance_id", "timestamp", "recovery_minutes"]].reset_index(drop=True)
        return Pulled(
            until=end.to_pydatetime(),
            telemetry=frame("telemetry", "timestamp"),
            errors=frame("errors", "timestamp"),
            failures=failures,
            recoveries=recoveries,
            workloads=frame("workloads", "start"),
            instances=self._instances() if since is None else [],
        )

    def metrics(self, at: datetime | None = None) -> str:
        """The exposition text at ``at`` (default and cap: now)."""
        now = self.now()
        when = min(at, now) if at is not None else now
        index = max(0, self.timeline.index_of(when))
        chunk = self.timeline.chunk(index)
        return render(chunk, self.timeline.instances, when, self.config.step_minutes, when.timestamp())

    def read_telemetry(self, instance_ids: list[str], start: datetime, end: datetime) -> pd.DataFrame:
        """Telemetry in ``[start, end]`` (capped at now) of the instances named, as a cloud's agent keeps it."""
        end = min(end, self.now())
        chunks = self.timeline.chunks(start, end)
        if not chunks:
            return pd.DataFrame({"instance_id": pd.Series(dtype=str), "timestamp": pd.Series(dtype="M8[ns, UTC]")})
        whole = pd.concat([c.telemetry for c in chunks], ignore_index=True)
        keep = whole["instance_id"].isin(instance_ids) & whole["timestamp"].between(start, end)
        return whole[keep].reset_index(drop=True)

    def status(self) -> dict[str, Any]:
        """Now, size, failed instances and the actions in force."""
        with self.held():
            state = self.cloud.state  # type: ignore[attr-defined]
            return {
                "now": self.now().isoformat(),
                "start": self.timeline.origin.isoformat(),
                "speed": self.config.speed,
                "size": self.config.size,
                "seed": self.config.seed,
                "scenario": self.config.scenario,
                "failure_rate_per_day": self.config.failure_rate_per_day,
                "tasks": len(state.tasks),
                "failed": {k: v.isoformat() for k, v in sorted(state.failed.items())},
                "cordoned": sorted(state.cordoned),
                "reserved": dict(sorted(state.reserved.items())),
                "scaled": dict(sorted(state.factors.items())),
                "snapshots": len(self.cloud._snapshots),  # type: ignore[attr-defined]
                "keys": len(self.cloud._results),  # type: ignore[attr-defined]
                "interrupted": len(self.extra["interrupted"]),
            }

    def save(self) -> None:
        with self.lock:
            self.cloud.save()  # type: ignore[attr-defined]


def open_or_create(state_dir: Path, given: dict[str, Any], speed: float | None, make: Any) -> FleetService:
    """The fleet of ``state_dir``: the saved one (options that would change what it is are refused; a new speed
    continues the same timeline from now), or a new one from ``make()``."""
    saved = load_config(state_dir)
    if saved is None:
        return FleetService(state_dir, make())
    for name, value in given.items():
        if value is not None and getattr(saved, name) != value:
            raise InputError(
                f"the fleet in {state_dir} has {name.replace('_', '-')} {getattr(saved, name)}, not {value}: "
                "leave the option out, or use another --state-dir for another fleet",
                field=f"--{name.replace('_', '-')}",
            )
    if speed is not None and speed != saved.speed:
        saved = saved.rebased(speed)
    return FleetService(state_dir, saved)
