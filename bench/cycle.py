"""Benchmark: one score-and-allocate cycle at 1,000, 10,000 and 100,000 instances, beside its floor.

``seconds`` is the whole cycle as the flow runs it after the features are read: the features snapshot (the
latest row of each instance out of two snapshots), ``TrainedModel.score`` (calibrated probabilities and the
top three contributions as RiskScore records), and ``plan_cycle`` (policy bands and rules, allocation,
guardrails) with the default policy; ``journal_seconds`` adds saving the plan to an in-memory SQLite
journal. Each stage is also timed alone. The floor is what any scorer must do: ``inplace_predict`` of the
bare booster on the same float32 matrix, plus ``np.argsort`` of the scores. ``explain_floor_seconds`` adds
what any scorer that explains every score must do: one bare ``pred_contribs`` call (TreeSHAP) on that
matrix; ``explain_ratio`` is the cycle against it.
The fleet: F=30 features, three of which carry signal; three tasks per instance filling it to about 40%;
a booster of 100 trees of depth 4 trained on 20,000 synthetic rows, calibrated isotonically.

Run: ``python -m bench.cycle`` prints one JSON line per size.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from forewarn.cycle import FrameScoring
from forewarn.execution.journal import Journal
from forewarn.model.calibrate import Calibrator
from forewarn.model.train import TrainedModel
from forewarn.pipeline import plan_cycle
from forewarn.policy.engine import PolicyEngine
from forewarn.policy.guardrails import GuardrailState
from forewarn.policy.loader import load_policy
from forewarn.schemas import Instance, Task
from forewarn.settings import PROJECT_ROOT
from forewarn.store import Repository

FEATURES = [f"f{k:02d}" for k in range(30)]
NOW = pd.Timestamp("2024-03-01T12:00:00Z")
SIZES = (1_000, 10_000, 100_000)


def model(seed: int = 0) -> TrainedModel:
    """A small calibrated booster over :data:`FEATURES` (three carry signal)."""
    rng = np.random.default_rng(seed)
    x = rng.random((20_000, len(FEATURES)), dtype=np.float32)
    y = (rng.random(20_000) < 0.02 + 0.3 * (x[:, 0] > 0.97) + 0.2 * (x[:, 1] * x[:, 2] > 0.9)).astype(float)
    params = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.1, "nthread": 2, "verbosity": 0}
    booster = xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=100)
    calibrator = Calibrator.fit(booster.inplace_predict(x), y)
    return TrainedModel(booster, calibrator, feature_names=FEATURES, horizon_minutes=60, version="bench")


def fleet(instances: int, seed: int = 0) -> tuple[pd.DataFrame, list[Instance], list[Task]]:
    """Two feature snapshots 5 minutes apart, the instances and their tasks."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"i-{k:06d}" for k in range(instances)], dtype=object)
    frames = []
    for minutes in (5, 0):
        frame = pd.DataFrame(rng.random((instances, len(FEATURES)), dtype=np.float32), columns=FEATURES)
        frame.insert(0, "event_timestamp", NOW - pd.Timedelta(minutes=minutes))
        frame.insert(0, "instance_id", ids)
        frames.append(frame)
    machines = [Instance(instance_id=i, cpu_capacity=4.0, memory_capacity=16.0) for i in ids]
    tasks = [
        Task(task_id=f"t-{k}-{j}", instance_id=i, cpu=0.5, memory=2.0) for k, i in enumerate(ids) for j in range(3)
    ]
    return pd.concat(frames, ignore_index=True), machines, tasks


def _timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def run(instances: int, trained: TrainedModel | None = None) -> dict[str, Any]:
    """Seconds of each stage, of the cycle, of the cycle plus journal, and the floor."""
    trained = trained or model()
    trained.booster.set_param({"nthread": 2})
    frame, machines, tasks = fleet(instances)
    policy = load_policy(PROJECT_ROOT / "policies" / "default.yaml")
    engine = PolicyEngine(policy)
    now = NOW.to_pydatetime()
    ids = [m.instance_id for m in machines]
    snapshot_s, latest = _timed(lambda: FrameScoring(frame, lambda f, t: []).latest(ids, now))
    score_s, scores = _timed(lambda: trained.score(latest, timestamp=now))
    plan_s, cycle = _timed(
        lambda: plan_cycle(
            scores,
            machines,
            tasks,
            engine=engine,
            policy=policy,
            guard_state=GuardrailState(),
            now=now,
            model_version=trained.version,
        )
    )
    repo = Repository("sqlite://")
    repo.create_all()
    journal_s, _ = _timed(lambda: Journal(repo).save_plan(cycle.plan))
    matrix = latest[FEATURES].to_numpy(dtype=np.float32)
    floor = min(_timed(lambda: np.argsort(trained.booster.inplace_predict(matrix)))[0] for _ in range(3))
    shap_s, _ = _timed(lambda: trained.booster.predict(xgb.DMatrix(matrix, missing=np.nan), pred_contribs=True))
    seconds = snapshot_s + score_s + plan_s
    return {
        "benchmark": "score-and-allocate cycle",
        "instances": instances,
        "tasks": len(tasks),
        "actions": len(cycle.plan.actions),
        "snapshot_seconds": _sig(snapshot_s),
        "score_seconds": _sig(score_s),
        "plan_seconds": _sig(plan_s),
        "seconds": _sig(seconds),
        "journal_seconds": _sig(seconds + journal_s),
        "floor_seconds": _sig(floor),
        "ratio": _sig(seconds / max(floor, 1e-9)),
        "explain_floor_seconds": _sig(floor + shap_s),
        "explain_ratio": _sig(seconds / max(floor + shap_s, 1e-9)),
    }


def _sig(value: float) -> float:
    return float(f"{value:.3g}")


if __name__ == "__main__":
    shared = model()
    for size in SIZES:
        print(json.dumps(run(size, shared)), flush=True)
