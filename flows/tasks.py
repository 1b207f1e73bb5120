"""Prefect tasks: each wraps one function of forewarn (pipeline, ingest, dataset). Retries only on I/O."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from forewarn import ingest, pipeline
from forewarn.dataset import read_dataset
from forewarn.features.incremental import OpenGlue
from forewarn.features.store import FeatureStoreGlue
from forewarn.settings import Settings


def glue_opener(settings: Settings) -> OpenGlue:
    """The feature store under the settings' working directory, typed for a metric set."""
    return lambda metrics: FeatureStoreGlue(settings.features_dir, settings=settings, metrics=metrics)


load_dataset = task(name="load-dataset", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)(read_dataset)
ingest_dataset = task(name="ingest-dataset", cache_policy=NO_CACHE)(ingest.ingest_files)
build_features = task(name="build-features", cache_policy=NO_CACHE)(pipeline.build_features)
materialize_features = task(name="materialize-features", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)(
    pipeline.materialize
)
materialize_history = task(name="materialize-history", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)(
    pipeline.materialize_history
)
train_model = task(name="train-model", cache_policy=NO_CACHE)(pipeline.train)
train_from_history = task(name="train-from-history", cache_policy=NO_CACHE)(pipeline.train_from_history)
online_features = task(name="online-features", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)(
    pipeline.online_features
)
score_fleet = task(name="score-fleet", cache_policy=NO_CACHE)(pipeline.score)
plan_cycle = task(name="plan-cycle", cache_policy=NO_CACHE)(pipeline.plan_cycle)
