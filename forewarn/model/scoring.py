"""The served model: calibrated probabilities of failure within the horizon, with the features behind them.

A :class:`TrainedModel` is what :mod:`forewarn.model.train` fits and :mod:`forewarn.model.persist` saves and
loads; a baseline that won the champion race serves behind the same interface
(:class:`~forewarn.model.baseline_model.BaselineModel`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from forewarn.errors import InputError
from forewarn.model.calibrate import Calibrator
from forewarn.model.explaining import top_contributions
from forewarn.schemas import FeatureContribution, RiskScore, utcnow


class TrainedModel:
    """A booster with its calibrator, feature names, horizon, version, operating threshold and metrics.

    ``kind`` names the scorer: ``xgboost`` here; :class:`forewarn.model.baseline_model.BaselineModel` serves
    a baseline that won the champion race (``static`` or ``logistic``) behind the same interface, without a
    booster. Save and load either with :mod:`forewarn.model.persist`.
    """

    kind: str = "xgboost"

    def __init__(
        self,
        booster: xgb.Booster | None,
        calibrator: Calibrator,
        *,
        feature_names: Sequence[str],
        horizon_minutes: int,
        version: str,
        threshold: float = 0.5,
        metrics: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        self.booster = booster
        self.calibrator = calibrator
        self.feature_names = list(feature_names)
        self.horizon_minutes = int(horizon_minutes)
        self.version = version
        self.threshold = float(threshold)
        self.metrics = dict(metrics or {})
        self.params = dict(params or {})

    def require_booster(self) -> xgb.Booster:
        """The booster; a baseline has none (InputError)."""
        if self.booster is None:
            raise InputError(f"model {self.version} ({self.kind}) has no booster")
        return self.booster

    def set_threads(self, nthread: int) -> None:
        """Threads the booster scores with (small batches score faster on one)."""
        self.require_booster().set_param({"nthread": nthread})

    def importance(self) -> dict[str, float]:
        """Feature -> importance (XGBoost's gain), for the model report."""
        gain = self.require_booster().get_score(importance_type="gain")
        return {k: float(v) if isinstance(v, float | int) else float(np.sum(v)) for k, v in gain.items()}

    def _matrix(self, features: pd.DataFrame) -> pd.DataFrame:
        missing = [name for name in self.feature_names if name not in features.columns]
        if missing:
            raise InputError(
                f"feature frame lacks column(s) {', '.join(missing)} of model {self.version}",
                field=missing[0],
                allowed=self.feature_names,
            )
        return features[self.feature_names].astype(np.float32)

    def raw_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Uncalibrated probabilities of the booster."""
        if features.empty:
            return np.zeros(0)
        return np.asarray(self.require_booster().inplace_predict(self._matrix(features)), dtype=float)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated P(failure within the horizon), one per row."""
        return self.calibrator.transform(self.raw_proba(features))

    def explain(self, features: pd.DataFrame, top_k: int = 3) -> list[list[FeatureContribution]]:
        """Per row, the ``top_k`` features with the largest contribution (log-odds, by magnitude).

        Ties keep the feature order of the model. One ``pred_contribs`` call for all rows; the top-k is
        picked in bulk (:func:`~forewarn.model.explaining.top_contributions`).
        """
        if features.empty:
            return []
        matrix = self._matrix(features)
        contribs = self.require_booster().predict(xgb.DMatrix(matrix, missing=np.nan), pred_contribs=True)[:, :-1]
        values = features[self.feature_names].to_numpy(dtype=float)
        return top_contributions(contribs, values, self.feature_names, top_k)

    def score(
        self,
        features: pd.DataFrame,
        *,
        timestamp: datetime | None = None,
        top_k: int = 3,
        explain_from: float | None = None,
    ) -> list[RiskScore]:
        """Risk scores of the rows of ``features`` (``instance_id``, optional ``event_timestamp``).

        The time of each score is the row's ``event_timestamp``, else ``timestamp``, else now. With
        ``explain_from``, only scores at or above it carry top features (``pred_contribs`` is most of the
        cost of a large cycle); by default every score does.
        """
        if "instance_id" not in features.columns:
            raise InputError("feature frame has no column 'instance_id'", field="instance_id")
        probabilities = self.predict_proba(features)
        reasons: list[list[FeatureContribution]] = [[] for _ in range(len(features))]
        chosen = np.flatnonzero(probabilities >= explain_from) if explain_from is not None else None
        if chosen is None:
            reasons = self.explain(features, top_k=top_k)
        elif len(chosen):
            for row, top in zip(chosen.tolist(), self.explain(features.iloc[chosen], top_k=top_k), strict=True):
                reasons[row] = top
        if "event_timestamp" in features.columns:
            times = list(pd.DatetimeIndex(pd.to_datetime(features["event_timestamp"], utc=True)).to_pydatetime())
        else:
            times = [timestamp or utcnow()] * len(features)
        return [
            RiskScore(
                instance_id=str(instance),
                timestamp=when,
                probability=p,
                horizon_minutes=self.horizon_minutes,
                model_version=self.version,
                top_features=top,
            )
            for instance, when, p, top in zip(
                features["instance_id"].tolist(), times, probabilities.astype(float).tolist(), reasons, strict=True
            )
        ]
