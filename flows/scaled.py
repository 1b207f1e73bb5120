"""Score-and-allocate and materialize on a Dask cluster (``prefect_dask.DaskTaskRunner``), sharded by instance.

The cluster comes from settings (:class:`forewarn.distributed.config.ScaleSettings`): an empty
``FOREWARN_DASK_ADDRESS`` starts a LocalCluster per flow run, ``tcp://host:8786`` uses a running one.
Before the applier runs, every instance the plan touches is claimed in the historical repository
(:mod:`forewarn.store.lease`) under this flow run's id, so two overlapping runs never act on one instance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import pandas as pd
from prefect import Flow, flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import TaskRunner
from prefect_dask import DaskTaskRunner

from flows import tasks
from flows.cycle import act, current_model, publish
from forewarn import compose, pipeline, service
from forewarn.clock import clock_for
from forewarn.distributed import compute
from forewarn.distributed.config import ScaleSettings
from forewarn.distributed.shards import shards
from forewarn.schemas import Plan, RiskScore

score_shard = task(name="score-shard", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)(compute.score_shard)
features_shard = task(name="features-shard", cache_policy=NO_CACHE)(compute.features_shard)


@dataclass
class ScaledCycle:
    """What a sharded cycle did: its plan, its scores (in instance order) and the number of shards."""

    plan: Plan
    scores: list[RiskScore]
    shards: int

    def __str__(self) -> str:
        return (
            f"scored {len(self.scores):,} instances in {self.shards} shard(s); "
            f"plan {self.plan.plan_id} {self.plan.state} with {len(self.plan.actions)} action(s)"
        )


def runner(settings: ScaleSettings | None = None) -> TaskRunner[Any]:
    """The Dask task runner of ``settings`` (default: read from the environment now)."""
    return cast("TaskRunner[Any]", DaskTaskRunner(**(settings or ScaleSettings()).task_runner_kwargs()))


@flow(name="score-and-allocate-scaled", log_prints=True, task_runner=runner())
def score_and_allocate_scaled(dataset: str | None = None, dry_run: bool = True, at: str | None = None) -> ScaledCycle:
    """The one cycle with its scoring shard by shard on the cluster: recover, restore, score, plan, claim
    the plan's instances, apply, release.

    Args:
        dataset: seeds the simulated cloud on its first run (default FOREWARN_DATASET).
        dry_run: plan and journal, but change nothing in the cloud (the default).
        at: the cycle's time (RFC 3339), to run on recorded data; default: the wall clock.
    """
    ctx, scale = service.context(dry_run=dry_run), ScaleSettings()
    now = clock_for(at).now()
    cloud = compose.cloud(ctx, tasks.load_dataset(dataset) if dataset else None, at=now)
    model, fresh = current_model(ctx, now)
    source = compute.OnlineSource(str(ctx.settings.features_dir.resolve()))
    scorer, explain = model if fresh else None, pipeline.explain_choice(ctx.policy)
    count = 0

    def sharded(ids: Sequence[str], when: datetime) -> tuple[list[RiskScore], pd.DataFrame]:
        nonlocal count
        groups = shards(list(ids), shard_size=scale.shard_size)
        count = len(groups)
        futures = [score_shard.submit(source, scorer, group, now=when, explain=explain) for group in groups]
        scores, features = compute.merge_shards([f.result() for f in futures], list(ids))
        compute.explain_sample(scorer, scores, features, explain)
        return scores, features

    result = act(ctx, cloud, now, sharded, model, fresh)
    publish(ctx, result)
    assert result.plan is not None
    return ScaledCycle(plan=result.plan, scores=result.scores, shards=count)


@flow(name="materialize-scaled", log_prints=True, task_runner=runner())
def materialize_scaled(dataset: str | None = None, dry_run: bool = True) -> str:
    """Window features computed shard by shard on the cluster, then materialized into the online store.

    Args:
        dataset: dataset directory; default FOREWARN_DATASET.
        dry_run: unused here (materialize changes no cloud); kept so every flow takes the same options.
    """
    ctx, scale = service.context(), ScaleSettings()
    data = tasks.load_dataset(dataset or ctx.settings.dataset)
    groups = shards(data.instance_ids, shard_size=scale.shard_size)
    futures = [features_shard.submit(compute.shard_dataset(data, group)) for group in groups]
    features = compute.merge_features([f.result() for f in futures])
    rows = tasks.materialize_features(ctx.glue, features)
    return f"materialized {rows:,} feature rows for {len(data.instance_ids):,} instances in {len(groups)} shard(s)"


def on_cluster(chosen: Flow[Any, Any], settings: ScaleSettings) -> Flow[Any, Any]:
    """``chosen`` with the task runner of ``settings`` (read at import otherwise)."""
    return chosen.with_options(task_runner=runner(settings))
