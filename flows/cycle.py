"""What every score-and-allocate flow does around the one cycle (:func:`forewarn.cycle.run_cycle`): its
scoring as Prefect tasks, each change as a task run, claims on the instances it acts on, and publishing.

The one-process flow and the Dask-sharded one differ only in how they score.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import State
from sqlalchemy import Engine

from flows import artifacts, tasks
from flows.apply import plan_state, prefect_runner
from forewarn import metrics, service
from forewarn.cloud import CloudAdapter
from forewarn.cycle import Claim, CycleResult, Scoring, run_cycle
from forewarn.distributed.config import ScaleSettings
from forewarn.features.store import FeatureStoreGlue
from forewarn.model.explaining import ExplainChoice
from forewarn.model.scoring import TrainedModel
from forewarn.schemas import Plan, PlanState, RiskScore
from forewarn.store.lease import LeaseStore, claim_plan


@task(name="claim-instances", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def claim_instances(engine: Engine, plan: Plan, owner: str, *, cycle: str, ttl_seconds: int) -> Plan:
    """The plan less the actions on instances another run holds (see forewarn.store.lease.claim_plan)."""
    return claim_plan(LeaseStore(engine), plan, owner, cycle=cycle, ttl=timedelta(seconds=ttl_seconds))


def run_owner() -> str:
    """This flow run's id (the claims' owner); a random id outside a flow run."""
    from prefect.runtime import flow_run

    return str(flow_run.id or f"local-{uuid.uuid4().hex[:12]}")


def claims(ctx: service.Context) -> Claim:
    """Overlapping runs (several workers, one schedule) never act on the same instance twice."""
    owner, ttl = run_owner(), ScaleSettings().claim_ttl_seconds

    def claim(plan: Plan, now: datetime) -> Plan:
        return claim_instances(ctx.repo.engine, plan, owner, cycle=now.isoformat(), ttl_seconds=ttl)

    return claim


def current_model(ctx: service.Context, now: datetime) -> tuple[TrainedModel | None, bool]:
    """The champion and whether it may score at ``now``; a warning when the policy's fallback must decide."""
    model, fresh = service.usable_model(ctx, now)
    if not fresh:
        get_run_logger().warning("no usable model at %s: the policy's static fallback decides", now.isoformat())
    return model, fresh


def online_scoring(glue: FeatureStoreGlue, model: TrainedModel | None, explain: ExplainChoice | None = None) -> Scoring:
    """The online read and the scoring, each a Prefect task of the flow run; ``explain``: which scores carry
    their top features (the policy's ``explain``)."""

    def scoring(instance_ids: Sequence[str], now: datetime) -> tuple[list[RiskScore], pd.DataFrame]:
        features = tasks.online_features(glue, list(instance_ids), model)
        return tasks.score_fleet(model, features, now=now, explain=explain), features

    return scoring


def act(
    ctx: service.Context, cloud: CloudAdapter, now: datetime, scoring: Scoring, model: TrainedModel | None, fresh: bool
) -> CycleResult:
    """The one cycle with each change a task run and the plan's instances claimed first."""
    return run_cycle(
        ctx,
        cloud,
        now,
        scoring=scoring,
        model_version=model.version if model is not None and fresh else None,
        model_fresh=fresh,
        runner=prefect_runner(),
        claim=claims(ctx),
    )


def publish(ctx: service.Context, result: CycleResult) -> str | State[Any]:
    """The risk table and plan as artifacts, the cycle's metrics, and the flow's end state."""
    plan = result.plan
    assert plan is not None
    artifacts.publish_cycle(result.scores, plan, result.bands)
    metrics.record_to_snapshot(
        result.scores,
        result.bands,
        plan,
        model_version=result.model_version,
        horizon_minutes=ctx.settings.horizon_minutes,
        duration_seconds=result.seconds,
        feature_age_seconds=artifacts.feature_age_seconds(ctx.glue, result.now),
        path=ctx.settings.home / metrics.SNAPSHOT,
        breaker_open=None if result.breaker is None else result.breaker.open,
    )
    logger = get_run_logger()
    for restored in result.restores:
        logger.warning("restored the work of a failed instance: plan %s %s", restored.plan_id, restored.state)
    if plan.state in (PlanState.ROLLED_BACK, PlanState.FAILED):
        return plan_state(plan)  # the flow run shows the rollback or failure, with its reason
    return result.summary()
