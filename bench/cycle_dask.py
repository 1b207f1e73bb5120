"""Benchmark: the production cycle with its online read and scoring shard by shard on a Dask LocalCluster.

The same set-up, cycle, publishing and floors as :mod:`bench.cycle`, but the cycle scores as the
``score-and-allocate-scaled`` flow does: the instances are grouped into shards by a stable hash
(:func:`forewarn.distributed.shards.shards`), each shard reads its rows from the Feast online store through the
model's feature service and scores them on a worker (:func:`forewarn.distributed.compute.score_shard`), the driver
merges the shards and explains the sample of quiet scores (:func:`forewarn.distributed.compute.explain_sample`);
policy, allocation, guardrails, journal, applier and publishing stay in the driver process.

The stage ``read_and_score`` is that sharded part (scatter the model, read, score, send back, merge); its
floor is the one-process floors of ``online_read`` and ``score`` together. Not timed: starting the cluster
(``cluster_start_seconds``; a flow run on a LocalCluster pays it each run, a standing cluster once).
``peak_mb`` is the driver's peak; ``worker_rss_mb`` the resident memory of the largest worker after the
cycles (pages it shares with the process it was started from included).

Run: ``python -m bench.cycle --instances 100000 --dask-workers 2`` or ``forewarn bench cycle --instances
100000 --dask-workers 2 --json``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from bench.cycle import Bench, figures, measure, prepare
from bench.cycle import _note as note
from forewarn import pipeline
from forewarn.cycle import Scoring
from forewarn.distributed.compute import OnlineSource, explain_sample, merge_shards, score_on_client
from forewarn.distributed.config import ScaleSettings, dask_client
from forewarn.distributed.shards import shards
from forewarn.model.explaining import ExplainChoice
from forewarn.schemas import RiskScore
from forewarn.stages import Stages

STAGE = "read_and_score"


@dataclass
class ShardedScoring:
    """The scaled flow's scoring on a ``distributed.Client``, timed as one stage."""

    client: Any
    bench: Bench
    explain: ExplainChoice
    shard_size: int
    stages: Stages
    shards: int = 0

    def __call__(self, instance_ids: Sequence[str], now: datetime) -> tuple[list[RiskScore], pd.DataFrame]:
        source = OnlineSource(str(self.bench.glue.workdir))
        with self.stages(STAGE):
            groups = shards(list(instance_ids), shard_size=self.shard_size)
            self.shards = len(groups)
            results = score_on_client(self.client, source, self.bench.model, groups, now=now, explain=self.explain)
            scores, features = merge_shards(results, list(instance_ids))
            explain_sample(self.bench.model, scores, features, self.explain)
        return scores, features


def run_sharded(instances: int, workers: int, shard_size: int | None = None) -> dict[str, Any]:
    """The figures of one size with the read and the scoring on ``workers`` Dask worker processes."""
    settings = ScaleSettings(dask_address="", dask_workers=workers, dask_threads_per_worker=1)
    size = shard_size or settings.shard_size
    with tempfile.TemporaryDirectory(prefix="forewarn-bench-cycle-") as tmp:
        note(f"filling a Feast store with {instances:,} instances")
        bench = prepare(Path(tmp) / "acting", instances)
        note(f"filled in {bench.fill_seconds:.1f} s; starting a LocalCluster of {workers} workers")
        began = time.perf_counter()
        with dask_client(settings) as client:
            started = time.perf_counter() - began
            explain = pipeline.explain_choice(bench.ctx.policy)
            used: list[ShardedScoring] = []

            def scorer(bench: Bench, stages: Stages) -> Scoring:
                used.append(ShardedScoring(client, bench, explain, size, stages))
                return used[-1]

            out = figures(bench, *measure(bench, scorer), merged={STAGE: ("online_read", "score")})
            resident = client.run(_resident_mb)
    out.update(
        dask_workers=workers,
        shard_size=size,
        shards=used[-1].shards,
        cluster_start_seconds=round(started, 2),
        worker_rss_mb=max(resident.values()),
    )
    return out


def _resident_mb() -> int:
    """A worker's resident memory now (run on each worker)."""
    import psutil

    return round(psutil.Process().memory_info().rss / 2**20)
