"""Which scores carry their top features: explanations where they matter.

Per-feature contributions (XGBoost's ``pred_contribs``, TreeSHAP) cost far more than the score itself. By
default (a policy's ``explain: risky``) a cycle explains every score at or above the moderate band's entry
and a sample of the rest (:data:`SAMPLE` of them, at least :data:`MIN_SAMPLE`, chosen by a seeded draw so
the same cycle explains the same instances); ``explain: all`` explains every score.

The scorers (:class:`~forewarn.model.scoring.TrainedModel`, :class:`~forewarn.model.baseline_model.BaselineModel`)
compute each feature's contribution their own way; :func:`top_contributions` turns a matrix of them into the
top features a score carries.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from forewarn.schemas import FeatureContribution

SAMPLE = 0.01
"""The share of the low-risk scores explained anyway (so an operator can see what a quiet instance's score
rests on, and drift in the explanations shows)."""
MIN_SAMPLE = 20


@dataclass(frozen=True)
class ExplainChoice:
    """Explain every score (``everything``) or those at or above ``from_probability`` plus a sample."""

    everything: bool = False
    from_probability: float = 0.0
    sample: float = SAMPLE

    def rows(self, probabilities: np.ndarray, instance_ids: Sequence[str]) -> np.ndarray:
        """Positions of the scores to explain, ascending."""
        if self.everything:
            return np.arange(len(probabilities))
        risky = probabilities >= self.from_probability
        rest = np.flatnonzero(~risky)
        wanted = min(len(rest), max(MIN_SAMPLE, int(np.ceil(self.sample * len(rest))))) if self.sample > 0 else 0
        seed = zlib.crc32("".join(instance_ids[:8]).encode("utf-8"))
        sampled = np.random.default_rng(seed).choice(rest, size=wanted, replace=False) if wanted else rest[:0]
        return np.sort(np.concatenate([np.flatnonzero(risky), sampled]))


def top_k_by_magnitude(contribs: np.ndarray, top_k: int) -> np.ndarray:
    """Column indices of the ``top_k`` largest ``|contribs|`` of each row, largest first, ties by column.

    The same as ``np.argsort(-np.abs(contribs), axis=1, kind="stable")[:, :top_k]``, in O(columns) per row:
    ``argpartition`` picks the candidates; rows where equal magnitudes straddle the cut (or NaN is present)
    are sorted in full.
    """
    magnitude = -np.abs(np.asarray(contribs))
    width, k = magnitude.shape[1], top_k
    if k <= 0 or k >= width:
        return np.argsort(magnitude, axis=1, kind="stable")[:, :k]
    part = np.argpartition(magnitude, k - 1, axis=1)[:, :k]
    picked = np.take_along_axis(magnitude, part, axis=1)
    kth = picked.max(axis=1, keepdims=True)
    straddle = (magnitude == kth).sum(axis=1) > (picked == kth).sum(axis=1)
    straddle |= np.isnan(magnitude).any(axis=1)
    out = np.take_along_axis(part, np.lexsort((part, picked), axis=1), axis=1)
    if straddle.any():
        out[straddle] = np.argsort(magnitude[straddle], axis=1, kind="stable")[:, :k]
    return out


def top_contributions(
    contribs: np.ndarray, values: np.ndarray, names: Sequence[str], top_k: int, *, skip_zero: bool = False
) -> list[list[FeatureContribution]]:
    """Per row, the ``top_k`` features with the largest ``|contribs|`` (ties in the order of ``names``), each
    with its value in ``values`` (None where NaN); with ``skip_zero``, features that contribute 0 are left out.

    ``contribs`` and ``values`` are rows x ``names``; the top-k is picked in bulk (:func:`top_k_by_magnitude`).
    """
    picks = top_k_by_magnitude(contribs, top_k)
    rows = np.arange(len(picks))[:, None]
    chosen_values = values[rows, picks].tolist()
    chosen = contribs[rows, picks].tolist()
    return [
        [
            FeatureContribution(feature=names[j], value=None if value != value else value, contribution=c)
            for j, value, c in zip(row_picks, row_values, row_contribs, strict=True)
            if not (skip_zero and c == 0.0)
        ]
        for row_picks, row_values, row_contribs in zip(picks.tolist(), chosen_values, chosen, strict=True)
    ]
