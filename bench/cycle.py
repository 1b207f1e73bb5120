"""Benchmark: the production cycle (:func:`forewarn.cycle.run_cycle`, what the flows call) at N instances,
each stage beside its floor.

Set-up (not timed): a Feast store under a temporary FOREWARN_HOME (SQLite online store, the project's
feature repository) filled through Feast with one row of every feature for each of N instances; a
calibrated booster over those features registered as a model version (its feature service applied); a
simulated cloud of N instances with three tasks each; the default policy (auto mode, its guardrails); the
journal and cycle state in SQLite. One cycle a minute earlier, published, warms the process as a running
worker is warm (registry cache, bands and guardrail state in the database, the last metrics snapshot).

Timed: one cycle, acting on the simulated cloud, then publishing. Stages and their floors:

- ``online_read``: the bulk read of the model's features (``FeatureStoreGlue.online_features``); floor: a
  raw read of the same rows in the same SQLite tables: SQLite finding and reading every value once, in one
  query per view that hands nothing to Python (``count``, ``sum(length(value))``).
- ``score``: calibrated scores with their top features (``pipeline.score``); floor: a bare
  ``inplace_predict`` of the booster on the same float32 matrix.
- ``policy``: feature ages, the fallback's feature map, bands and rules; floor: the bands of all scores
  in one vectorised pass (``band_codes``).
- ``allocate``: placement, splitting, buffers; floor: sorting the scores plus one vectorised pass over the
  tasks (summing their demand per instance).
- ``guardrails``: reading the budgets from the journal, enforcing them, saving the cycle state; floor:
  one pass over the plan's actions counting them by type.
- ``journal``: saving the plan; floor: one bulk insert of the same plan and action rows into a fresh
  journal.
- ``apply``: running the plan through the applier on the simulated cloud (intent, call, outcome per
  action); floor: the simulated cloud's own calls for the same actions, without journal. ``apply_dry_run``
  is the same stage of a dry-run cycle (journalled, nothing changed).
- ``publish``: the risk table and plan artifact contents and the metrics snapshot (what the flow sends to
  Prefect and Prometheus, less the Prefect API call); floor: one JSON dump of the same rows.

``seconds`` is the wall time of the whole cycle plus publishing (``other`` is what no stage covers:
recovering, listing the cloud); ``peak_mb`` the process's peak resident memory.

With ``--dask-workers N`` the online read and the scoring run shard by shard on a LocalCluster of N worker
processes (:mod:`bench.cycle_dask`), and the rest as above.

Run: ``python -m bench.cycle --instances 10000 [--dask-workers 2]`` or ``forewarn bench cycle --instances N
[--dask-workers 2] --json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from sqlalchemy import insert

from adapters.simulated import SimulatedAdapter
from forewarn import markdown, metrics, pipeline, service
from forewarn.cycle import CycleResult, OnlineScoring, Scoring, run_cycle
from forewarn.features.online import entity_keys
from forewarn.features.store import FeatureStoreGlue
from forewarn.model.calibrate import Calibrator
from forewarn.model.scoring import TrainedModel
from forewarn.policy.engine import band_codes
from forewarn.schemas import Instance, Task
from forewarn.settings import Settings
from forewarn.stages import Stages
from forewarn.store.database import Database
from forewarn.store.models import ActionRow, PlanRow

NOW = datetime.fromisoformat("2024-03-01T12:00:00+00:00")
SIZES = (10_000, 100_000)
DASK_WORKERS = 2
"""Workers of the sharded run at the largest size (``make bench``)."""
STAGES = ("online_read", "score", "policy", "allocate", "guardrails", "journal", "apply", "publish")


def model(features: list[str], seed: int = 0) -> TrainedModel:
    """A calibrated booster of 100 trees of depth 4 over ``features``; three carry signal."""
    rng = np.random.default_rng(seed)
    x = rng.random((20_000, len(features)), dtype=np.float32)
    y = (rng.random(20_000) < 0.002 + 0.3 * (x[:, 0] > 0.995) + 0.2 * (x[:, 1] * x[:, 2] > 0.98)).astype(float)
    params = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.1, "nthread": 2, "verbosity": 0}
    booster = xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=100)
    calibrator = Calibrator.fit(booster.inplace_predict(x), y)
    return TrainedModel(booster, calibrator, feature_names=features, horizon_minutes=60, version="bench")


@dataclass
class Bench:
    """Everything the timed cycle runs against."""

    home: Path
    ctx: service.Context
    glue: FeatureStoreGlue
    model: TrainedModel
    cloud: SimulatedAdapter
    ids: list[str]
    fill_seconds: float


def _fleet(n: int) -> tuple[list[Instance], list[Task]]:
    ids = [f"i-{k:06d}" for k in range(n)]
    machines = [Instance(instance_id=i, cpu_capacity=4.0, memory_capacity=16.0) for i in ids]
    tasks = [
        Task(task_id=f"t-{k}-{j}", instance_id=i, cpu=0.5, memory=2.0) for k, i in enumerate(ids) for j in range(3)
    ]
    return machines, tasks


def prepare(home: Path, n: int, *, dry_run: bool = False, seed: int = 0) -> Bench:
    """A filled Feast store, a registered model, a simulated fleet and a context, under ``home``."""
    settings = Settings(home=home, dataset=home / "dataset")
    ctx = service.Context(settings, dry_run=dry_run)
    glue = ctx.glue
    glue.apply()
    trained = model(glue.feature_names, seed)
    machines, tasks = _fleet(n)
    ids = [m.instance_id for m in machines]
    rng = np.random.default_rng(seed)
    began = time.perf_counter()
    for first in range(0, n, 20_000):
        chunk = ids[first : first + 20_000]
        frame = pd.DataFrame(rng.random((len(chunk), len(glue.stored_names))), columns=glue.stored_names)
        frame.insert(0, "event_timestamp", pd.Timestamp(NOW) - pd.Timedelta(minutes=2))
        frame.insert(0, "instance_id", chunk)
        glue.push_online(frame)
    fill = time.perf_counter() - began
    cloud = SimulatedAdapter(machines, tasks, dry_run=dry_run)
    return Bench(home, ctx, glue, trained, cloud, ids, fill)


Scorer = Callable[[Bench, Stages], Scoring]
"""The cycle's scoring of a bench, timing its stages on the given Stages."""


