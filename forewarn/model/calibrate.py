"""Calibration: map raw model probabilities to observed failure frequencies. Numpy and scipy only.

Isotonic regression (pool adjacent violators) is the default; Platt scaling (a logistic curve on the
log-odds) is steadier when the calibration period holds few failures. A calibrator is a pydantic model, so
it is saved and loaded as JSON.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy.optimize import minimize

from forewarn.errors import InputError

_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(p, _EPS, 1.0 - _EPS)
    return np.asarray(np.log(clipped / (1.0 - clipped)))


def _pool_adjacent_violators(y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-decreasing fit of y (already sorted by x). Returns block start, end (inclusive) and value."""
    values: list[float] = []
    weights: list[float] = []
    starts: list[int] = []
    ends: list[int] = []
    for i, (yi, wi) in enumerate(zip(y, w, strict=True)):
        values.append(float(yi))
        weights.append(float(wi))
        starts.append(i)
        ends.append(i)
        while len(values) > 1 and values[-2] >= values[-1]:
            total = weights[-2] + weights[-1]
            values[-2] = (values[-2] * weights[-2] + values[-1] * weights[-1]) / total
            weights[-2] = total
            ends[-2] = ends[-1]
            del values[-1], weights[-1], starts[-1], ends[-1]
    return np.array(starts), np.array(ends), np.array(values)


class Calibrator(BaseModel):
    """A fitted map from raw probability to calibrated probability.

    Attributes:
        method: ``isotonic`` or ``platt``.
        knots_x, knots_y: for isotonic, the piecewise-linear map (interpolated, flat outside the range).
        slope, intercept: for Platt, p = sigmoid(slope * logit(raw) + intercept).
    """

    model_config = ConfigDict(extra="forbid")

    method: Literal["isotonic", "platt"] = "isotonic"
    knots_x: list[float] = []
    knots_y: list[float] = []
    slope: float = 1.0
    intercept: float = 0.0

    @classmethod
    def fit(cls, raw: np.ndarray, y: np.ndarray, method: Literal["isotonic", "platt"] = "isotonic") -> Calibrator:
        """Fit on raw probabilities ``raw`` and 0/1 outcomes ``y`` of a held-out period."""
        raw = np.asarray(raw, dtype=float)
        y = np.asarray(y, dtype=float)
        if raw.shape != y.shape or raw.size == 0:
            raise InputError(f"calibration needs equal, non-empty arrays; got {raw.shape} and {y.shape}")
        if method == "platt":
            return cls._fit_platt(raw, y)
        # Tied raw scores (common with trees) are pooled first, so each x maps to one value.
        xs, inverse = np.unique(raw, return_inverse=True)
        counts = np.bincount(inverse).astype(float)
        means = np.bincount(inverse, weights=y) / counts
        starts, ends, values = _pool_adjacent_violators(means, counts)
        knots_x = np.column_stack([xs[starts], xs[ends]]).ravel()
        knots_y = np.repeat(values, 2)
        return cls(method="isotonic", knots_x=knots_x.tolist(), knots_y=knots_y.tolist())

    @classmethod
    def _fit_platt(cls, raw: np.ndarray, y: np.ndarray) -> Calibrator:
        z = _logit(raw)
        positives, negatives = y.sum(), (1 - y).sum()
        # Platt's smoothed targets keep the fit finite when the classes separate perfectly.
        target = np.where(y > 0.5, (positives + 1) / (positives + 2), 1 / (negatives + 2))

        def loss(params: np.ndarray) -> float:
            margin = params[0] * z + params[1]
            return float(np.sum(np.logaddexp(0.0, margin) - target * margin))

        result = minimize(loss, x0=np.array([1.0, 0.0]), method="L-BFGS-B")
        return cls(method="platt", slope=float(result.x[0]), intercept=float(result.x[1]))

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities in [0, 1] for raw probabilities ``raw``."""
        raw = np.asarray(raw, dtype=float)
        if self.method == "platt":
            out = 1.0 / (1.0 + np.exp(-(self.slope * _logit(raw) + self.intercept)))
        elif self.knots_x:
            out = np.interp(raw, self.knots_x, self.knots_y)
        else:
            out = raw
        return np.asarray(np.clip(out, 0.0, 1.0))
