"""The score-and-allocate flow: online features -> risk -> policy -> allocation -> guardrails -> applier."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import State

from flows import artifacts, tasks
from flows.apply import plan_state, prefect_runner
from flows.scale import claim_instances, run_owner
from forewarn import metrics, pipeline, service
from forewarn.scale.config import ScaleSettings
from forewarn.schemas import PlanState


@flow(name="score-and-allocate", log_prints=True)
def score_and_allocate(dataset: str | None = None, dry_run: bool = True) -> str | State[Any]:
    """Score every instance, plan by the policy, journal the plan, and run it if the mode allows.

    Without a usable model (none trained, or too old for the policy) the policy's static fallback decides.

    Args:
        dataset: dataset directory describing the fleet (simulated cloud); default FOREWARN_DATASET.
        dry_run: plan and journal, but change nothing in the cloud (the default).
    """
    started = time.monotonic()
    ctx = service.context(dry_run=dry_run)
    data = tasks.load_dataset(dataset or ctx.settings.dataset)
    fleet = service.fleet_adapter(ctx, data)
    instances, fleet_tasks = fleet.list_instances(), fleet.list_tasks()
    now = data.end.to_pydatetime()
    model, fresh = service.usable_model(ctx, now)
    if not fresh:
        get_run_logger().warning("no usable model: the policy's static fallback decides this cycle")
    features = tasks.online_features(ctx.glue, [i.instance_id for i in instances], model if fresh else None)
    scores = tasks.score_fleet(model if fresh else None, features, now=now)
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
    plan = service.apply_plan(ctx, fleet, cycle, runner=prefect_runner())  # each change a task run
    ctx.save_state(engine=engine, guard_state=pipeline.finish_cycle(plan, cycle.guard_state))
    bands = dict(engine.last_bands)
    artifacts.publish_cycle(scores, plan, bands)
    metrics.record_to_snapshot(
        scores,
        bands,
        plan,
        model_version=model.version if model and fresh else None,
        horizon_minutes=ctx.settings.horizon_minutes,
        duration_seconds=time.monotonic() - started,
        feature_age_seconds=artifacts.feature_age_seconds(ctx.glue, now),
        path=ctx.settings.home / metrics.SNAPSHOT,
    )
    if plan.state in (PlanState.ROLLED_BACK, PlanState.FAILED):
        return plan_state(plan)  # the flow run shows the rollback or failure, with its reason
    return f"scored {len(scores):,} instances; plan {plan.plan_id} {plan.state} with {len(plan.actions)} action(s)"
