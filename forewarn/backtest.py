"""The backtest: train on the earlier part of a dataset in time, evaluate the later part, beside two baselines.

The three scorers of one run see the same rows:
    model: XGBoost as in production (:func:`forewarn.model.train.train_model`: early stopping, calibration
        and the operating threshold all from periods inside the training part).
    static: per-metric thresholds fit on the training part (:mod:`forewarn.model.baselines`).
    logistic: an L2 logistic regression on the same features (:mod:`forewarn.model.logistic`).
Features are the window features of :mod:`forewarn.features.windows` plus, per metric, ``<metric>_delta``,
the change since the instance's previous sample (the windows are minutes to hours long, so at daily steps
as in Backblaze they hold one sample each). Evaluation is the event-level view of ARCHITECTURE.md.
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
from forewarn.features.windows import compute_window_features, feature_names, safe_name
from forewarn.model.baselines import fit_static
from forewarn.model.evaluate import choose_threshold, event_lead_times, event_metrics, roc_auc
from forewarn.model.labels import censored_column, label_column, make_labels
from forewarn.model.logistic import fit_logistic
from forewarn.model.split import time_split
from forewarn.model.train import TrainConfig, fit_parts

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


def deltas(features: pd.DataFrame, telemetry: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Per metric ``<metric>_delta``: the value minus the instance's previous sample, aligned with ``features``."""
    frame = pd.DataFrame(
        {"instance_id": telemetry["instance_id"].astype(str), "event_timestamp": telemetry["timestamp"]}
    )
    names = [f"{safe_name(m)}_delta" for m in metrics]
    values = pd.DataFrame(
        {
            name: pd.to_numeric(telemetry[metric], errors="coerce").to_numpy(dtype=float)
            for metric, name in zip(metrics, names, strict=True)
        }
    )
    frame = pd.concat([frame.reset_index(drop=True), values], axis=1)
    frame = frame.groupby(["instance_id", "event_timestamp"], sort=True, as_index=False).mean()
    frame[names] = frame.groupby("instance_id", sort=False)[names].diff()
    keys = ["instance_id", "event_timestamp"]
    merged = features[keys].merge(frame, on=keys, how="left")
    return merged[names].set_axis(features.index)


def prepare(dataset: Dataset, horizon_minutes: int) -> tuple[pd.DataFrame, list[str], dict[str, str]]:
    """Labelled feature frame, the feature columns, and metric -> the column its static rule reads."""
    features = compute_window_features(
        dataset.telemetry,
        errors=dataset.errors,
        failures=dataset.failures,
        instances=dataset.instances,
        metrics=dataset.metrics,
    )
    extra = deltas(features, dataset.telemetry, dataset.metrics)
    features = pd.concat([features, extra], axis=1)
    columns = [*feature_names(dataset.metrics), *extra.columns]
    labelled = make_labels(features, dataset.failures, [horizon_minutes], data_end=dataset.end)
    static_columns = {m: f"{safe_name(m)}_mean_5m" for m in dataset.metrics}
    return labelled.reset_index(drop=True), columns, static_columns


def inner_split(train: pd.DataFrame, label: str, share: float = 0.3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cut the training part in time so that the later piece holds about ``share`` of its positive rows.

    The later piece stops boosting early, calibrates and sets the operating threshold. Cutting by positives
    rather than by rows keeps failures on both sides when rows crowd into one period (Backblaze's healthy
    drives all report in the last ten days of the year, its failed drives throughout it).
    """
    times = train["event_timestamp"]
    positive_times = np.sort(times[train[label] == 1].unique())
    if len(positive_times) < 2:
        raise InputError(
            "the training part needs failures at two or more times to fit and calibrate on separate periods; "
            "use a longer --horizon or a larger --train-fraction",
            field="--train-fraction",
        )
    cut = positive_times[min(int(len(positive_times) * (1.0 - share)), len(positive_times) - 1)]
    return train[times < cut], train[times >= cut]


def _evaluate(
    eval_part: pd.DataFrame, p: np.ndarray, threshold: float, failures: pd.DataFrame, horizon: int
) -> Evaluated:
    scores = pd.DataFrame(
        {"instance_id": eval_part["instance_id"].to_numpy(), "event_timestamp": eval_part["event_timestamp"].to_numpy(),
         "probability": p}
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
    say(f"window features for {len(dataset.telemetry):,} rows, {len(dataset.metrics)} metrics")
    frame, columns, static_columns = prepare(dataset, horizon)
    label = label_column(horizon)
    fractions = (config.train_fraction, 1.0 - config.train_fraction)
    train_part, eval_part = time_split(frame, fractions=fractions, gap=pd.Timedelta(minutes=horizon))
    train_known = train_part[~train_part[censored_column(horizon)]]
    if train_known[label].sum() == 0:
        raise InputError(
            f"the training part (first {config.train_fraction:.0%} in time) has no failure within {horizon} min; "
            "use a longer --horizon or a larger --train-fraction",
            field="--train-fraction",
        )
    say(f"training XGBoost on {len(train_known):,} rows")
    train_cfg = TrainConfig(horizon_minutes=horizon, seed=config.seed, nthread=config.nthread)
    fit, valid = inner_split(train_known, label)
    model = fit_parts(fit, valid, valid, columns, label, train_cfg)
    say("fitting the static thresholds and the logistic regression")
    static = fit_static(train_known, static_columns, label)
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
    cut = pd.Timestamp(eval_part["event_timestamp"].min())
    fail_times = pd.to_datetime(failures["timestamp"], utc=True)
    summary: dict[str, Any] = {
        "horizon_minutes": horizon,
        "events_train": int(((fail_times > train_part["event_timestamp"].min()) & (fail_times < cut)).sum()),
        "events_eval": int(results["model"].metrics["n_failures"]),
    }
    for name, result in results.items():
        summary[name] = {key: _clean(result.metrics.get(key)) for key in KEYS}
    summary["details"] = {
        "train_fraction": config.train_fraction,
        "rows_train": len(train_known),
        "rows_eval": len(eval_part),
        "eval_from": cut.isoformat(),
        "instances": int(frame["instance_id"].nunique()),
        "metrics": list(dataset.metrics),
        "features": len(columns),
        "static_rules": [r.model_dump() for r in static.rules],
        "per_method": {name: {k: _clean(v) for k, v in r.metrics.items()} for name, r in results.items()},
    }
    return summary, results
