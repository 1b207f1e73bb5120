"""The materialize flow: dataset -> window features -> Feast offline store -> online store."""

from __future__ import annotations

from typing import cast

import pandas as pd
from prefect import flow

from flows import tasks
from forewarn import service
from forewarn.clock import parse_time


@flow(name="materialize", log_prints=True)
def materialize(dataset: str | None = None, dry_run: bool = True, at: str | None = None) -> str:
    """Compute window features for the dataset and materialize them into the online store.

    Args:
        dataset: dataset directory; default FOREWARN_DATASET.
        dry_run: unused here (materialize changes no cloud); kept so every flow takes the same options.
        at: materialize as of this time (RFC 3339): only features computed up to then; default all.
    """
    ctx = service.context()
    data = tasks.load_dataset(dataset or ctx.settings.dataset)
    features: pd.DataFrame = cast(pd.DataFrame, tasks.build_features(data, velocity=ctx.policy.velocity_limits()))
    end = None
    if at:
        end = parse_time(at)
        features = features[features["event_timestamp"] <= pd.Timestamp(end)]
    rows = tasks.materialize_features(ctx.glue, features, end=end)
    return f"materialized {rows:,} feature rows for {len(data.instance_ids):,} instances"
