"""The stages of the loop as plain, typed functions; flows/ wraps each in a Prefect task.

materialize: window features -> Feast offline store -> online store; from the history database incrementally
    (:func:`materialize_history`), or from a dataset's features (:func:`materialize`, replay and backtest).
train: point-in-time training frame -> Great Expectations gate -> champion race (XGBoost, static rules,
    logistic; intervals over instances) -> registry;
    over a rolling window of the history database (:func:`train_from_history`) or a dataset.
score: online features -> calibrated risk scores with their top features; a model scores only with the
    features it was trained on, and an instance lacking some, or with a feature out of range (absurd
    telemetry, :func:`set_aside_absurd`), goes to the policy's fallback with the reason.
plan: scores -> policy decisions -> allocation -> guardrails -> a journalled plan (:mod:`forewarn.planning`).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from forewarn.features.events import EVENT_FEATURES
from forewarn.features.incremental import MaterializeOutcome as MaterializeOutcome
from forewarn.features.incremental import materialize_history as materialize_history
from forewarn.features.store import FeatureStoreGlue
from forewarn.features.windows import FEATURE_LIMIT, STATS, WINDOWS
from forewarn.model.candidates import fit_candidates, static_columns
from forewarn.model.champion import crown
from forewarn.model.config import TrainConfig
from forewarn.model.explaining import ExplainChoice
from forewarn.model.frame import TRAIN_EVERY_MINUTES as TRAIN_EVERY_MINUTES
from forewarn.model.frame import LabelSource, dataset_features, history_window, training_labels
from forewarn.model.frame import training_entities as training_entities
from forewarn.model.registry import ModelCard, ModelRegistry
from forewarn.model.scoring import TrainedModel
from forewarn.planning import FINISHED as FINISHED
from forewarn.planning import CyclePlan as CyclePlan
from forewarn.planning import apply_plan as apply_plan
from forewarn.planning import finish_cycle as finish_cycle
from forewarn.planning import plan_cycle as plan_cycle
from forewarn.policy.schema import Policy
from forewarn.schemas import RiskScore
from forewarn.store.history import HistoryStore
from forewarn.validation import ValidationReport, validate_training_frame

log = logging.getLogger("forewarn.pipeline")

build_features = dataset_features
"""Window features of every instance at every telemetry step (see :func:`forewarn.model.frame.dataset_features`)."""


def materialize(glue: FeatureStoreGlue, features: pd.DataFrame, *, end: datetime | None = None) -> int:
    """Write features to the offline store, apply the definitions and materialize up to ``end``."""
    glue.write_offline(features)
    glue.apply()
    until = end or pd.Timestamp(features["event_timestamp"].max()).to_pydatetime()
    glue.materialize(end=until)
    return len(features)


@dataclass
class TrainOutcome:
    """What a training run produced: the card of the new model, whether it became current, the gate."""

    card: ModelCard | None
    promoted: bool
    validation: ValidationReport
    rows: int


def train(
    dataset: LabelSource,
    glue: FeatureStoreGlue,
    registry: ModelRegistry,
    *,
    horizon_minutes: int,
    until: pd.Timestamp | None = None,
    config: TrainConfig | None = None,
    actions: pd.DataFrame | None = None,
) -> TrainOutcome:
    """Train on the point-in-time frame from Feast; the current model stays if the gate fails or it is worse.

    With ``actions`` (journalled outcomes, :func:`forewarn.model.feedback.journal_actions`), an instance that
    was drained or migrated is labelled by what then happened to it, never assumed healthy. XGBoost, the
    static rules and the logistic model race on the newest period (:mod:`forewarn.model.champion`): the
    winner is registered and becomes champion unless the one in service clearly beats it. The rows and
    labels come from :mod:`forewarn.model.frame`, as in the backtest.
    """
    labelled = training_labels(dataset, horizon_minutes, until=until, actions=actions)
    frame = glue.training_frame(labelled)
    label = f"label_{horizon_minutes}m"
    # A feature never defined in the frame (a 1-hour slope of daily samples) teaches nothing: left out, so
    # the model records, and later scores with, only the features it learned from.
    names = [f for f in glue.feature_names if f in EVENT_FEATURES or frame[f].notna().any()]
    report = validate_training_frame(frame, feature_columns=names, label_column=label, sparse_columns=EVENT_FEATURES)
    if not report.success:
        return TrainOutcome(card=None, promoted=False, validation=report, rows=len(frame))
    cfg = config or TrainConfig(horizon_minutes=horizon_minutes)
    fitted = fit_candidates(frame, names, label, cfg, static=static_columns(glue.metrics, names))
    window = (
        pd.Timestamp(frame["event_timestamp"].min()).to_pydatetime(),
        pd.Timestamp(frame["event_timestamp"].max()).to_pydatetime(),
    )
    card, race = crown(
        registry,
        fitted.models,
        fitted.test,
        label,
        data_window=window,
        validation=report.model_dump(mode="json"),
        telemetry_metrics=glue.metrics,
        registered=lambda card: glue.register_service(card.version, card.features),  # the version's feature contract
        seed=cfg.seed,
    )
    promoted = race.promoted
    return TrainOutcome(card=card, promoted=promoted, validation=report, rows=len(frame))


def train_from_history(
    history: HistoryStore,
    glue: FeatureStoreGlue,
    registry: ModelRegistry,
    *,
    now: datetime,
    days: float,
    horizon_minutes: int,
    config: TrainConfig | None = None,
    actions: pd.DataFrame | None = None,
) -> TrainOutcome:
    """:func:`train` over the last ``days`` before ``now``: rows and labels from the history database
    (telemetry keys, the failures table), features from the Feast offline store, feedback from ``actions``."""
    window = history_window(history, now, days)
    return train(
        window, glue, registry, horizon_minutes=horizon_minutes, until=pd.Timestamp(now), config=config, actions=actions
    )


MISSING = "missing_features"
"""``frame.attrs`` key of :func:`online_features`: the model's features the online store lacks."""


