"""Which scores carry their top features: explanations where they matter.

Per-feature contributions (XGBoost's ``pred_contribs``, TreeSHAP) cost far more than the score itself. By
default (a policy's ``explain: risky``) a cycle explains every score at or above the moderate band's entry
and a sample of the rest (:data:`SAMPLE` of them, at least :data:`MIN_SAMPLE`, chosen by a seeded draw so
the same cycle explains the same instances); ``explain: all`` explains every score.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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
