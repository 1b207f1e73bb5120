"""The score-and-allocate flow: online features -> risk -> policy -> allocation -> guardrails -> applier."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows import tasks
from forewarn import pipeline, service


@flow(name="score-and-allocate", log_prints=True)
def score_and_allocate(dataset: str | None = None, dry_run: bool = True) -> str:
    """Score every instance, plan by the policy, journal the plan, and run it if the mode allows.

    Without a usable model (none trained, or too old for the policy) the policy's static fallback decides.

    Args:
        dataset: dataset directory describing the fleet (simulated cloud); default FOREWARN_DATASET.
        dry_run: plan and journal, but change nothing in the cloud (the default).
    """
    ctx = service.context(dry_run=dry_run)
    data = tasks.load_dataset(dataset or ctx.settings.dataset)
    fleet = service.fleet_adapter(ctx, data)
    instances, fleet_tasks = fleet.list_instances(), fleet.list_tasks()
    now = data.end.to_pydatetime()
    model, fresh = service.usable_model(ctx, now)
    if not fresh:
        get_run_logger().warning("no usable model: the policy's static fallback decides this cycle")
    features = tasks.online_features(ctx.glue, [i.instance_id for i in instances])
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
    plan = tasks.apply_plan(ctx, fleet, cycle)
    ctx.save_state(engine=engine, guard_state=pipeline.finish_cycle(plan, cycle.guard_state))
    create_table_artifact(
        service.risk_rows(scores, cycle.plan), key="risk-table", description="Instances by failure probability"
    )
    create_markdown_artifact(service.plan_markdown(plan), key="plan", description="This cycle's plan")
    return f"scored {len(scores):,} instances; plan {plan.plan_id} {plan.state} with {len(plan.actions)} action(s)"
