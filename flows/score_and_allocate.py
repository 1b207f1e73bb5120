"""The score-and-allocate flow: online features -> risk -> policy -> allocation -> guardrails -> applier."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows import tasks
from forewarn import service


@flow(name="score-and-allocate", log_prints=True)
def score_and_allocate(dataset: str | None = None, dry_run: bool = True) -> str:
    """Score every instance, plan by the policy, journal the plan, and run it if the mode allows.

    Args:
        dataset: dataset directory describing the fleet (simulated cloud); default FOREWARN_DATASET.
        dry_run: plan and journal, but change nothing in the cloud (the default).
    """
    ctx = service.context(dry_run=dry_run)
    data = tasks.load_dataset(dataset or ctx.settings.dataset)
    fleet = service.fleet_adapter(ctx, data)
    instances, fleet_tasks = fleet.list_instances(), fleet.list_tasks()
    now = data.end.to_pydatetime()
    model = service.current_model(ctx)
    scores = tasks.score_fleet(ctx.glue, model, [i.instance_id for i in instances], now=now)
    cycle = tasks.plan_cycle(
        scores,
        instances,
        fleet_tasks,
        engine=ctx.engine(),
        policy=ctx.policy,
        guard_state=ctx.guard_state(),
        now=now,
        model_version=model.version,
    )
    plan = tasks.apply_plan(ctx, fleet, cycle)
    create_table_artifact(
        service.risk_rows(scores, cycle.plan), key="risk-table", description="Instances by failure probability"
    )
    create_markdown_artifact(service.plan_markdown(plan), key="plan", description="This cycle's plan")
    return f"scored {len(scores):,} instances; plan {plan.plan_id} {plan.state} with {len(plan.actions)} action(s)"
