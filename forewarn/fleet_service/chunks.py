"""The fleet's timeline: one simulated day per chunk, deterministic from the fleet's seed and the day's index.

Chunk ``k`` is ``simulate`` (under the fleet's scenario) of one day from ``origin + k days`` with a seed derived
from ``(seed, k)``, then joined to the day before: an instance still down from a failure of day ``k - 1`` shows
no telemetry or error lines until its repair, and a failure of day ``k`` that would start in that downtime is
dropped. Repairs are capped at 12 hours (``SimConfig.max_recovery_minutes``), so a chunk depends on its own day
and the raw day before only. Task ids carry the day (``t00003-000012``).

Each chunk is cached under ``chunks/<k>/`` as parquet files, with the cumulative counters (CPU idle seconds,
bytes read and written, network errors) at its end, from which :mod:`.exposition` builds node_exporter counters.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from forewarn.dataset import Dataset
from forewarn.fleet_service.config import FleetConfig
from forewarn.sim import SimConfig
from forewarn.sim.scenarios import simulate_scenario

DAY = timedelta(days=1)
FRAMES = ("telemetry", "errors", "failures", "workloads")
COUNTERS = ("idle_seconds", "busy_seconds", "read_bytes", "written_bytes", "net_errors")
CACHED = 3


@dataclass
class Chunk:
    """One day of the timeline, and the counters at its start and end (indexed by instance id)."""

    index: int
    start: pd.Timestamp
    telemetry: pd.DataFrame
    errors: pd.DataFrame
    failures: pd.DataFrame
    workloads: pd.DataFrame
    before: pd.DataFrame
    after: pd.DataFrame


def chunk_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def increments(telemetry: pd.DataFrame, step_minutes: int) -> pd.DataFrame:
    """Per telemetry row, what it adds to each counter over its step."""
    seconds = step_minutes * 60.0
    return pd.DataFrame(
        {
            "idle_seconds": (1.0 - telemetry["cpu"]) * seconds,
            "busy_seconds": telemetry["cpu"] * seconds,
            "read_bytes": telemetry["disk_read"] * 1e6 * seconds,
            "written_bytes": telemetry["disk_write"] * 1e6 * seconds,
            "net_errors": telemetry["error_count"] * step_minutes,
        },
        index=telemetry.index,
    )


class Timeline:
    """The chunks of one fleet, simulated on demand and cached under ``directory``."""

    def __init__(self, config: FleetConfig, directory: Path) -> None:
        self.config = config
        self.directory = directory
        self.origin = pd.Timestamp(config.origin)
        self._memory: OrderedDict[int, Chunk] = OrderedDict()
        self._instances: pd.DataFrame | None = None

    def index_of(self, when: datetime | pd.Timestamp) -> int:
        return int((pd.Timestamp(when) - self.origin) // pd.Timedelta(DAY))

    def start_of(self, index: int) -> pd.Timestamp:
        return self.origin + pd.Timedelta(DAY) * index

    @property
    def instances(self) -> pd.DataFrame:
        """The fleet's instances (those of day 0: the same machines every day)."""
        if self._instances is None:
            self._instances = self._raw(0).instances
        assert self._instances is not None
        return self._instances

    def chunk(self, index: int) -> Chunk:
        """Chunk ``index`` (>= 0), from memory, the cache, or simulated (with every chunk before it)."""
        if index in self._memory:
            self._memory.move_to_end(index)
            return self._memory[index]
        for k in range(index + 1):  # the counters need every day before
            if not (self.directory / f"{k:06d}" / "after.parquet").exists():
                self._write(k)
        found = self._read(index)
        self._memory[index] = found
        while len(self._memory) > CACHED:
            self._memory.popitem(last=False)
        return found

    def chunks(self, lo: datetime | pd.Timestamp, hi: datetime | pd.Timestamp) -> list[Chunk]:
        """The chunks that hold times in ``[lo, hi]`` (none before the origin)."""
        first, last = max(0, self.index_of(lo)), self.index_of(hi)
        return [self.chunk(k) for k in range(first, last + 1)] if last >= 0 else []

    # -- simulation --------------------------------------------------------------------------------------------
    def _raw(self, index: int) -> Dataset:
        c = self.config
        sim = SimConfig(
            instances=c.size,
            days=1.0,
            seed=chunk_seed(c.seed, index),
            step_minutes=c.step_minutes,
            start=self.start_of(index).to_pydatetime(),
            failure_rate_per_day=c.failure_rate_per_day,
        )
        return simulate_scenario(c.scenario, sim)

    def _final(self, index: int) -> dict[str, pd.DataFrame]:
        raw = self._raw(index)
        down: dict[str, pd.Timestamp] = {}
        if index > 0:
            before = self._raw(index - 1).failures
            ends = before["timestamp"] + pd.to_timedelta(before["recovery_minutes"], unit="min")
            for iid, end in zip(before["instance_id"], ends, strict=True):
                if end > self.start_of(index):
                    down[str(iid)] = max(end, down.get(str(iid), end))
        gap = pd.Timedelta(minutes=2 * self.config.step_minutes)
        workloads = raw.workloads if raw.workloads is not None else pd.DataFrame({"task_id": pd.Series(dtype=str)})
        frames = {
            "telemetry": _after(raw.telemetry, down, pd.Timedelta(0)),
            "errors": _after(
                raw.errors if raw.errors is not None else pd.DataFrame(),
                down,
                pd.Timedelta(minutes=self.config.step_minutes),
            ),
            "failures": _after(raw.failures, down, gap),
            "workloads": workloads.assign(task_id=[f"t{index:05d}-{t.split('-', 1)[1]}" for t in workloads["task_id"]]),
        }
        return frames

    def _write(self, index: int) -> None:
        frames = self._final(index)
        previous = (
            pd.read_parquet(self.directory / f"{index - 1:06d}" / "after.parquet")
            if index > 0
            else pd.DataFrame(0.0, index=pd.Index(self.instances["instance_id"], name="instance_id"), columns=COUNTERS)
        )
        telemetry = frames["telemetry"]
        added = increments(telemetry, self.config.step_minutes).groupby(telemetry["instance_id"]).sum()
        after = previous.add(added.reindex(previous.index, fill_value=0.0), fill_value=0.0)
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.directory, prefix=".chunk-"))
        for name, frame in frames.items():
            frame.to_parquet(tmp / f"{name}.parquet", index=False)
        previous.to_parquet(tmp / "before.parquet")
        after.to_parquet(tmp / "after.parquet")  # written last: its presence marks a whole chunk
        target = self.directory / f"{index:06d}"
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)

    def _read(self, index: int) -> Chunk:
        where = self.directory / f"{index:06d}"
        frames = {name: pd.read_parquet(where / f"{name}.parquet") for name in FRAMES}
        return Chunk(
            index=index,
            start=self.start_of(index),
            before=pd.read_parquet(where / "before.parquet"),
            after=pd.read_parquet(where / "after.parquet"),
            **frames,
        )


def _after(frame: pd.DataFrame, down: dict[str, pd.Timestamp], margin: pd.Timedelta) -> pd.DataFrame:
    """Rows not inside the carried-over downtime of their instance (plus ``margin``)."""
    if not down or frame.empty:
        return frame.reset_index(drop=True)
    limit = frame["instance_id"].map(down)
    keep = limit.isna() | (frame["timestamp"] >= limit + margin)
    return frame.loc[keep].reset_index(drop=True)
