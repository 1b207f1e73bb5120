"""The materialize flow: new telemetry in the history database -> window features -> Feast offline and online."""

from __future__ import annotations

from datetime import timedelta

from prefect import flow

from flows import tasks
from forewarn import service
from forewarn.clock import clock_for


@flow(name="materialize", log_prints=True)
def materialize(dataset: str | None = None, dry_run: bool = True, at: str | None = None) -> str:
    """Compute window features for the telemetry that reached the history database since the last run
    (plus the look-back of the longest window), for every metric present, whatever its name; write them to
    the offline store, push the latest to the online store, and move the ``materialize`` watermark.

    Args:
        dataset: a dataset directory to ingest into the history database first (``forewarn run
            --dataset``); by default only the database is read, never FOREWARN_DATASET.
        dry_run: unused here (materialize changes no cloud); kept so every flow takes the same options.
        at: the cycle's time (RFC 3339), to run on recorded data: rows after it wait; default the wall clock.
    """
    ctx = service.context()
    now = clock_for(at).now()
    if dataset:
        summary = tasks.ingest_dataset(dataset, repository=ctx.repo)
        print(f"ingested {summary.stored:,} telemetry rows of {dataset} into the history database first")
    outcome = tasks.materialize_history(
        ctx.repo,
        tasks.glue_opener(ctx.settings),
        now=now,
        velocity=ctx.policy.velocity_limits(),
        backfill=timedelta(days=ctx.settings.train_days),
        cache=ctx.settings.features_dir / "lookback.parquet",
    )
    return outcome.summary()