def metric_of(feature: str) -> str | None:
    """The (safe) metric name of a window feature ``<metric>_<stat>_<window>``, else None."""
    for window in WINDOWS:
        for stat in STATS:
            suffix = f"_{stat}_{window}"
            if feature.endswith(suffix):
                return feature[: -len(suffix)]
    return None


def _unscorable(model: TrainedModel, features: pd.DataFrame) -> dict[str, list[str]]:
    """Instance -> the model's metrics none of whose features it has (the metric stopped for it)."""
    groups: dict[str, list[str]] = {}
    for name in model.feature_names:
        metric = metric_of(name)
        if metric is not None and name in features:
            groups.setdefault(metric, []).append(name)
    out: dict[str, list[str]] = {}
    for metric, names in groups.items():
        empty = features[names].isna().all(axis=1).to_numpy()
        for instance in features["instance_id"].astype(str).to_numpy()[empty]:
            out.setdefault(str(instance), []).append(metric)
    return out


def explain_choice(policy: Policy) -> ExplainChoice:
    """What the policy asks to explain: everything, or from the moderate band's entry up plus a sample."""
    return ExplainChoice(everything=policy.explain == "all", from_probability=policy.bands.moderate.enter)


def online_features(
    glue: FeatureStoreGlue, instance_ids: Sequence[str], model: TrainedModel | None = None
) -> pd.DataFrame:
    """The latest features of each instance from the online store (NaN where it has none), read through the
    model version's FeatureService when a model is given.

    A model scores only with the features it was trained on. When the online store lacks some of them (a
    metric is no longer materialized) or an instance has none of a metric's features, this says which and
    gives those instances no feature time (``event_timestamp`` NaT): the cycle hands them to the policy's
    fallback instead of scoring them on NaNs. ``frame.attrs[MISSING]`` lists the absent features.
    """
    ids = [str(i) for i in instance_ids]
    if model is None:
        return glue.online_features(ids)
    stored = set(glue.stored_names)
    absent = [f for f in model.feature_names if f not in stored]
    if absent:
        metrics = sorted({m for m in map(metric_of, absent) if m is not None})
        log.warning(
            "model %s needs %d feature(s) the online store lacks (metrics %s: %s); its %d instance(s) go to the "
            "policy's fallback until it is retrained or the metrics return",
            model.version, len(absent), ", ".join(metrics) or "-", ", ".join(absent[:8]), len(ids),
        )  # fmt: skip
        frame = pd.DataFrame({"instance_id": ids, **{f: np.nan for f in model.feature_names}})
        frame["event_timestamp"] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
        frame.attrs[MISSING] = absent
        return frame
    service = glue.ensure_service(model.version, model.feature_names)
    frame = glue.online_features(ids, service=service)
    lacking = _unscorable(model, frame)
    if lacking:
        gone = sorted({m for metrics in lacking.values() for m in metrics})
        log.warning(
            "%d instance(s) have no value of metric(s) %s that model %s was trained on (e.g. %s); they go to the "
            "policy's fallback", len(lacking), ", ".join(gone), model.version, ", ".join(sorted(lacking)[:5]),
        )  # fmt: skip
        frame.loc[frame["instance_id"].astype(str).isin(lacking), "event_timestamp"] = pd.NaT
    frame.attrs[MISSING] = []
    return frame


