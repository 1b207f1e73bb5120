"""Each policy rule is written once and used in two shapes: one score and many (bands), one tracker update and
many, a rule's band checks alone and with the instance's. The two shapes agree on every input, edges included."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from forewarn.policy.engine import BandTracker, _may_match, band_codes, band_for, matches
from forewarn.policy.schema import Bands, Match, Threshold
from forewarn.schemas import Band, Instance

BANDS = Bands(high=Threshold(enter=0.6, exit=0.45), moderate=Threshold(enter=0.3, exit=0.2), min_dwell_minutes=10)
EDGES = [0.6, 0.45, 0.3, 0.2]
GRID = sorted(
    {0.0, 1.0, *EDGES, *(np.nextafter(e, -1.0) for e in EDGES), *(np.nextafter(e, 2.0) for e in EDGES), 0.1, 0.5, 0.9}
)
PROBABILITIES = [*GRID, math.nan]
PREVIOUS: list[Band | None] = [None, Band.LOW, Band.MODERATE, Band.HIGH]
T0 = datetime(2024, 3, 1, tzinfo=UTC)


def _documented(p: float, previous: Band | None) -> Band:
    """The band rule as docs/policy.md states it: enter at or above ``enter``, stay at or above ``exit``."""
    if p >= 0.6 or (previous is Band.HIGH and p >= 0.45):
        return Band.HIGH
    if p >= 0.3 or (previous in (Band.MODERATE, Band.HIGH) and p >= 0.2):
        return Band.MODERATE
    return Band.LOW


def test_one_score_and_many_scores_get_the_same_band_at_every_edge_and_for_nan() -> None:
    cases = list(itertools.product(PROBABILITIES, PREVIOUS))
    codes = band_codes(
        np.array([p for p, _ in cases]),
        BANDS,
        np.array([-1 if prev is None else [Band.LOW, Band.MODERATE, Band.HIGH].index(prev) for _, prev in cases]),
    )
    for (p, previous), code in zip(cases, codes.tolist(), strict=True):
        one = band_for(p, BANDS, previous)
        assert one is [Band.LOW, Band.MODERATE, Band.HIGH][code], (p, previous)
        assert one is _documented(p, previous), (p, previous)
    assert band_for(math.nan, BANDS, Band.HIGH) is Band.LOW  # no score is no evidence of risk


@pytest.mark.parametrize("seed", range(5))
def test_one_update_at_a_time_and_many_at_once_track_the_same_bands_and_dwell(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ids = [f"i{k}" for k in range(12)]
    one, many = BandTracker(bands=BANDS), BandTracker(bands=BANDS)
    for cycle in range(30):
        now = T0 + timedelta(minutes=3 * cycle)
        probabilities = rng.choice(PROBABILITIES, size=len(ids)).tolist()
        alone = [one.update(i, p, now) for i, p in zip(ids, probabilities, strict=True)]
        assert many.update_many(ids, probabilities, now) == alone, cycle
        assert many.states == one.states
    repeated = ["i0", "i1", "i0"]  # a repeated id sees its own first update, in both shapes
    later = T0 + timedelta(hours=3)
    assert many.update_many(repeated, [0.9, 0.1, 0.1], later) == [
        one.update(i, p, later) for i, p in zip(repeated, [0.9, 0.1, 0.1], strict=True)
    ]


def test_a_rules_band_checks_are_the_same_alone_and_with_the_instance() -> None:
    plain = Instance(instance_id="i")
    for band, fresh, wanted, when_fresh in itertools.product(Band, (True, False), [None, *Band], (None, True, False)):
        match = Match(band=wanted, model_fresh=when_fresh)
        assert matches(match, band, plain, [], fresh) == _may_match(match, band, fresh), (band, fresh, match)
        grouped = Match(band=wanted, model_fresh=when_fresh, groups=["web"])
        assert not matches(grouped, band, plain, [], fresh)  # the instance's checks come on top
