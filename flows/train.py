"""The train flow: point-in-time frame from Feast -> Great Expectations gate -> XGBoost -> registry."""

from __future__ import annotations

import pandas as pd
from prefect import flow

from flows import artifacts, tasks
from forewarn import service
from forewarn.clock import parse_time
from forewarn.model.feedback import journal_actions


@flow(name="train", log_prints=True)
def train(dataset: str | None = None, dry_run: bool = True, until: str | None = None, at: str | None = None) -> str:
    """Train a new model version; it becomes champion only if it passes the gate and beats the current one.

    Args:
        dataset: dataset directory; default FOREWARN_DATASET.
        dry_run: unused here; kept so every flow takes the same options.
        until: learn only from samples before this time (RFC 3339); default all of the dataset.
        at: train as of this time (RFC 3339) on recorded data: the same as ``until`` when that is not given.
    """
    ctx = service.context()
    data = tasks.load_dataset(dataset or ctx.settings.dataset)
    cutoff = pd.Timestamp(parse_time(until or at, field="until")) if (until or at) else None
    actions = journal_actions(ctx.journal.list())  # feedback: what happened after each action
    outcome = tasks.train_model(
        data, ctx.glue, ctx.registry, horizon_minutes=ctx.settings.horizon_minutes, until=cutoff, actions=actions
    )
    summary = service.describe_training(outcome)
    model = ctx.registry.load(outcome.card.version) if outcome.card else None
    artifacts.publish_model_report(summary, outcome.card, model)
    return summary
