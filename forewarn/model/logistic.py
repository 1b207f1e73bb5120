"""A small L2-regularised logistic regression (numpy + scipy), the backtest's learned baseline.

Features are imputed with the training medians (NaN -> median), standardised with the training mean and
standard deviation, and clipped to +-``CLIP`` standard deviations so that heavy-tailed counters (SMART raw
values, byte counts) cannot dominate. Columns constant on the training rows are left out. The penalty is
``l2 / 2 * |w|^2`` on the weights (not the intercept), with the log-loss averaged over rows.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from forewarn.errors import InputError

CLIP = 8.0
ROWS = 20_000
"""Rows scored at a time."""


class LogisticModel:
    """A fitted logistic regression over named feature columns."""

    def __init__(
        self,
        feature_names: Sequence[str],
        medians: np.ndarray,
        means: np.ndarray,
        scales: np.ndarray,
        weights: np.ndarray,
        intercept: float,
    ) -> None:
        self.feature_names = list(feature_names)
        self.medians, self.means, self.scales = medians, means, scales
        self.weights, self.intercept = weights, float(intercept)

    def _design(self, features: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.feature_names if c not in features.columns]
        if missing:
            raise InputError("feature frame lacks a column of the logistic model", field=missing[0])
        x = features[self.feature_names].to_numpy(dtype=float)
        x = np.where(np.isfinite(x), x, self.medians)
        return np.clip((x - self.means) / self.scales, -CLIP, CLIP)

    def contributions(self, features: pd.DataFrame) -> np.ndarray:
        """Per row and feature, its term of the log-odds (weight times standardised value): rows x features."""
        return self._design(features) * self.weights

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, read back by :meth:`from_dict`."""
        arrays = {k: getattr(self, k).tolist() for k in ("medians", "means", "scales", "weights")}
        return {"feature_names": self.feature_names, "intercept": self.intercept, **arrays}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogisticModel:
        arrays = {k: np.asarray(data[k], dtype=float) for k in ("medians", "means", "scales", "weights")}
        return cls(data["feature_names"], intercept=float(data["intercept"]), **arrays)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """P(label = 1) per row."""
        if not self.feature_names:
            return np.full(len(features), 1.0 / (1.0 + np.exp(-self.intercept)))
        margin = np.empty(len(features))
        for start in range(0, len(features), ROWS):  # the design matrix is float64: bounded, a part at a time
            margin[start : start + ROWS] = self._design(features.iloc[start : start + ROWS]) @ self.weights
        return np.asarray(1.0 / (1.0 + np.exp(-(margin + self.intercept))))


def fit_logistic(
    frame: pd.DataFrame, feature_columns: Sequence[str], label_column: str, *, l2: float = 1e-3, max_iter: int = 500
) -> LogisticModel:
    """Fit on ``frame``'s rows; ``label_column`` holds 0/1. Raises InputError without both classes."""
    y = pd.to_numeric(frame[label_column], errors="coerce").to_numpy(dtype=float)
    if np.isnan(y).any() or y.sum() == 0 or y.sum() == len(y):
        raise InputError("logistic regression needs 0/1 labels of both classes", field=label_column)
    raw = frame[list(feature_columns)].to_numpy(dtype=float)
    raw = np.where(np.isfinite(raw), raw, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column gets median 0 and is then constant
        medians = np.nanmedian(raw, axis=0) if len(raw) else np.zeros(raw.shape[1])
    medians = np.where(np.isfinite(medians), medians, 0.0)
    filled = np.where(np.isnan(raw), medians, raw)
    means, scales = filled.mean(axis=0), filled.std(axis=0)
    keep = scales > 1e-12
    names = [c for c, k in zip(feature_columns, keep, strict=True) if k]
    x = np.clip((filled[:, keep] - means[keep]) / scales[keep], -CLIP, CLIP)
    n = len(y)

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:-1], params[-1]
        margin = x @ w + b
        value = np.sum(np.logaddexp(0.0, margin) - y * margin) / n + 0.5 * l2 * float(w @ w)
        residual = (1.0 / (1.0 + np.exp(-margin)) - y) / n
        grad = np.concatenate([x.T @ residual + l2 * w, [residual.sum()]])
        return float(value), grad

    prior = float(np.log(y.mean() / (1.0 - y.mean())))
    start = np.concatenate([np.zeros(x.shape[1]), [prior]])
    result = minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return LogisticModel(names, medians[keep], means[keep], scales[keep], result.x[:-1], result.x[-1])
