"""Prefect tasks: each wraps one function of forewarn.pipeline or forewarn.service. Retries only on I/O."""

from __future__ import annotations

from prefect import task

from forewarn import pipeline, service

load_dataset = task(name="load-dataset", retries=1, retry_delay_seconds=2)(service.load_dataset)
build_features = task(name="build-features")(pipeline.build_features)
materialize_features = task(name="materialize-features", retries=2, retry_delay_seconds=5)(pipeline.materialize)
train_model = task(name="train-model")(pipeline.train)
score_fleet = task(name="score-fleet", retries=2, retry_delay_seconds=2)(pipeline.score)
plan_cycle = task(name="plan-cycle")(pipeline.plan_cycle)
apply_plan = task(name="apply-plan")(service.apply_plan)
