"""Benchmark: do ingest and incremental materialize keep up with a fleet at one sample per minute?

A fleet of ``INSTANCES`` (default 10,000) reports six metrics every minute. The history database is filled
with the longest window's look-back (not timed, straight through the repository), materialize is brought up
to the start of the last :data:`PERIOD_MINUTES` period, and then that period arrives as one dataset-format
drop and is timed through ``ingest_files`` and ``materialize_history``, stage by stage:

- ingest: read (CSV parse), screen (row checks and the already-stored keys), validate (the Great
  Expectations suite), insert (samples, instances, quarantine), other (bookkeeping);
- materialize: read (the new rows, the late ones, the look-back kept by the run before, errors, failures,
  instances), windows (the feature computation), offline (the parquet part), online (the Feast push), keep
  (the look-back for the next run), other (registry, watermark).

Each stage is printed beside a floor measured in the same run on the same data: what the stage cannot go
below on this machine with the same tools (the CSV read by pandas alone; the same checks as one vectorised
pandas pass; the driver's bare executemany into an identically indexed scratch table; the driver's bare
fetch of the new rows plus pyarrow reading the kept look-back; one grouped pass over every sample read;
pyarrow writing the same frame; the driver's bare insert of the same (instance, feature) cells; pyarrow
writing the kept look-back). Per-instance costs scale with the fleet, so a smaller run is projected to
10,000 instances linearly (fixed costs scaled too: the projection errs high).
The loop keeps up when the projected total fits in one period. Peak RSS is sampled during the timed part.

Run: ``.venv/bin/python -m bench.ingest_materialize [INSTANCES]``; prints a table, then one JSON object.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import forewarn.features.incremental as incremental
import forewarn.ingest as ingest
from forewarn.dataset import Dataset, write_dataset
from forewarn.features import lookback
from forewarn.features.incremental import LOOKBACK, WATERMARK, materialize_history
from forewarn.features.store import FeatureStoreGlue
from forewarn.ingest import ingest_files, open_repository
from forewarn.settings import Settings
from forewarn.store.repository import Repository
from forewarn.store.watermarks import WatermarkStore
from forewarn.telemetry.instances import read_fleet
from forewarn.telemetry_rules import FRACTION_METRICS
from forewarn.validation import validate_telemetry

PERIOD_MINUTES = 5
"""How often materialize runs (prefect.yaml: every few minutes): the new rows of one run."""
TARGET = 10_000
METRICS = ("cpu", "memory", "disk_read", "disk_write", "net_latency_ms", "error_count")
START = pd.Timestamp("2026-03-01T00:00:00Z")


# -- the fleet ---------------------------------------------------------------------------------------------
def fleet_telemetry(ids: list[str], stamps: pd.DatetimeIndex, seed: int) -> pd.DataFrame:
    """One row per instance and minute; values in range for the screen and the suite."""
    rng = np.random.default_rng(seed)
    rows = len(ids) * len(stamps)
    frame = pd.DataFrame({"instance_id": np.repeat(ids, len(stamps)), "timestamp": np.tile(stamps, len(ids))})
    frame["cpu"] = rng.uniform(0.05, 0.95, rows).round(4)
    frame["memory"] = rng.uniform(0.2, 0.9, rows).round(4)
    frame["disk_read"] = rng.gamma(2.0, 50.0, rows).round(2)
    frame["disk_write"] = rng.gamma(2.0, 30.0, rows).round(2)
    frame["net_latency_ms"] = rng.gamma(3.0, 4.0, rows).round(3)
    frame["error_count"] = rng.poisson(0.05, rows).astype(float)
    return frame


def fleet_instances(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "instance_id": ids,
            "cpu_capacity": 8.0,
            "memory_capacity": 32.0,
            "group": [f"g{i % 20}" for i in range(len(ids))],
            "zone": [f"z{i % 3}" for i in range(len(ids))],
            "boot_time": START - pd.Timedelta(days=3),
        }
    )


def fleet_errors(ids: list[str], stamps: pd.DatetimeIndex, seed: int) -> pd.DataFrame:
    """About one error per hundred instance-minutes."""
    rng = np.random.default_rng(seed)
    count = max(1, len(ids) * len(stamps) // 100)
    return pd.DataFrame(
        {
            "instance_id": rng.choice(ids, count),
            "timestamp": rng.choice(stamps, count),
            "severity": "error",
            "category": rng.choice(["disk", "memory", "network", "kernel"], count),
            "message": "bench",
        }
    )


# -- stage timers ------------------------------------------------------------------------------------------
class Stages:
    """Seconds per stage, by wrapping the functions each stage calls (bench-only)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)

    def wrap(self, owner: Any, name: str, stage: str) -> None:
        original: Callable[..., Any] = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            began, cpu = time.perf_counter(), time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - began
                self.cpu[stage] += time.process_time() - cpu

        setattr(owner, name, timed)


