"""What every score-and-allocate flow does once it has scores: plan, claim the instances, act, remember.

The one-process flow and the Dask-sharded one differ only in how they score; both end here.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine

from adapters.base import CloudAdapter
from flows import tasks
from flows.apply import prefect_runner
from forewarn import pipeline, service
from forewarn.model.train import TrainedModel
from forewarn.policy.engine import PolicyEngine
from forewarn.scale.config import ScaleSettings
from forewarn.schemas import Instance, Plan, PlanState, RiskScore, Task
from forewarn.store.lease import LeaseStore, claim_plan


@task(name="claim-instances", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def claim_instances(engine: Engine, plan: Plan, owner: str, *, cycle: str, ttl_seconds: int) -> Plan:
    """The plan less the actions on instances another run holds (see forewarn.store.lease.claim_plan)."""
    store = LeaseStore(engine)
    store.create()
    return claim_plan(store, plan, owner, cycle=cycle, ttl=timedelta(seconds=ttl_seconds))


def run_owner() -> str:
    """This flow run's id (the claims' owner); a random id outside a flow run."""
    from prefect.runtime import flow_run

    return str(flow_run.id or f"local-{uuid.uuid4().hex[:12]}")


def current_model(ctx: service.Context, now: datetime) -> tuple[TrainedModel | None, bool]:
    """The champion and whether it may score; a warning when the policy's static fallback must decide."""
    model, fresh = service.usable_model(ctx, now)
    if not fresh:
        get_run_logger().warning("no usable model: the policy's static fallback decides this cycle")
    return model, fresh


@dataclass
class Acted:
    """The plan as it ended, and the engine whose bands it used."""

    plan: Plan
    engine: PolicyEngine


def plan_and_act(
    ctx: service.Context,
    fleet: CloudAdapter,
    instances: Sequence[Instance],
    fleet_tasks: Sequence[Task],
    scores: Sequence[RiskScore],
    features: pd.DataFrame,
    *,
    model: TrainedModel | None,
    fresh: bool,
    now: datetime,
) -> Acted:
    """Plan by the policy, claim the plan's instances, run it (each change a task run), save the cycle state."""
    engine = ctx.engine()
    cycle = tasks.plan_cycle(
        scores,
        instances,
        fleet_tasks,
        engine=engine,
        policy=ctx.policy,
        guard_state=ctx.guard_state(),
        now=now,
        model_version=model.version if model else None,
        model_fresh=fresh,
        features=pipeline.feature_map(features),
    )
    if cycle.plan.state == PlanState.APPROVED and cycle.plan.actions:
        # Overlapping runs (several workers, one schedule) never act on the same instance twice.
        cycle.plan = claim_instances(
            ctx.repo.engine,
            cycle.plan,
            run_owner(),
            cycle=now.isoformat(),
            ttl_seconds=ScaleSettings().claim_ttl_seconds,
        )
    plan = service.apply_plan(ctx, fleet, cycle, runner=prefect_runner())
    ctx.save_state(engine=engine, guard_state=pipeline.finish_cycle(plan, cycle.guard_state))
    return Acted(plan=plan, engine=engine)