def score(
    model: TrainedModel | None, features: pd.DataFrame, *, now: datetime, explain: ExplainChoice | None = None
) -> list[RiskScore]:
    """Calibrated scores with their top features; none without a model (the policy's fallback decides).

    Rows without any of the model's features, or without a feature time (see :func:`online_features`), are
    not scored. ``explain`` chooses which scores carry top features (:mod:`forewarn.model.explaining`);
    default: every one."""
    if model is None:
        return []
    present = [f for f in model.feature_names if f in features.columns]
    if len(present) < len(model.feature_names):
        return []
    known = features.dropna(subset=model.feature_names, how="all")
    if "event_timestamp" in known.columns:
        known = known[known["event_timestamp"].notna().to_numpy()]
    if not len(known):
        return []
    if explain is None or explain.everything:
        return model.score(known, timestamp=now)
    scores = model.score(known, timestamp=now, explain_from=float("inf"))
    probabilities = np.fromiter((s.probability for s in scores), dtype=float, count=len(scores))
    rows = explain.rows(probabilities, [s.instance_id for s in scores])
    for row, top in zip(rows.tolist(), model.explain(known.iloc[rows]), strict=True):
        scores[row].top_features = top
    return scores


UNSCORABLE = "unscorable"
"""``frame.attrs`` key of :func:`set_aside_absurd`: instance id -> why its features were not scored."""


def set_aside_absurd(features: pd.DataFrame, names: Sequence[str] | None = None) -> pd.DataFrame:
    """Keep rows with an infinite feature, or one at or beyond the clipping limit (absurd telemetry, see
    :data:`forewarn.features.windows.FEATURE_LIMIT`), from the model: their ``event_timestamp`` becomes NaT,
    so the cycle hands them to the policy's fallback, those values become NaN, so no static threshold fires
    on them, and ``attrs[UNSCORABLE]`` says why, per instance. One instance never stops the fleet's scoring.

    Args:
        features: ``instance_id``, ``event_timestamp`` and feature columns.
        names: the features to check (a model's); default every numeric column.
    """
    reasons: dict[str, str] = dict(features.attrs.get(UNSCORABLE, {}))
    keys = ("instance_id", "event_timestamp")
    candidates = names if names is not None else features.select_dtypes("number").columns
    columns = [str(c) for c in candidates if c in features.columns and c not in keys]
    values = features[columns].to_numpy(dtype=float) if columns else np.zeros((len(features), 0))
    with np.errstate(invalid="ignore"):
        bad = np.isinf(values) | (np.abs(values) >= FEATURE_LIMIT)
    rows = bad.any(axis=1)
    out = features.copy() if rows.any() else features
    for row in np.flatnonzero(rows).tolist():
        named = [columns[j] for j in np.flatnonzero(bad[row])]
        shown = ", ".join(named[:3]) + (f" and {len(named) - 3} more" if len(named) > 3 else "")
        reasons[str(out["instance_id"].iloc[row])] = (
            f"not scored by the model: feature(s) {shown} out of range (absurd telemetry values); "
            "the policy's fallback decides it"
        )
    if rows.any():
        values[bad] = np.nan
        out[columns] = values
        if "event_timestamp" in out.columns:
            out.loc[rows, "event_timestamp"] = pd.NaT
        log.warning("%d instance(s) not scored, features out of range: %s", int(rows.sum()), "; ".join(
            f"{k}: {v}" for k, v in list(reasons.items())[:3]))  # fmt: skip
    out.attrs[UNSCORABLE] = reasons
    return out


def feature_map(features: pd.DataFrame, columns: Collection[str] | None = None) -> Mapping[str, dict[str, float]]:
    """instance_id -> feature -> value (NaN left out), for the policy's static fallback thresholds;
    ``columns``: only these features (the thresholds'), not all of them for every instance. An instance's
    map is made when asked (the fallback asks for the few instances it decides, not for the whole fleet)."""
    names = [c for c in features.columns if c not in ("instance_id", "event_timestamp")]
    if columns is not None:
        names = [c for c in names if c in columns]
    return FeatureMap(features["instance_id"].astype(str).tolist(), names, features[names].to_numpy(dtype=float))


class FeatureMap(Mapping[str, dict[str, float]]):
    """The rows of a feature matrix by instance id (the last row of an id that repeats), each a dict when read."""

    def __init__(self, ids: list[str], names: list[str], values: np.ndarray) -> None:
        self._row = {instance_id: n for n, instance_id in enumerate(ids)}
        self._names, self._values = names, values

    def __getitem__(self, instance_id: str) -> dict[str, float]:
        row = self._values[self._row[instance_id]].tolist()
        return {n: v for n, v in zip(self._names, row, strict=True) if v == v}

    def __iter__(self) -> Iterator[str]:
        return iter(self._row)

    def __len__(self) -> int:
        return len(self._row)
