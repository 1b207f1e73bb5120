"""The train flow: history database + Feast offline store -> GX gate -> champion race -> registry."""

from __future__ import annotations

from prefect import flow

from flows import artifacts, tasks
from forewarn import markdown, service
from forewarn.clock import clock_for, parse_time
from forewarn.model.feedback import journal_actions


@flow(name="train", log_prints=True)
def train(dataset: str | None = None, dry_run: bool = True, until: str | None = None, at: str | None = None) -> str:
    """Train on the last FOREWARN_TRAIN_DAYS of history before the cycle's time: XGBoost, the static rules
    and the logistic model race on the newest period with intervals over instances; the simplest one that
    no other clearly beats is registered, and serves unless the champion in service clearly beats it. The
    artifact says which scorer won and why.

    Rows come from the history database's telemetry, labels from its failures table, features from the
    Feast offline store (point in time), feedback from the journal.

    Args:
        dataset: a dataset directory to ingest into the history database first (``forewarn run
            --dataset``); by default only the database is read.
        dry_run: unused here; kept so every flow takes the same options.
        until: learn only from samples before this time (RFC 3339); default the cycle's time.
        at: the cycle's time (RFC 3339) on recorded data; default the wall clock.
    """
    ctx = service.context()
    now = parse_time(until, field="until") if until else clock_for(at).now()
    if dataset:
        tasks.ingest_dataset(dataset, repository=ctx.repo)
    actions = journal_actions(ctx.journal.list())  # feedback: what happened after each action
    outcome = tasks.train_from_history(
        ctx.repo,
        ctx.glue,
        ctx.registry,
        now=now,
        days=ctx.settings.train_days,
        horizon_minutes=ctx.settings.horizon_minutes,
        actions=actions,
    )
    summary = markdown.describe_training(outcome)
    model = ctx.registry.load(outcome.card.version) if outcome.card else None
    artifacts.publish_model_report(summary, outcome.card, model)
    return summary
