"""Benchmark: training the failure model on 1 million rows, beside the bare ``xgb.train`` on the same matrix.

``seconds`` is :func:`forewarn.model.train.train_model` (time split, early stopping on the validation
period, isotonic calibration, threshold, test metrics). The floor is ``xgb.DMatrix`` over the same 1M x F
float32 matrix plus ``xgb.train`` with the same parameters for the same number of rounds, with no
validation set, calibration or split: what any XGBoost model of that size costs.
The frame: 1,000 instances x 1,000 steps of 5 minutes, F features of which three carry signal, failures
at 0.5% of rows.

Run: ``python -m bench.train`` prints one JSON object.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from forewarn.model.config import TrainConfig
from forewarn.model.labels import make_labels
from forewarn.model.train import train_model


def synthetic(rows: int, features: int, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """A labelled frame of ``rows`` rows (1,000 steps per instance) and its feature names."""
    rng = np.random.default_rng(seed)
    steps = 1000
    instances = max(rows // steps, 1)
    times = pd.date_range("2024-01-01", periods=steps, freq="5min", tz="UTC")
    frame = pd.DataFrame(
        {
            "instance_id": np.repeat([f"vm-{i}" for i in range(instances)], steps),
            "event_timestamp": np.tile(times, instances),
        }
    )
    picks = rng.random(len(frame)) < 0.005
    failures = frame.loc[picks, ["instance_id", "event_timestamp"]].rename(columns={"event_timestamp": "timestamp"})
    frame = make_labels(frame, failures, [60], drop_censored=True)
    names = [f"f{j}" for j in range(features)]
    values = rng.normal(size=(len(frame), features)).astype(np.float32)
    values[:, :3] += frame["label_60m"].to_numpy()[:, None] * np.array([1.0, 0.6, 0.3], dtype=np.float32)
    return pd.concat([frame.reset_index(drop=True), pd.DataFrame(values, columns=names)], axis=1), names


def run(rows: int = 1_000_000, features: int = 40, max_rounds: int = 60, nthread: int = 2) -> dict[str, Any]:
    """Seconds for train_model and for the bare xgb.train floor on the same matrix."""
    frame, names = synthetic(rows, features)
    config = TrainConfig(max_rounds=max_rounds, nthread=nthread)
    began = time.perf_counter()
    model = train_model(frame, names, "label_60m", config)
    seconds = time.perf_counter() - began
    rounds = min(model.metrics["best_iteration"] + config.early_stopping_rounds, max_rounds)
    params = {k: v for k, v in model.params.items() if k != "eval_metric"}
    began = time.perf_counter()
    matrix = xgb.DMatrix(frame[names].to_numpy(dtype=np.float32), label=frame["label_60m"].to_numpy(), missing=np.nan)
    xgb.train(params, matrix, num_boost_round=rounds)
    floor = time.perf_counter() - began
    return {
        "benchmark": "train",
        "rows": len(frame),
        "features": features,
        "rounds_floor": rounds,
        "best_iteration": model.metrics["best_iteration"],
        "seconds": round(seconds, 2),
        "floor_seconds": round(floor, 2),
        "ratio": round(seconds / floor, 2),
        "test_pr_auc": model.metrics["pr_auc"],
        "nthread": nthread,
    }


if __name__ == "__main__":
    print(json.dumps(run()))
