"""Benchmark: scoring throughput (instances per second) against the number of Dask workers, beside its floor.

The floor is the bare booster: one single-process ``inplace_predict`` over every instance's latest features.
``single_process`` is :func:`forewarn.pipeline.score` in one process (calibration, top-3 contributions and
one RiskScore per instance, which is most of the cost). ``dask_<n>`` scores the same instances shard by
shard on a LocalCluster of n worker processes (1 thread each), each shard reading its own rows from a
parquet file of latest features (:class:`forewarn.distributed.compute.ParquetSource`).

The projection divides fleet sizes by the measured per-worker throughput: workers needed to score
10k, 100k and 1M instances within a 60 s cycle, and the time of one cycle on that many workers, assuming
the per-shard cost stays flat (shards are independent; the driver only merges results).

Run: ``python bench/scale.py [instances]`` (default 20000) prints one JSON object.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forewarn import pipeline
from forewarn.distributed.compute import ParquetSource, score_on_client
from forewarn.distributed.config import ScaleSettings, dask_client
from forewarn.distributed.shards import shards
from forewarn.model.config import TrainConfig
from forewarn.model.labels import make_labels
from forewarn.model.scoring import TrainedModel
from forewarn.model.train import train_model
from forewarn.sim.config import SimConfig
from forewarn.sim.core import simulate

SHARD_SIZE = 2000
CYCLE_SECONDS = 60.0


def model_and_features(instances: int) -> tuple[TrainedModel, pd.DataFrame]:
    """A model trained on a small simulated fleet, and latest features for ``instances`` drawn from its rows."""
    fleet = simulate(SimConfig(instances=60, days=2.0, seed=11, failure_rate_per_day=0.4, sudden_fraction=0.0))
    features = pipeline.build_features(fleet, every_minutes=pipeline.TRAIN_EVERY_MINUTES)
    labels = make_labels(features[["instance_id", "event_timestamp"]], fleet.failures, [60], data_end=fleet.end)
    frame = labels.merge(features, on=["instance_id", "event_timestamp"])
    names = [c for c in features.columns if c not in ("instance_id", "event_timestamp")]
    model = train_model(frame, names, "label_60m", TrainConfig(max_rounds=100))
    rows = features.sample(n=instances, replace=True, random_state=0).reset_index(drop=True)
    rows["instance_id"] = [f"vm-{n:07d}" for n in range(instances)]
    return model, rows.drop(columns=["event_timestamp"])


def timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def run(instances: int) -> dict[str, Any]:
    model, latest = model_and_features(instances)
    now = pd.Timestamp("2024-03-03T00:00:00Z").to_pydatetime()
    matrix = latest[model.feature_names].astype(np.float32)
    floor_s, _ = timed(lambda: model.booster.inplace_predict(matrix))
    single_s, _ = timed(lambda: pipeline.score(model, latest, now=now))
    result: dict[str, Any] = {
        "instances": instances,
        "shard_size": SHARD_SIZE,
        "floor_inplace_predict_per_s": round(instances / floor_s),
        "single_process_per_s": round(instances / single_s),
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "latest.parquet"
        latest.to_parquet(path, index=False)
        groups = shards(latest["instance_id"], shard_size=SHARD_SIZE)
        for workers in (1, 2):
            settings = ScaleSettings(dask_address="", dask_workers=workers, dask_threads_per_worker=1)
            with dask_client(settings) as client:
                score_on_client(client, ParquetSource(str(path)), model, groups[:workers], now=now)  # warm up
                seconds, _ = timed(lambda: score_on_client(client, ParquetSource(str(path)), model, groups, now=now))
            result[f"dask_{workers}_workers_per_s"] = round(instances / seconds)
            result[f"dask_{workers}_shard_seconds"] = round(seconds * workers / len(groups), 3)
    result["projection"] = project(result["dask_1_workers_per_s"])
    return result


def project(per_worker_per_s: float) -> dict[str, dict[str, float]]:
    """Workers for a 60 s cycle at 10k, 100k and 1M instances, from one worker's measured throughput."""
    out = {}
    for fleet in (10_000, 100_000, 1_000_000):
        workers = max(1, math.ceil(fleet / (per_worker_per_s * CYCLE_SECONDS)))
        seconds = round(fleet / (per_worker_per_s * workers), 1)
        out[f"{fleet}"] = {"workers_for_60s": workers, "seconds_on_that_many": seconds}
    return out


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000), indent=2))
