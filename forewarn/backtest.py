"""The backtest: train on the earlier part of a dataset in time, evaluate the later part, beside two baselines.

The model is the one the train flow would ship with ``--until`` at the cut: the same rows (one per instance
per 15 minutes before the cut), labels (failures known at the cut), features and
:func:`forewarn.model.train.train_model` with its default TrainConfig, all from :mod:`forewarn.model.frame`.
The three scorers are fit on the same training rows and scored on the same later rows:
    model: XGBoost as in production (early stopping, calibration and the operating threshold all from
        periods inside the training part).
    static: per-metric thresholds fit on the training part (:mod:`forewarn.model.baselines`).
    logistic: an L2 logistic regression on the same features (:mod:`forewarn.model.logistic`).
Evaluation is the event-level view of ARCHITECTURE.md, over every telemetry sample from the cut on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from forewarn.dataset import Dataset, read_dataset
from forewarn.errors import ConfigError, InputError
from forewarn.features.windows import safe_name
from forewarn.model.baselines import fit_static
from forewarn.model.evaluate import choose_threshold, event_lead_times, event_metrics, roc_auc
from forewarn.model.frame import (
    TRAIN_EVERY_MINUTES,
    dataset_features,
    join_features,
    model_feature_names,
    training_labels,
)
from forewarn.model.labels import censored_column, label_column, make_labels
from forewarn.model.logistic import fit_logistic
from forewarn.model.train import TrainConfig, train_model

METHODS = ("model", "static", "logistic")
KEYS = ("pr_auc", "roc_auc", "event_recall", "alert_precision", "median_lead_minutes", "brier")
Progress = Callable[[str], None]
_UNITS = {"m": 1, "min": 1, "h": 60, "d": 1440}


def parse_horizon(text: str) -> int:
    """``30m``, ``2h``, ``3d`` or a bare number of minutes, as minutes. Raises ConfigError otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*(m|min|h|d)?\s*", str(text))
    if not match or int(match.group(1)) <= 0:
        raise ConfigError(f"'{text}' is not a horizon", field="--horizon", allowed=["30m", "2h", "3d", "45"])
    return int(match.group(1)) * _UNITS[match.group(2) or "m"]


class BacktestConfig(BaseModel):
    """What one backtest run does."""

    model_config = ConfigDict(extra="forbid")

    horizon_minutes: int = Field(gt=0)
    train_fraction: float = Field(default=0.6, gt=0.0, lt=1.0)
    seed: int = 0
    nthread: int = Field(default=2, gt=0)


class Evaluated(BaseModel):
    """One scorer's eval-part scores (for the report) and its metrics."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    scores: pd.DataFrame
    threshold: float
    metrics: dict[str, Any]
    lead_minutes: list[float]


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def cut_time(features: pd.DataFrame, train_fraction: float) -> pd.Timestamp:
    """The start of the evaluated part: the time before which about ``train_fraction`` of the feature rows lie."""
    times = features["event_timestamp"].sort_values().reset_index(drop=True)
    if times.empty:
        raise InputError("the dataset has no telemetry rows to backtest", field="telemetry")
    return pd.Timestamp(times.iloc[min(int(train_fraction * len(times)), len(times) - 1)])


class Prepared(BaseModel):
    """The rows of one backtest: what the model trains on, what is evaluated, with which features."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    train: pd.DataFrame
    evaluate: pd.DataFrame
    columns: list[str]
    static_columns: dict[str, str]
    cut: pd.Timestamp


def prepare(dataset: Dataset, horizon_minutes: int, train_fraction: float) -> Prepared:
    """The training frame exactly as the train flow builds it with ``until`` at the cut, and every later sample.

    Training rows, labels and features come from :mod:`forewarn.model.frame` (the train flow's own
    functions; the features are joined in memory rather than through Feast). The evaluated part is every
    telemetry sample from the cut on, labelled with all failures, as the live loop would score them.
    """
    features = dataset_features(dataset)
    columns = model_feature_names(dataset.metrics)
    cut = cut_time(features, train_fraction)
    train = join_features(training_labels(dataset, horizon_minutes, until=cut), features, columns)
    later = features[features["event_timestamp"] >= cut]
    evaluate = make_labels(later, dataset.failures, [horizon_minutes], data_end=dataset.end)
    static_columns = {m: f"{safe_name(m)}_mean_5m" for m in dataset.metrics}
    return Prepared(
        train=train.reset_index(drop=True),
        evaluate=evaluate.reset_index(drop=True),
        columns=columns,
        static_columns=static_columns,
        cut=cut,
    )


