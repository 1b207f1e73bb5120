"""The materialize flow: dataset -> window features -> Feast offline store -> online store."""

from __future__ import annotations

from prefect import flow

from flows import tasks
from forewarn import service


@flow(name="materialize", log_prints=True)
def materialize(dataset: str | None = None, dry_run: bool = True) -> str:
    """Compute window features for the dataset and materialize them into the online store.

    Args:
        dataset: dataset directory; default FOREWARN_DATASET.
        dry_run: unused here (materialize changes no cloud); kept so every flow takes the same options.
    """
    ctx = service.context()
    data = tasks.load_dataset(dataset or ctx.settings.dataset)
    features = tasks.build_features(data, velocity=ctx.policy.velocity_limits())
    rows = tasks.materialize_features(ctx.glue, features)
    return f"materialized {rows:,} feature rows for {len(data.instance_ids):,} instances"
