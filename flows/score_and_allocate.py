"""The score-and-allocate flow: online features -> risk -> policy -> allocation -> guardrails -> applier."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow
from prefect.states import State

from flows import artifacts, tasks
from flows.apply import plan_state
from flows.cycle import current_model, plan_and_act
from forewarn import metrics, service
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
    model, fresh = current_model(ctx, now)
    features = tasks.online_features(ctx.glue, [i.instance_id for i in instances], model if fresh else None)
    scores = tasks.score_fleet(model if fresh else None, features, now=now)
    acted = plan_and_act(ctx, fleet, instances, fleet_tasks, scores, features, model=model, fresh=fresh, now=now)
    plan, engine = acted.plan, acted.engine
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
