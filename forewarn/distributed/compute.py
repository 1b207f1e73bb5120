"""Per-shard work, as plain picklable functions a Dask worker runs: window features and risk scores.

Each scoring shard reads its own features from a :class:`FeatureSource` (the Feast online store through the
model's feature service in the flows; a parquet file of latest features in ``bench/scale.py``) and scores
them with the same :func:`forewarn.pipeline.score` as the single process, so merged shard results equal a
one-process run. With the policy's ``explain: risky`` the shards explain the scores from the moderate band
up, and the driver explains the sample of quiet ones after the merge (:func:`explain_sample`): a sample is
drawn over the whole fleet, so drawing it per shard would explain other instances than one process does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from forewarn.dataset import Dataset
from forewarn.model.explaining import ExplainChoice
from forewarn.model.scoring import TrainedModel
from forewarn.schemas import RiskScore


class FeatureSource(Protocol):
    """Reads the latest features of some instances: ``instance_id`` and the feature columns (those of
    ``model`` when the source can choose)."""

    def read(self, instance_ids: Sequence[str], model: TrainedModel | None = None) -> pd.DataFrame: ...


@lru_cache(maxsize=4)
def _glue(features_dir: str) -> Any:
    from forewarn.features.store import FeatureStoreGlue

    return FeatureStoreGlue(Path(features_dir))


@dataclass(frozen=True)
class OnlineSource:
    """The Feast online store under ``features_dir`` (SQLite here, Redis at scale via its feature_store.yaml),
    read as one process reads it (:func:`forewarn.pipeline.online_features`: the model's feature service).

    Each worker process opens the store once and keeps it.
    """

    features_dir: str

    def read(self, instance_ids: Sequence[str], model: TrainedModel | None = None) -> pd.DataFrame:
        from forewarn import pipeline

        return pipeline.online_features(_glue(self.features_dir), list(instance_ids), model)


@dataclass(frozen=True)
class ParquetSource:
    """A parquet file of latest features, one row per instance; each shard reads only its rows."""

    path: str

    def read(self, instance_ids: Sequence[str], model: TrainedModel | None = None) -> pd.DataFrame:
        ids = [str(i) for i in instance_ids]
        frame = pd.read_parquet(self.path, filters=[("instance_id", "in", ids)])
        return frame.set_index("instance_id").reindex(ids).rename_axis("instance_id").reset_index()


@dataclass
class ShardResult:
    """What a scoring shard returns: its scores and the features they came from (for policy fallbacks)."""

    scores: list[RiskScore]
    features: pd.DataFrame
    instances: int = 0
    notes: list[str] = field(default_factory=list)


def score_shard(
    source: FeatureSource,
    model: TrainedModel | None,
    instance_ids: Sequence[str],
    *,
    now: datetime,
    explain: ExplainChoice | None = None,
) -> ShardResult:
    """Read this shard's features and score them exactly as :func:`forewarn.pipeline.score` does; with an
    ``explain`` that samples, only the risky scores are explained here (see the module docstring)."""
    from forewarn import pipeline

    features = pipeline.set_aside_absurd(source.read(instance_ids, model), model.feature_names if model else None)
    risky = explain if explain is None or explain.everything else replace(explain, sample=0.0)
    scores = pipeline.score(model, features, now=now, explain=risky)
    return ShardResult(scores=scores, features=features, instances=len(features))


def explain_sample(
    model: TrainedModel | None, scores: Sequence[RiskScore], features: pd.DataFrame, explain: ExplainChoice | None
) -> None:
    """Give the merged ``scores`` the top features of the quiet ones ``explain`` samples, drawn over the whole
    fleet as one process draws them (the shards explained the risky ones); ``features``: the merged rows."""
    if model is None or explain is None or explain.everything or not scores:
        return
    probabilities = np.fromiter((s.probability for s in scores), dtype=float, count=len(scores))
    chosen = explain.rows(probabilities, [s.instance_id for s in scores]).tolist()
    quiet = [r for r in chosen if probabilities[r] < explain.from_probability]
    if not quiet:
        return
    position = {str(i): n for n, i in enumerate(features["instance_id"].tolist())}
    rows = features.iloc[[position[scores[r].instance_id] for r in quiet]]
    for r, top in zip(quiet, model.explain(rows), strict=True):
        scores[r].top_features = top


def merge_shards(results: Sequence[ShardResult], order: Sequence[str]) -> tuple[list[RiskScore], pd.DataFrame]:
    """Scores and features of all shards, in the order of ``order`` (the single-process order)."""
    rank = {str(i): n for n, i in enumerate(order)}
    scores = sorted((s for r in results for s in r.scores), key=lambda s: rank.get(s.instance_id, len(rank)))
    frames = [r.features for r in results if len(r.features)]
    if not frames:
        return scores, results[0].features if results else pd.DataFrame()
    features = pd.concat(frames, ignore_index=True)
    features = features.iloc[features["instance_id"].map(rank).argsort(kind="stable")].reset_index(drop=True)
    from forewarn.pipeline import UNSCORABLE

    features.attrs[UNSCORABLE] = {k: v for f in frames for k, v in f.attrs.get(UNSCORABLE, {}).items()}
    return scores, features


def shard_dataset(dataset: Dataset, instance_ids: Sequence[str]) -> Dataset:
    """The rows of ``dataset`` that belong to these instances (the other tables filtered alike)."""
    wanted = {str(i) for i in instance_ids}

    def keep(frame: pd.DataFrame | None) -> pd.DataFrame | None:
        if frame is None:
            return None
        return frame.loc[frame["instance_id"].astype(str).isin(wanted)].reset_index(drop=True)

    telemetry = keep(dataset.telemetry)
    failures = keep(dataset.failures)
    assert telemetry is not None and failures is not None
    return Dataset(
        telemetry=telemetry,
        failures=failures,
        errors=keep(dataset.errors),
        instances=keep(dataset.instances),
        workloads=keep(dataset.workloads),
        metrics=list(dataset.metrics),
    )


def features_shard(dataset: Dataset, *, every_minutes: int | None = None) -> pd.DataFrame:
    """Window features of one shard's dataset (the same function as the single process)."""
    from forewarn import pipeline

    return pipeline.build_features(dataset, every_minutes=every_minutes)


def merge_features(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Shard feature frames as one, sorted by instance and time like ``compute_window_features``."""
    non_empty = [f for f in frames if len(f)]
    if not non_empty:
        return frames[0] if frames else pd.DataFrame()
    merged = pd.concat(non_empty, ignore_index=True)
    return merged.sort_values(["instance_id", "event_timestamp"], kind="stable").reset_index(drop=True)


def score_on_client(
    client: Any,
    source: FeatureSource,
    model: TrainedModel | None,
    groups: Sequence[Sequence[str]],
    *,
    now: datetime,
    explain: ExplainChoice | None = None,
) -> list[ShardResult]:
    """Score every shard on a ``distributed.Client`` directly (no Prefect), the model sent once per worker."""
    remote = client.scatter(model, broadcast=True, hash=False) if model is not None else None
    futures = client.map(
        _score_remote, [list(g) for g in groups], source=source, model=remote, now=now, explain=explain, pure=False
    )
    results: list[ShardResult] = client.gather(futures)
    return results


def _score_remote(
    instance_ids: list[str],
    *,
    source: FeatureSource,
    model: TrainedModel | None,
    now: datetime,
    explain: ExplainChoice | None,
) -> Any:
    return score_shard(source, model, instance_ids, now=now, explain=explain)