@contextmanager
def peak_rss() -> Iterator[dict[str, float]]:
    """The peak resident set (MB) while the block runs, sampled every 20 ms from /proc."""
    found = {"mb": 0.0}
    page = os.sysconf("SC_PAGE_SIZE")
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            with open("/proc/self/statm") as handle:
                found["mb"] = max(found["mb"], int(handle.read().split()[1]) * page / 2**20)
            stop.wait(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        stop.set()
        thread.join()


# -- floors ------------------------------------------------------------------------------------------------
def _timed(work: Callable[[], Any]) -> float:
    began = time.perf_counter()
    work()
    return time.perf_counter() - began


def checks_floor(frame: pd.DataFrame, now: pd.Timestamp) -> float:
    """The screen's and the suite's checks as one vectorised pass: nulls, finite, non-negative, fractions in
    [0, 1], no future time, no duplicate key."""

    def work() -> None:
        values = frame[list(METRICS)].to_numpy()
        fractions = frame[[m for m in METRICS if m in FRACTION_METRICS]].to_numpy()
        stamps = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
        bad = ~np.isfinite(values).all(axis=1) | (values < 0).any(axis=1) | (fractions > 1).any(axis=1)
        bad |= frame["instance_id"].isna().to_numpy() | (stamps > now).to_numpy()
        bad |= frame.duplicated(["instance_id", "timestamp"]).to_numpy()
        assert not bad.any()

    return _timed(work)


def insert_floor(db: Path, new: pd.DataFrame) -> float:
    """The driver's bare executemany of the batch's samples into a scratch copy of the indexed table."""
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE floor_samples AS SELECT * FROM telemetry_samples WHERE 0")
        con.execute("CREATE INDEX floor_a ON floor_samples (instance_id, timestamp)")
        con.execute("CREATE INDEX floor_b ON floor_samples (batch_id)")
        con.execute("CREATE INDEX floor_c ON floor_samples (timestamp, instance_id, metric, value)")
        long = new.melt(id_vars=["instance_id", "timestamp"], var_name="metric", value_name="value")
        times = long["timestamp"].dt.tz_localize(None).dt.strftime("%Y-%m-%d %H:%M:%S.%f")
        rows = list(zip(long["instance_id"], times, long["metric"], long["value"].astype(float), strict=True))
        statement = (
            "INSERT INTO floor_samples (batch_id, instance_id, timestamp, metric, value) VALUES ('b', ?, ?, ?, ?)"
        )
        seconds = _timed(lambda: con.executemany(statement, rows))
        con.execute("DROP TABLE floor_samples")
    return seconds


def read_floor(db: Path, since: pd.Timestamp) -> tuple[float, int]:
    """The driver's bare fetch of the new rows (the caller adds pyarrow's read of the kept look-back)."""
    bound = since.tz_localize(None).strftime("%Y-%m-%d %H:%M:%S.%f")
    query = "SELECT id, instance_id, timestamp, metric, value FROM telemetry_samples WHERE timestamp > ?"
    with sqlite3.connect(db) as con:
        found: list[Any] = []
        seconds = _timed(lambda: found.extend(con.execute(query, (bound,)).fetchall()))
    return seconds, len(found)


def windows_floor(telemetry: pd.DataFrame) -> float:
    """One grouped pass over every sample read: the least a window over all of them can cost."""
    return _timed(lambda: telemetry.groupby("instance_id", sort=False)[list(METRICS)].cumsum())


def online_floor(cells: int) -> float:
    """The driver's bare insert of the pushed (instance, feature) cells into an indexed SQLite table."""
    with tempfile.TemporaryDirectory() as tmp, sqlite3.connect(Path(tmp) / "online.db") as con:
        con.execute("CREATE TABLE t (entity BLOB, feature TEXT, value BLOB, ts TEXT, PRIMARY KEY (entity, feature))")
        rows = [(f"i-{i // 64}".encode(), f"f{i % 64}", b"\x00" * 9, "2026-03-01") for i in range(cells)]
        return _timed(lambda: con.executemany("INSERT OR REPLACE INTO t VALUES (?, ?, ?, ?)", rows))


# -- the run -----------------------------------------------------------------------------------------------
def _fill_history(repo: Repository, ids: list[str], stamps: pd.DatetimeIndex) -> None:
    for first in range(0, len(ids), 1_000):
        part = ids[first : first + 1_000]
        repo.save_telemetry(fleet_telemetry(part, stamps, seed=first), source="bench-history")
    repo.save_errors(fleet_errors(ids, stamps, seed=1))


def run(instances: int = TARGET) -> dict[str, Any]:
    ids = [f"i-{i:06d}" for i in range(instances)]
    look_back = int(LOOKBACK / timedelta(minutes=1))
    cut = START + pd.Timedelta(minutes=look_back + PERIOD_MINUTES)
    old = pd.date_range(START + pd.Timedelta(minutes=1), cut, freq="1min")
    new_stamps = pd.date_range(cut + pd.Timedelta(minutes=1), periods=PERIOD_MINUTES, freq="1min")
    end = new_stamps[-1]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        db = root / "history.db"
        settings = Settings(home=root / "home", database_url=f"sqlite:///{db}")
        repo = open_repository(settings.database_url)
        began = time.perf_counter()
        _fill_history(repo, ids, old)
        marks = WatermarkStore(repo.engine)
        marks.advance(WATERMARK, (cut - pd.Timedelta(minutes=PERIOD_MINUTES)).to_pydatetime(), note="bench")

        def glue_for(metrics: list[str]) -> FeatureStoreGlue:
            return FeatureStoreGlue(settings.features_dir, settings=settings, metrics=metrics)

        cache = settings.features_dir / "lookback.parquet"  # as the materialize flow keeps it
        materialize_history(repo, glue_for, now=cut.to_pydatetime(), cache=cache)  # views applied, look-back kept
        new = fleet_telemetry(ids, new_stamps, seed=10**6)
        drop = write_dataset(
            Dataset(
                telemetry=new,
                failures=pd.DataFrame({"instance_id": [], "timestamp": [], "type": [], "root_cause": []}),
                errors=fleet_errors(ids, new_stamps, seed=2),
                instances=fleet_instances(ids),
            ),
            root / "drop",
        )
        repo.save_instances(read_fleet(drop / "instances.csv"))  # known already: the drop re-sends the fleet
        cold_validate_s = _timed(lambda: validate_telemetry(new.head(50), metrics=list(METRICS), now=end))
        setup_s = time.perf_counter() - began

        stages = Stages()
        for name in ("read_raw", "parse_telemetry", "parse_failures", "read_fleet", "read_errors", "read_workloads"):
            stages.wrap(ingest, name, "ingest.read")
        for name in ("screen", "screen_failures", "_stored_keys", "new_errors", "new_workloads"):
            stages.wrap(ingest, name, "ingest.screen")
        stages.wrap(ingest, "_gate", "ingest.validate")
        for name in ("save_telemetry", "save_instances", "save_quarantine", "save_failures", "save_errors"):
            stages.wrap(repo, name, "ingest.insert")
        read: dict[str, pd.DataFrame] = {}
        read_step = lookback.read_step

        def keep(*args: Any, **kwargs: Any) -> tuple[pd.DataFrame, int]:
            read["telemetry"], last_id = read_step(*args, **kwargs)
            return read["telemetry"], last_id

        lookback.read_step = keep  # type: ignore[assignment]  # the frame materialize reads, for the windows' floor
        stages.wrap(lookback, "read_step", "materialize.read")
        for name in ("errors_between", "failures_between", "instances_frame", "workloads_between"):
            stages.wrap(repo, name, "materialize.read")
        stages.wrap(lookback, "keep", "materialize.keep")
        stages.wrap(incremental, "compute_window_features", "materialize.windows")

        def timed_glue(metrics: list[str]) -> FeatureStoreGlue:
            glue = glue_for(metrics)
            stages.wrap(glue, "append_offline", "materialize.offline")
            stages.wrap(glue, "push_online", "materialize.online")
            return glue

        with peak_rss() as rss:
            cpu_began = time.process_time()
            began = time.perf_counter()
            summary = ingest_files(drop, repository=repo, now=end.to_pydatetime() + timedelta(seconds=1))
            ingest_s = time.perf_counter() - began
            began = time.perf_counter()
            outcome = materialize_history(repo, timed_glue, now=end.to_pydatetime(), cache=cache)
            materialize_s = time.perf_counter() - began
            cpu_s = time.process_time() - cpu_began
        assert summary.stored == len(new) and outcome.new_rows == len(new), (summary.stored, outcome.new_rows)
        seconds = dict(stages.seconds)
        seconds["ingest.other"] = ingest_s - sum(v for k, v in seconds.items() if k.startswith("ingest."))
        seconds["materialize.other"] = materialize_s - sum(
            v for k, v in seconds.items() if k.startswith("materialize.") and k != "materialize.other"
        )

        read_s, samples_read = read_floor(db, cut)
        kept = pq.read_table(cache).to_pandas()
        read_s += _timed(lambda: pq.read_table(cache))
        features = glue_for(list(METRICS))
        frame = pd.read_parquet(sorted(features.offline_path.glob("*.parquet"))[-1])
        floors = {
            "ingest.read": _timed(lambda: pd.read_csv(drop / "telemetry.csv")),
            "ingest.screen": checks_floor(pd.read_csv(drop / "telemetry.csv"), end),
            "ingest.validate": checks_floor(pd.read_csv(drop / "telemetry.csv"), end),
            "ingest.insert": insert_floor(db, new),
            "materialize.read": read_s,
            "materialize.windows": windows_floor(read["telemetry"]),
            "materialize.offline": _timed(lambda: pq.write_table(pa.Table.from_pandas(frame), root / "floor.parquet")),
            "materialize.online": online_floor(outcome.pushed * (frame.shape[1] - 2)),
            "materialize.keep": _timed(lambda: pq.write_table(pa.Table.from_pandas(kept), root / "floor-kept.parquet")),
        }
    extra = {
        "setup_seconds": round(setup_s, 1),
        "validate_first_call_seconds": round(cold_validate_s, 2),
        "cpu_seconds": round(cpu_s, 2),
        "per_10k_cpu_seconds": round(cpu_s * TARGET / instances, 1),
        "stage_cpu_seconds": {k: round(v, 2) for k, v in stages.cpu.items()},
        "load_average": round(os.getloadavg()[0], 1),
    }
    return _report(instances, seconds, floors, ingest_s, materialize_s, rss["mb"], extra, outcome, samples_read)


def _report(
    instances: int,
    seconds: dict[str, float],
    floors: dict[str, float],
    ingest_s: float,
    materialize_s: float,
    rss_mb: float,
    extra: dict[str, float],
    outcome: Any,
    samples_read: int,
) -> dict[str, Any]:
    scale = TARGET / instances
    budget = PERIOD_MINUTES * 60
    total = (ingest_s + materialize_s) * scale
    floor_total = sum(floors.values()) * scale
    order = [
        f"{side}.{stage}"
        for side in ("ingest", "materialize")
        for stage in ("read", "screen", "validate", "insert", "windows", "offline", "online", "keep", "other")
    ]
    stages = {
        key: {
            "seconds": round(seconds.get(key, 0.0), 3),
            "floor_seconds": round(floors[key], 3) if key in floors else None,
            "per_10k_seconds": round(seconds.get(key, 0.0) * scale, 1),
        }
        for key in order
        if key in seconds or key in floors
    }
    print(
        f"{instances:,} instances, {PERIOD_MINUTES}-minute period, {outcome.new_rows:,} new rows, "
        f"{samples_read:,} samples read from the database, the look-back kept from the run before "
        f"(setup {extra['setup_seconds']:.0f} s, not timed)",
        file=sys.stderr,
    )
    print(f"{'stage':22s} {'seconds':>9s} {'floor':>9s} {'per 10k':>9s}", file=sys.stderr)
    for key, row in stages.items():
        floor = "" if row["floor_seconds"] is None else f"{row['floor_seconds']:9.3f}"
        print(f"{key:22s} {row['seconds']:9.3f} {floor:>9s} {row['per_10k_seconds']:9.1f}", file=sys.stderr)
    print(
        f"{'total':22s} {ingest_s + materialize_s:9.3f} {sum(floors.values()):9.3f} {total:9.1f}  "
        f"(budget {budget} s: {'fits' if total < budget else 'does NOT fit'}, margin {budget - total:.0f} s, "
        f"{total / budget:.0%} of the period); peak RSS {rss_mb:.0f} MB",
        file=sys.stderr,
    )
    print(
        f"CPU seconds of the timed part {extra['cpu_seconds']:.1f} ({extra['per_10k_cpu_seconds']:.0f} per 10k); "
        f"wall minus CPU is waiting on the shared machine (load average {extra['load_average']})",
        file=sys.stderr,
    )
    return {
        "instances": instances,
        "period_minutes": PERIOD_MINUTES,
        "new_rows": outcome.new_rows,
        "rows_read": outcome.rows_read,
        "samples_read": samples_read,
        "feature_rows": outcome.feature_rows,
        "pushed": outcome.pushed,
        "stages": stages,
        "ingest_seconds": round(ingest_s, 3),
        "materialize_seconds": round(materialize_s, 3),
        "per_10k_seconds": round(total, 1),
        "per_10k_floor_seconds": round(floor_total, 1),
        "budget_seconds": budget,
        "keeps_up": total < budget,
        "margin_seconds": round(budget - total, 1),
        "peak_rss_mb_timed": round(rss_mb),
        **extra,
    }


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else TARGET), indent=2))
