"""Training with ``xgboost.dask`` on the cluster, for training frames larger than one machine's memory.

The procedure is :func:`forewarn.model.train.train_model`'s: the same time split (purged by the horizon),
trees on the train period with early stopping on the validation period, then the same
:class:`~forewarn.model.calibrate.Calibrator` and :func:`~forewarn.model.evaluate.choose_threshold` fitted
on the validation period and metrics measured on the test period. Only the booster is trained across the
workers; the calibration and the metrics need two columns of the validation and test periods (raw score and
label), which are predicted on the cluster and gathered.
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
from forewarn.model.split import time_split
from forewarn.model.train import _class_weight, booster_params, checked_labels


def _bounds(times: pd.Series, config: TrainConfig) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """[first, last] time of each period of :func:`time_split` (each period is one interval of time)."""
    frame = pd.DataFrame({config.time_col: pd.to_datetime(times, utc=True).to_numpy()})
    gap = pd.Timedelta(minutes=config.horizon_minutes)
    parts = time_split(frame, time_col=config.time_col, fractions=config.fractions, gap=gap)
    return [(pd.Timestamp(p[config.time_col].min()), pd.Timestamp(p[config.time_col].max())) for p in parts]


def train_model_dask(
    client: Any,
    frame: Any,
    feature_columns: Sequence[str],
    label_column: str,
    config: TrainConfig,
    *,
    partitions: int | None = None,
) -> TrainedModel:
    """Train, calibrate and test a failure model with ``xgboost.dask`` on the client's cluster.

    Args:
        client: a ``distributed.Client``.
        frame: the labelled feature frame, pandas or ``dask.dataframe`` (then never gathered whole).
        feature_columns, label_column, config: as for :func:`forewarn.model.train.train_model`.
        partitions: partitions of a pandas ``frame``; default one per worker.

    Raises:
        InputError: a missing column, labels other than 0/1, or a period without any failure.
    """
    import dask.dataframe as dd
    from xgboost import dask as dxgb

    features = list(feature_columns)
    if isinstance(frame, pd.DataFrame):
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        frame = dd.from_pandas(frame.reset_index(drop=True), npartitions=partitions or workers, sort=False)
    for column in [*features, label_column, config.time_col]:
        if column not in frame.columns:
            raise InputError(f"training frame has no column '{column}'", field=column)
    censored = label_column.replace("label_", "censored_", 1)
    if censored != label_column and censored in frame.columns:
        frame = frame[~frame[censored].astype(bool)]
    time = frame[config.time_col]
    periods = [frame[(time >= lo) & (time <= hi)] for lo, hi in _bounds(time.compute(), config)]
    train, valid, test = periods
    x = [p[features].astype(np.float32) for p in periods]
    y_train = checked_labels(train[label_column].astype(float).compute().to_numpy(), label_column, "training")
    y_valid = checked_labels(valid[label_column].astype(float).compute().to_numpy(), label_column, "validation")
    y_test = test[label_column].astype(float).compute().to_numpy()
    params = booster_params(config, _class_weight(config.class_weight, y_train))
    dtrain = dxgb.DaskDMatrix(client, x[0], train[label_column].astype(float), missing=np.nan)
    dvalid = dxgb.DaskDMatrix(client, x[1], valid[label_column].astype(float), missing=np.nan)
    output = dxgb.train(
        client,
        params,
        dtrain,
        num_boost_round=config.max_rounds,
        evals=[(dvalid, "validation")],
        early_stopping_rounds=config.early_stopping_rounds,
        verbose_eval=False,
    )
    booster: xgb.Booster = output["booster"]
    booster = booster[: booster.best_iteration + 1]
    booster.set_param({"nthread": config.nthread})
    raw_valid = np.asarray(dxgb.inplace_predict(client, booster, x[1]).compute(), dtype=float)
    raw_test = np.asarray(dxgb.inplace_predict(client, booster, x[2]).compute(), dtype=float)
    counts = {"n_train": len(y_train), "n_validation": len(y_valid), "n_test": len(y_test)}
    return _calibrated(
        booster,
        features,
        config,
        {**params, "nthread": config.nthread},
        counts,
        (raw_valid, y_valid),
        (raw_test, y_test),
    )


def _calibrated(
    booster: xgb.Booster,
    features: list[str],
    config: TrainConfig,
    params: dict[str, Any],
    counts: dict[str, int],
    valid: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
) -> TrainedModel:
    """The model with the calibrator and threshold of the validation period and the test period's metrics."""
    (raw_valid, y_valid), (raw_test, y_test) = valid, test
    calibrator = Calibrator.fit(raw_valid, y_valid, method=config.calibration)
    threshold = choose_threshold(y_valid, calibrator.transform(raw_valid), min_precision=config.min_precision)
    p_test = calibrator.transform(raw_test)
    metrics = {
        "pr_auc": pr_auc(y_test, p_test) if y_test.sum() else None,
        "brier": brier(y_test, p_test),
        "brier_constant": brier(y_test, np.full_like(y_test, float(y_valid.mean()))),
        "prevalence": float(y_test.mean()),
        **counts,
        "best_iteration": int(booster.num_boosted_rounds()),
        "threshold": threshold,
        "trained_on": "xgboost.dask",
    }
    return TrainedModel(
        booster,
        calibrator,
        feature_names=features,
        horizon_minutes=config.horizon_minutes,
        version=new_version(),
        threshold=threshold,
        metrics=metrics,
        params=params,
    )
