"""The score-and-allocate flow: the one cycle, on the clock, against the configured cloud."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import State

from flows import tasks
from flows.cycle import act, current_model, online_scoring, publish
from forewarn import compose, pipeline, service
from forewarn.clock import clock_for


@flow(name="score-and-allocate", log_prints=True)
def score_and_allocate(dataset: str | None = None, dry_run: bool = True, at: str | None = None) -> str | State[Any]:
    """Finish interrupted plans, restore failed instances' work, score every instance, plan by the policy,
    journal the plan, and run it if the mode allows (releasing what Forewarn held where risk fell).

    Without a usable model (none trained, or its data too old at the cycle's time) the policy's static
    fallback decides; so it does for an instance whose features are too old.

    Args:
        dataset: seeds the simulated cloud on its first run (default FOREWARN_DATASET); later runs act on
            the simulated fleet as the previous cycles left it. Unused for AWS and OpenStack.
        dry_run: plan and journal, but change nothing in the cloud (the default).
        at: the cycle's time (RFC 3339), to run on recorded data; default: the wall clock.
    """
    ctx = service.context(dry_run=dry_run)
    now = clock_for(at).now()
    cloud = compose.cloud(ctx, tasks.load_dataset(dataset) if dataset else None, at=now)
    model, fresh = current_model(ctx, now)
    scoring = online_scoring(ctx.glue, model if fresh else None, pipeline.explain_choice(ctx.policy))
    result = act(ctx, cloud, now, scoring, model, fresh)
    return publish(ctx, result)
