"""The candidates of the champion race, fitted on the same periods: XGBoost, the static rules, the logistic model.

The frame is cut once (:func:`forewarn.model.train.training_split`, purged by the horizon). Each candidate
learns on the train period; XGBoost stops early on the validation period; every candidate's scores are then
calibrated on the validation period the same way (isotonic by default) and its operating threshold chosen
there, so a baseline's probability means what the model's means and the policy's bands keep their sense.
The test period, the newest, which none of them has seen, is where the race is judged
(:func:`forewarn.model.champion.crown`) and where each candidate's card metrics come from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from forewarn.features.windows import safe_name
from forewarn.model.baseline_model import Baseline, BaselineModel
from forewarn.model.baselines import StaticThresholds, fit_static
from forewarn.model.calibrate import Calibrator
from forewarn.model.config import TrainConfig
from forewarn.model.evaluate import brier, choose_threshold, pr_auc
from forewarn.model.logistic import fit_logistic
from forewarn.model.registry import new_version
from forewarn.model.scoring import TrainedModel
from forewarn.model.train import fit_parts, training_split

STATIC_WINDOW = "mean_5m"
"""The window feature a static rule reads: a metric's latest level."""


class Candidates(NamedTuple):
    """The fitted candidates by name (``static``, ``logistic``, ``xgboost``) and the rows they are judged on."""

    models: dict[str, TrainedModel]
    test: pd.DataFrame


def static_columns(metrics: Sequence[str], available: Sequence[str]) -> dict[str, str]:
    """Metric -> the column its static rule reads, for the metrics whose column is among ``available``."""
    present = set(available)
    columns = {m: f"{safe_name(m)}_{STATIC_WINDOW}" for m in metrics}
    return {m: c for m, c in columns.items() if c in present}


def _baseline(
    baseline: Baseline,
    names: list[str],
    parts: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
    label_column: str,
    config: TrainConfig,
) -> BaselineModel:
    train, valid, test = parts
    model = BaselineModel(
        baseline,
        Calibrator(),
        feature_names=names,
        horizon_minutes=config.horizon_minutes,
        version=new_version(),
        params={"kind": "static" if isinstance(baseline, StaticThresholds) else "logistic"},
    )
    y_valid = pd.to_numeric(valid[label_column]).to_numpy(dtype=float)
    y_test = pd.to_numeric(test[label_column]).to_numpy(dtype=float)
    raw_valid = model.raw_proba(valid)
    model.calibrator = Calibrator.fit(raw_valid, y_valid, method=config.calibration)
    model.threshold = choose_threshold(
        y_valid, model.calibrator.transform(raw_valid), min_precision=config.min_precision
    )
    p_test = model.predict_proba(test)
    model.metrics = {
        "pr_auc": pr_auc(y_test, p_test) if y_test.sum() else None,
        "brier": brier(y_test, p_test),
        "brier_constant": brier(y_test, np.full_like(y_test, float(y_valid.mean()))),
        "prevalence": float(y_test.mean()) if len(y_test) else None,
        "n_train": len(train),
        "n_validation": len(valid),
        "n_test": len(test),
        "threshold": model.threshold,
    }
    return model


def fit_candidates(
    frame: pd.DataFrame,
    feature_columns: Sequence[str],
    label_column: str,
    config: TrainConfig,
    *,
    static: Mapping[str, str],
) -> Candidates:
    """Fit the three candidates (see the module docstring); ``static`` maps each metric to its rule's column.

    Rows flagged in the matching ``censored_<H>m`` column are left out, as :func:`train_model` does.

    Raises:
        InputError: a missing column, labels other than 0/1, or a period without any failure.
    """
    features = list(feature_columns)
    censored = label_column.replace("label_", "censored_", 1)
    if censored != label_column and censored in frame.columns:
        frame = frame.loc[~frame[censored].astype(bool)]  # unknown outcomes are not negatives
    parts = training_split(frame, label_column, config)
    train, valid, test = parts
    xgboost = fit_parts(train, valid, test, features, label_column, config)  # checks labels and periods
    rules = fit_static(train, static, label_column)
    rule_columns = [r.column for r in rules.rules] or list(static.values())
    logistic = fit_logistic(train, features, label_column)
    models: dict[str, TrainedModel] = {
        "static": _baseline(rules, rule_columns, parts, label_column, config),
        "logistic": _baseline(logistic, logistic.feature_names or features[:1], parts, label_column, config),
        "xgboost": xgboost,
    }
    return Candidates(models=models, test=test)
