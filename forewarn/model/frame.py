"""The rows the failure model learns from, built one way for the train flow and for the backtest.

features: :func:`dataset_features`, every feature of every instance at every telemetry step.
entities: :func:`training_entities`, one row per instance per :data:`TRAIN_EVERY_MINUTES` bucket,
    before the cutoff ``until``.
labels: :func:`training_labels`, from the failures known at the cutoff (and the journal's actions), of a
    dataset or of a rolling window of the history database (:func:`history_window`).
frame: the labelled entities with their features. The train flow joins through Feast
    (``FeatureStoreGlue.training_frame``, point in time); the backtest joins in memory with
    :func:`join_features`. Entities sit on telemetry steps, where a feature row exists, so the
    point-in-time join picks that very row and both give the same values (tests/test_backtest_frame.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np
import pandas as pd

from forewarn.dataset import Dataset
from forewarn.errors import InputError
from forewarn.features.windows import KEYS, all_feature_names, compute_window_features
from forewarn.model.feedback import OUTCOME, feedback_labels
from forewarn.model.labels import make_labels
from forewarn.schemas import VelocityLimits
from forewarn.store.history import HistoryStore

TRAIN_EVERY_MINUTES = 15
"""Training rows are taken every this many minutes per instance: neighbours 5 minutes apart add little."""


def dataset_features(
    dataset: Dataset, *, every_minutes: int | None = None, velocity: VelocityLimits | None = None
) -> pd.DataFrame:
    """Window, error, event, workload and velocity features of every instance at every telemetry step
    (or every ``every_minutes``): what the materialize flow writes to Feast."""
    return compute_window_features(
        dataset.telemetry,
        errors=dataset.errors,
        failures=dataset.failures,
        instances=dataset.instances,
        workloads=dataset.workloads,
        velocity=velocity,
        metrics=dataset.metrics,
        every_minutes=every_minutes,
    )


def model_feature_names(metrics: list[str]) -> list[str]:
    """The features a new model trains on: those of the ``failure_model_v1`` service, in its order."""
    return all_feature_names(metrics)


def training_entities(telemetry: pd.DataFrame, *, until: pd.Timestamp | None = None) -> pd.DataFrame:
    """The (instance, time) rows to learn from: each instance's last sample in every bucket of
    :data:`TRAIN_EVERY_MINUTES` (so samples at any offset or step are kept), and only before ``until``."""
    entities = telemetry[["instance_id", "timestamp"]].rename(columns={"timestamp": "event_timestamp"})
    bucket = entities["event_timestamp"].dt.floor(f"{TRAIN_EVERY_MINUTES}min")
    last = ~pd.DataFrame({"i": entities["instance_id"], "b": bucket}).duplicated(keep="last")
    entities = entities[last.to_numpy()]
    if until is not None:
        entities = entities[entities["event_timestamp"] < until]
    return entities.reset_index(drop=True)


class LabelSource(Protocol):
    """What labels are made from: telemetry rows (their keys suffice), failures, and the data's end. A
    :class:`~forewarn.dataset.Dataset` is one; :func:`history_window` reads one from the database."""

    @property
    def telemetry(self) -> pd.DataFrame: ...

    @property
    def failures(self) -> pd.DataFrame: ...

    @property
    def end(self) -> pd.Timestamp: ...


@dataclass(frozen=True)
class HistoryWindow:
    """A rolling window of the history database: telemetry keys and failures in ``(start, end]``."""

    telemetry: pd.DataFrame
    failures: pd.DataFrame
    start: pd.Timestamp
    end: pd.Timestamp


def history_window(history: HistoryStore, end: datetime, days: float) -> HistoryWindow:
    """The last ``days`` before ``end`` of the history database, for :func:`training_labels`: telemetry
    keys (one query, no metric values) and failures (with each instance's failure before the window)."""
    start = end - timedelta(days=days)
    return HistoryWindow(
        telemetry=history.telemetry_keys_between(start, end),
        failures=history.failures_between(start, end, last_before=True),
        start=pd.Timestamp(start),
        end=pd.Timestamp(end),
    )


def training_labels(
    dataset: LabelSource,
    horizon_minutes: int,
    *,
    until: pd.Timestamp | None = None,
    actions: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """:func:`training_entities` labelled for the horizon, as seen at ``until`` (default: the data's end).

    Only failures at or before ``until`` count, and windows running past it are censored, so no label
    looks beyond the cutoff. With ``actions`` (journalled outcomes) drained instances are labelled by
    what then happened to them (:func:`forewarn.model.feedback.feedback_labels`).
    """
    entities = training_entities(dataset.telemetry, until=until)
    data_end = until if until is not None else dataset.end
    failures = dataset.failures
    if until is not None:
        failures = failures[pd.to_datetime(failures["timestamp"], utc=True) <= until]
    if actions is not None and len(actions):
        labelled = feedback_labels(entities, failures, actions, [horizon_minutes], data_end=data_end)
        return labelled.drop(columns=OUTCOME)
    return make_labels(entities, failures, [horizon_minutes], data_end=data_end)


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True).astype("datetime64[ns, UTC]")


def join_features(labelled: pd.DataFrame, features: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """In memory, what ``FeatureStoreGlue.training_frame(labelled)`` returns: ``labelled``'s columns, then
    ``names`` from the feature row of the same instance at the same time (NaN where there is none)."""
    missing = [c for c in (*KEYS, *names) if c not in features.columns]
    if missing:
        raise InputError("the feature frame lacks a column of the model", field=missing[0])
    right = pd.MultiIndex.from_arrays([features["instance_id"].astype(str), _utc(features["event_timestamp"])])
    last = np.flatnonzero(~right.duplicated(keep="last"))
    left = pd.MultiIndex.from_arrays([labelled["instance_id"].astype(str), _utc(labelled["event_timestamp"])])
    found = right[last].get_indexer(left) if len(last) else np.full(len(left), -1)
    hit = found >= 0
    rows = last[np.where(hit, found, 0)] if len(last) else np.zeros(len(left), dtype=int)
    values = {  # only the rows asked for are copied, not the feature frame
        name: np.where(hit, features[name].to_numpy(dtype=float)[rows] if len(last) else np.nan, np.nan)
        for name in names
        if name not in labelled.columns
    }
    out = labelled.assign(instance_id=left.get_level_values(0), event_timestamp=left.get_level_values(1))
    return pd.concat([out, pd.DataFrame(values, index=labelled.index)], axis=1)