def online(bench: Bench, stages: Stages) -> Scoring:
    """The one-process scoring the flows use: the bulk online read, then the model."""
    return OnlineScoring(bench.glue, bench.model, stages, pipeline.explain_choice(bench.ctx.policy))


def cycle(bench: Bench, now: datetime, stages: Stages, scorer: Scorer = online) -> CycleResult:
    return run_cycle(
        bench.ctx, bench.cloud, now, scoring=scorer(bench, stages), model_version=bench.model.version, stages=stages
    )


def publish(bench: Bench, result: CycleResult, stages: Stages) -> list[dict[str, Any]]:
    """What flows.cycle.publish computes and writes, less the Prefect API call."""
    assert result.plan is not None
    with stages("publish"):
        rows = markdown.risk_rows(result.scores, result.plan, top=20)
        markdown.plan_markdown(result.plan)
        metrics.record_to_snapshot(
            result.scores,
            result.bands,
            result.plan,
            model_version=result.model_version,
            horizon_minutes=60,
            duration_seconds=result.seconds,
            feature_age_seconds=120.0,
            path=bench.home / metrics.SNAPSHOT,
            breaker_open=None if result.breaker is None else result.breaker.open,
        )
    return rows


def _timed(fn: Any) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def floors(bench: Bench, result: CycleResult, rows: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds of each stage's floor, on the same data (see the module docstring)."""
    glue, trained = bench.glue, bench.model
    keys = entity_keys(bench.ids)
    project = glue.config.project
    tables = [f"{project}_{view.name}" for view in glue.definitions.views]

    def raw_read() -> None:  # SQLite finding and reading every value once, handing nothing to Python
        with sqlite3.connect(glue.workdir / "online.db") as conn:
            conn.execute("CREATE TEMP TABLE k (key BLOB PRIMARY KEY)")
            conn.executemany("INSERT INTO k VALUES (?)", ((key,) for key in keys))
            for table in tables:
                conn.execute(
                    f'SELECT count(*), sum(length(v.value)), max(v.event_ts) FROM temp.k JOIN "{table}" AS v '
                    "ON v.entity_key = k.key"
                ).fetchall()

    matrix = result.features[trained.feature_names].to_numpy(dtype=np.float32)
    probabilities = np.array([s.probability for s in result.scores])
    bands = bench.ctx.policy.bands
    previous = np.full(len(probabilities), -1)
    demand = np.full(len(bench.ids) * 3, 0.5)
    owner = np.repeat(np.arange(len(bench.ids)), 3)
    plan = result.plan
    assert plan is not None
    copy = _fresh_cloud(len(bench.ids))
    floor_db = Database(f"sqlite:///{bench.home / 'floor.db'}")
    floor_db.create_all()
    booster = trained.booster
    assert booster is not None  # the benchmark's model is XGBoost (a baseline champion has no booster)
    out = {
        "online_read": min(_timed(raw_read) for _ in range(2)),
        "score": min(_timed(lambda: booster.inplace_predict(matrix)) for _ in range(3)),
        "policy": _timed(lambda: band_codes(probabilities, bands, previous)),
        "allocate": _timed(lambda: (np.argsort(probabilities), np.bincount(owner, demand))),
        "guardrails": _timed(lambda: Counter(a.type for a in plan.actions)),
        "journal": _timed(lambda: _bulk_insert(floor_db, plan)),
        "apply": _timed(lambda: _bare_calls(copy, plan)),
        "publish": _timed(lambda: json.dumps(rows, default=str)),
    }
    return out


def _bulk_insert(database: Database, plan: Any) -> None:
    plan_row = {
        "plan_id": plan.plan_id + "-floor", "created_at": plan.created_at, "policy": plan.policy,
        "mode": plan.mode.value, "state": plan.state.value, "model_version": plan.model_version, "notes": plan.notes,
        "updated_at": plan.created_at,
    }  # fmt: skip
    actions = [
        {
            "action_id": a.action_id + "-floor",
            "plan_id": plan_row["plan_id"],
            "seq": k,
            "type": a.type.value,
            "instance_id": a.instance_id,
            "target_instance_id": a.target_instance_id,
            "task_ids": a.task_ids,
            "params": a.params,
            "reason": a.reason.model_dump(mode="json"),
            "state": a.state.value,
            "error": a.error,
        }
        for k, a in enumerate(plan.actions)
    ]
    with database.engine.begin() as conn:
        conn.execute(insert(PlanRow), [plan_row])
        if actions:
            conn.execute(insert(ActionRow), actions)


def _fresh_cloud(n: int) -> SimulatedAdapter:
    machines, tasks = _fleet(n)
    return SimulatedAdapter(machines, tasks)


def _bare_calls(cloud: SimulatedAdapter, plan: Any) -> None:
    """Each action's handler (pre-condition and cloud call) on a copy of the fleet, without the journal."""
    from forewarn.execution.actions import handler_for

    for action in plan.actions:
        handler = handler_for(action)
        try:
            if handler.pre_condition(cloud, action):
                handler.execute(cloud, action)
        except Exception:  # a floor: a call the copy refuses still cost its time
            continue


def _note(text: str) -> None:
    print(f"[bench cycle {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def run(instances: int, *, dask_workers: int = 0, shard_size: int | None = None) -> dict[str, Any]:
    """The figures of one size (see the module docstring); ``dask_workers``: shard the read and the scoring."""
    if dask_workers:
        from bench.cycle_dask import run_sharded

        return run_sharded(instances, dask_workers, shard_size)
    with tempfile.TemporaryDirectory(prefix="forewarn-bench-cycle-") as tmp:
        _note(f"filling a Feast store with {instances:,} instances")
        bench = prepare(Path(tmp) / "acting", instances)
        _note(f"filled in {bench.fill_seconds:.1f} s; warm-up cycle")
        return figures(bench, *measure(bench, online))


Measured = tuple[Stages, float, CycleResult, dict[str, float], Stages]


def measure(bench: Bench, scorer: Scorer) -> Measured:
    """A warm-up cycle, the timed cycle and its publishing, the floors, and a dry-run cycle."""
    bench.ctx.dry_run = bench.cloud.dry_run = True  # journalled but not acted on: no cooldown for the timed one
    warm = Stages()
    publish(bench, cycle(bench, NOW - timedelta(minutes=1), warm, scorer), warm)  # warm, as a running worker is
    bench.ctx.dry_run = bench.cloud.dry_run = False
    _note("timed cycle")
    stages = Stages()
    began = time.perf_counter()
    result = cycle(bench, NOW, stages, scorer)
    rows = publish(bench, result, stages)
    seconds = time.perf_counter() - began
    floor = floors(bench, result, rows)
    dry = Stages()
    bench.ctx.dry_run = bench.cloud.dry_run = True
    cycle(bench, NOW + timedelta(minutes=1), dry, scorer)
    return stages, seconds, result, floor, dry


def figures(
    bench: Bench,
    stages: Stages,
    seconds: float,
    result: CycleResult,
    floor: dict[str, float],
    dry: Stages,
    merged: dict[str, tuple[str, ...]] | None = None,
) -> dict[str, Any]:
    """The JSON of a measured cycle; ``merged``: a stage that times several of :data:`STAGES` at once (its
    floor is the sum of theirs)."""
    together = merged or {}
    inside = {name for names in together.values() for name in names}
    floor = {**{k: v for k, v in floor.items() if k not in inside}, **{
        stage: sum(floor[name] for name in names) for stage, names in together.items()}}  # fmt: skip
    order = [*together, *(name for name in STAGES if name not in inside)]
    timed = {
        name: {"seconds": _sig(stages.seconds.get(name, 0.0)), "floor_seconds": _sig(floor[name])} for name in order
    }
    timed["apply_dry_run"] = {"seconds": _sig(dry.seconds.get("apply", 0.0)), "floor_seconds": _sig(floor["apply"])}
    timed["other"] = {"seconds": _sig(seconds - sum(stages.seconds.values())), "floor_seconds": 0.0}
    floor_sum = sum(floor.values())
    instances = len(bench.ids)
    assert result.plan is not None
    return {
        "benchmark": "production cycle",
        "instances": instances,
        "tasks": instances * 3,
        "features": len(bench.model.feature_names),
        "scored": len(result.scores),
        "actions": len(result.plan.actions),
        "plan_state": result.plan.state.value,
        "seconds": _sig(seconds),
        "floor_seconds": _sig(floor_sum),
        "ratio": _sig(seconds / max(floor_sum, 1e-9)),
        "stages": timed,
        "fill_seconds": _sig(bench.fill_seconds),
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def _sig(value: float) -> float:
    return float(f"{value:.3g}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--dask-workers", type=int, default=0, help="shard the read and scoring on a LocalCluster")
    parser.add_argument("--shard-size", type=int, default=None, help="instances per shard (default: the setting's)")
    args = parser.parse_args()
    print(json.dumps(run(args.instances, dask_workers=args.dask_workers, shard_size=args.shard_size), indent=2))
