"""Training: XGBoost (``xgb.train``, no scikit-learn) with early stopping, class weighting and calibration.

The frame is cut by time into train / validation / test (:func:`forewarn.model.split.time_split`, purged by
the horizon; by failures instead of rows when rows crowd into one period, :func:`training_split`). Trees
learn on train with ``scale_pos_weight`` set by ``TrainConfig.class_weight``; the validation period stops
boosting early, fits the calibrator and chooses the operating threshold; the test period, never seen before,
gives the metrics.

The configuration is :class:`~forewarn.model.config.TrainConfig`; the result a
:class:`~forewarn.model.scoring.TrainedModel` under a new version (:func:`~forewarn.model.registry.new_version`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from forewarn.errors import InputError
from forewarn.model.calibrate import Calibrator
from forewarn.model.config import TrainConfig
from forewarn.model.evaluate import brier, choose_threshold, pr_auc
from forewarn.model.registry import new_version
from forewarn.model.scoring import TrainedModel
from forewarn.model.split import failure_split, time_split


def _class_weight(kind: str, y: np.ndarray) -> float:
    ratio = float((len(y) - y.sum()) / y.sum())
    return {"none": 1.0, "sqrt": float(np.sqrt(ratio)), "balanced": ratio}[kind]


def checked_labels(y: np.ndarray, label_column: str, name: str) -> np.ndarray:
    """``y`` when every label is 0 or 1 and one is positive; else one clear error naming the period."""
    if not np.isin(y, (0.0, 1.0)).all():  # NaN is neither
        raise InputError(f"labels must be 0 or 1 in the {name} period", field=label_column, allowed=["0", "1"])
    if y.sum() == 0:
        raise InputError(
            f"the {name} period has no positive label; more data or a longer horizon is needed", field=label_column
        )
    return y


def _labels(part: pd.DataFrame, label_column: str, name: str) -> np.ndarray:
    values = pd.to_numeric(part[label_column], errors="coerce").to_numpy(dtype=float)
    return checked_labels(values, label_column, name)


def train_model(
    frame: pd.DataFrame, feature_columns: Sequence[str], label_column: str, config: TrainConfig
) -> TrainedModel:
    """Train, calibrate and test a failure model on a labelled feature frame (see the module docstring).

    Rows flagged in the matching ``censored_<H>m`` column of :func:`make_labels`, when present, are left out.

    Raises:
        InputError: a missing column, labels other than 0/1, or a period without any failure.
    """
    features = list(feature_columns)
    for column in [*features, label_column, config.time_col]:
        if column not in frame.columns:
            raise InputError(f"training frame has no column '{column}'", field=column)
    censored = label_column.replace("label_", "censored_", 1)
    if censored != label_column and censored in frame.columns:
        frame = frame.loc[~frame[censored].astype(bool)]  # unknown outcomes are not negatives
    train, valid, test = training_split(frame, label_column, config)
    return fit_parts(train, valid, test, features, label_column, config)


def training_split(frame: pd.DataFrame, label_column: str, config: TrainConfig) -> tuple[pd.DataFrame, ...]:
    """Train, validation and test periods: :func:`time_split` by rows, or, when that leaves the train or
    validation period empty or without a failure (rows crowded into one period), :func:`failure_split`."""
    gap = pd.Timedelta(minutes=config.horizon_minutes)
    split = {"time_col": config.time_col, "fractions": config.fractions, "gap": gap}
    try:
        parts = time_split(frame, **split)
    except InputError:
        return failure_split(frame, label_column, **split)
    if all((pd.to_numeric(part[label_column], errors="coerce") == 1).any() for part in parts[:2]):
        return parts
    try:
        return failure_split(frame, label_column, **split)
    except InputError:
        return parts  # fit_parts then names the period without a failure


def booster_params(config: TrainConfig, scale_pos_weight: float) -> dict[str, Any]:
    """XGBoost's parameters for ``config``, less ``nthread`` (one process sets it; each Dask worker its own)."""
    return {
        "objective": "binary:logistic",
        "eval_metric": "aucpr",
        "tree_method": "hist",
        "learning_rate": config.learning_rate,
        "max_depth": config.max_depth,
        "min_child_weight": config.min_child_weight,
        "subsample": config.subsample,
        "seed": config.seed,
        "scale_pos_weight": scale_pos_weight,
    }


def fit_parts(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    test: pd.DataFrame,
    features: list[str],
    label_column: str,
    config: TrainConfig,
) -> TrainedModel:
    """Fit on ``train``, stop early, calibrate and choose the threshold on ``valid``, measure on ``test``.

    :func:`train_model` cuts the parts with :func:`training_split`; callers with their own cut call this
    directly.
    """
    y_train, y_valid = _labels(train, label_column, "training"), _labels(valid, label_column, "validation")
    y_test = pd.to_numeric(test[label_column]).to_numpy(dtype=float)
    params = {**booster_params(config, _class_weight(config.class_weight, y_train)), "nthread": config.nthread}
    dtrain = xgb.DMatrix(train[features].astype(np.float32), label=y_train, missing=np.nan)
    dvalid = xgb.DMatrix(valid[features].astype(np.float32), label=y_valid, missing=np.nan)
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=config.max_rounds,
        evals=[(dvalid, "validation")],
        early_stopping_rounds=config.early_stopping_rounds,
        verbose_eval=False,
    )
    booster = booster[: booster.best_iteration + 1]
    booster.set_param({"nthread": config.nthread})
    model = TrainedModel(
        booster,
        Calibrator(),
        feature_names=features,
        horizon_minutes=config.horizon_minutes,
        version=new_version(),
        params=params,
    )
    raw_valid = model.raw_proba(valid)
    model.calibrator = Calibrator.fit(raw_valid, y_valid, method=config.calibration)
    model.threshold = choose_threshold(
        y_valid, model.calibrator.transform(raw_valid), min_precision=config.min_precision
    )
    p_test = model.predict_proba(test)
    prevalence = float(y_test.mean())
    model.metrics = {
        "pr_auc": pr_auc(y_test, p_test) if y_test.sum() else None,
        "brier": brier(y_test, p_test),
        "brier_constant": brier(y_test, np.full_like(y_test, float(y_valid.mean()))),
        "prevalence": prevalence,
        "n_train": len(train),
        "n_validation": len(valid),
        "n_test": len(test),
        "best_iteration": int(booster.num_boosted_rounds()),
        "threshold": model.threshold,
    }
    return model
