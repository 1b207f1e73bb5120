"""Prefect tasks: each wraps one function of forewarn.pipeline or forewarn.service. Retries only on I/O."""

from __future__ import annotations

from prefect import task

from forewarn import pipeline, service

load_dataset = task(service.load_dataset, name="load-dataset", retries=1, retry_delay_seconds=2)
build_features = task(pipeline.build_features, name="build-features")
materialize_features = task(pipeline.materialize, name="materialize-features", retries=2, retry_delay_seconds=5)
train_model = task(pipeline.train, name="train-model")
score_fleet = task(pipeline.score, name="score-fleet", retries=2, retry_delay_seconds=2)
plan_cycle = task(pipeline.plan_cycle, name="plan-cycle")
apply_plan = task(service.apply_plan, name="apply-plan")