def _evaluate(
    eval_part: pd.DataFrame, p: np.ndarray, threshold: float, failures: pd.DataFrame, horizon: int
) -> Evaluated:
    scores = pd.DataFrame(
        {
            "instance_id": eval_part["instance_id"].to_numpy(),
            "event_timestamp": eval_part["event_timestamp"].to_numpy(),
            "probability": p,
        }
    )
    metrics = event_metrics(scores, failures, threshold=threshold, horizon_minutes=horizon)
    known = ~eval_part[censored_column(horizon)].to_numpy(dtype=bool)
    metrics["roc_auc"] = _clean(roc_auc(eval_part[label_column(horizon)].to_numpy()[known], p[known]))
    leads = event_lead_times(scores, failures, threshold=threshold, horizon_minutes=horizon)
    scores["label"] = eval_part[label_column(horizon)].to_numpy()
    scores["censored"] = ~known
    return Evaluated(scores=scores, threshold=threshold, metrics=metrics, lead_minutes=leads.tolist())


def run_backtest(
    dataset_dir: str | Path | Dataset, config: BacktestConfig, *, progress: Progress | None = None
) -> tuple[dict[str, Any], dict[str, Evaluated]]:
    """Run the backtest; returns the JSON-ready summary and, per scorer, what the report plots."""
    say = progress or (lambda _step: None)
    horizon = config.horizon_minutes
    say("reading the dataset")
    dataset = dataset_dir if isinstance(dataset_dir, Dataset) else read_dataset(dataset_dir)
    say(f"features for {len(dataset.telemetry):,} rows, {len(dataset.metrics)} metrics")
    rows = prepare(dataset, horizon, config.train_fraction)
    label, columns = label_column(horizon), rows.columns
    eval_part, cut = rows.evaluate, rows.cut
    train_known = rows.train[~rows.train[censored_column(horizon)].astype(bool)]
    if train_known[label].sum() == 0 or eval_part.empty:
        raise InputError(
            f"the training part (first {config.train_fraction:.0%} in time) has no failure within {horizon} min, "
            "or nothing is left to evaluate; use a longer --horizon or another --train-fraction",
            field="--train-fraction",
        )
    say(f"training XGBoost on {len(train_known):,} rows, one per instance per {TRAIN_EVERY_MINUTES} min")
    train_cfg = TrainConfig(horizon_minutes=horizon, seed=config.seed, nthread=config.nthread)
    model = train_model(rows.train, columns, label, train_cfg)
    say("fitting the static thresholds and the logistic regression")
    static = fit_static(train_known, rows.static_columns, label)
    logistic = fit_logistic(train_known, columns, label)
    p_logistic_train = logistic.predict_proba(train_known)
    logistic_threshold = choose_threshold(train_known[label].to_numpy(), p_logistic_train)
    say(f"evaluating {len(eval_part):,} rows")
    failures = dataset.failures
    results = {
        "model": _evaluate(eval_part, model.predict_proba(eval_part), model.threshold, failures, horizon),
        "static": _evaluate(eval_part, static.predict_proba(eval_part), static.threshold, failures, horizon),
        "logistic": _evaluate(eval_part, logistic.predict_proba(eval_part), logistic_threshold, failures, horizon),
    }
    fail_times = pd.to_datetime(failures["timestamp"], utc=True)
    summary: dict[str, Any] = {
        "horizon_minutes": horizon,
        "events_train": int(((fail_times > rows.train["event_timestamp"].min()) & (fail_times <= cut)).sum()),
        "events_eval": int(results["model"].metrics["n_failures"]),
    }
    for name, result in results.items():
        summary[name] = {key: _clean(result.metrics.get(key)) for key in KEYS}
    summary["details"] = {
        "train_fraction": config.train_fraction,
        "rows_train": len(train_known),
        "rows_eval": len(eval_part),
        "eval_from": cut.isoformat(),
        "train_every_minutes": TRAIN_EVERY_MINUTES,
        "instances": int(dataset.telemetry["instance_id"].nunique()),
        "metrics": list(dataset.metrics),
        "features": len(columns),
        "static_rules": [r.model_dump() for r in static.rules],
        "per_method": {name: {k: _clean(v) for k, v in r.metrics.items()} for name, r in results.items()},
    }
    return summary, results
