"""Intervals of the backtest: a bootstrap over whole instances, paired ratios, matched alert budgets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forewarn.backtest_stats import alert_share, budget_threshold, verdict, with_intervals
from forewarn.model import bootstrap as bs
from forewarn.model.evaluate import pr_auc, roc_auc


def fleet_rows(instances: int = 40, per: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of ``instances`` instances; a third of them fail, and their rows score higher, with noise."""
    rng = np.random.default_rng(seed)
    instance = np.repeat(np.arange(instances), per)
    failing = rng.random(instances) < 0.35
    y = failing[instance] & (rng.random(len(instance)) < 0.5)
    p = rng.random(len(instance)) + 0.6 * y
    return instance, y, p


def width(ci: list[float] | None) -> float:
    assert ci is not None
    return ci[1] - ci[0]


def test_unit_and_integer_weights_give_the_plain_and_the_replicated_figures() -> None:
    instance, y, p = fleet_rows()
    part = bs.RowPart.of(instance, y, np.round(p, 1))  # rounded: ties between rows too
    pr, roc = bs.ranking(part, np.ones((1, 40), dtype=np.float32))
    assert pr[0] == pytest.approx(pr_auc(y, np.round(p, 1))) and roc[0] == pytest.approx(roc_auc(y, np.round(p, 1)))
    counts = np.random.default_rng(3).multinomial(40, np.full(40, 1 / 40))
    keep = np.repeat(np.arange(len(y)), counts[instance])
    pr, roc = bs.ranking(part, counts[None, :].astype(np.float32))
    assert pr[0] == pytest.approx(pr_auc(y[keep], np.round(p, 1)[keep]))
    assert roc[0] == pytest.approx(roc_auc(y[keep], np.round(p, 1)[keep]))


def test_rows_repeated_within_instances_do_not_narrow_the_interval() -> None:
    """Five copies of every row add no information; a bootstrap over rows would think they do."""
    instance, y, p = fleet_rows()
    once = bs.bootstrap({"s": bs.RowPart.of(instance, y, p)}, {}, 40, count=400, seed=1)["s"]
    rep = np.repeat(np.arange(len(y)), 5)
    five = bs.bootstrap({"s": bs.RowPart.of(instance[rep], y[rep], p[rep])}, {}, 40, count=400, seed=1)["s"]
    for key in ("pr_auc", "roc_auc"):
        assert width(bs.interval(five[key])) == pytest.approx(width(bs.interval(once[key])), rel=1e-6)
    as_rows = bs.bootstrap({"s": bs.RowPart.of(np.arange(len(rep)), y[rep], p[rep])}, {}, len(rep), count=400, seed=1)
    assert width(bs.interval(as_rows["s"]["pr_auc"])) < 0.6 * width(bs.interval(once["pr_auc"]))


def test_event_figures_resample_instances_and_take_the_median_of_the_resampled_leads() -> None:
    part = bs.EventPart(
        failures=np.array([2.0, 1.0, 0.0, 1.0]),
        caught=np.array([1.0, 1.0, 0.0, 0.0]),
        true_runs=np.array([1.0, 1.0, 0.0, 0.0]),
        false_alarms=np.array([0.0, 2.0, 3.0, 0.0]),
        leads=np.array([10.0, 40.0]),
        lead_instance=np.array([0, 1]),
    )
    weights = np.array([[1, 1, 1, 1], [3, 0, 1, 0], [0, 0, 2, 2], [1, 2, 0, 1]], dtype=np.float32)
    got = bs.event_figures(part, weights)
    np.testing.assert_allclose(got["event_recall"], [2 / 4, 3 / 6, 0.0, 3 / 5])
    np.testing.assert_allclose(got["alert_precision"], [2 / 7, 3 / 6, 0.0, 3 / 7])
    expected = [np.median([10, 40]), 10.0, np.nan, np.median([10, 40, 40])]
    np.testing.assert_allclose(got["median_lead_minutes"], expected)


def figures_of(p_model: np.ndarray, p_base: np.ndarray, instance: np.ndarray, y: np.ndarray) -> tuple[dict, str]:
    """The figures with intervals, and the champion the race rule picks from them."""
    event = bs.EventPart(*(np.ones(40) for _ in range(4)), leads=np.ones(3), lead_instance=np.arange(3))
    figures = {
        name: {"pr_auc": pr_auc(y, p), "matched": {}}
        for name, p in (("model", p_model), ("static", p_base), ("logistic", p_base))
    }
    rows = {
        name: bs.RowPart.of(instance, y, p)
        for name, p in (("model", p_model), ("static", p_base), ("logistic", p_base))
    }
    events = dict.fromkeys(figures, event)
    figures, (champion, _reason) = with_intervals(figures, rows, events, events, 40, count=300, seed=0)
    return figures, champion


def test_a_scorer_equal_to_the_baseline_cannot_be_told_apart_and_is_not_promoted() -> None:
    instance, y, p = fleet_rows()
    figures, champion = figures_of(p, p.copy(), instance, y)
    ratio = figures["model"]["ratio_to_static"]
    assert ratio["pr_auc"] == pytest.approx(1.0) and ratio["ci"][0] <= 1.0 <= ratio["ci"][1]
    assert verdict(ratio) == "indistinguishable"
    assert champion == "static"
    assert {"pr_auc_ci", "roc_auc_ci", "ratio_to_static", "ratio_to_logistic"} <= set(figures["model"])
    for key in ("event_recall_ci", "alert_precision_ci", "median_lead_minutes_ci"):
        assert key in figures["model"] and key in figures["model"]["matched"]


def test_a_clearly_better_model_wins_the_race_and_a_worse_one_does_not() -> None:
    instance, y, p = fleet_rows(per=60)
    noise = np.random.default_rng(9).random(len(p))
    figures, champion = figures_of(p, noise, instance, y)
    assert verdict(figures["model"]["ratio_to_static"]) == "better" and champion == "model"
    figures, champion = figures_of(noise, p, instance, y)
    assert verdict(figures["model"]["ratio_to_static"]) == "worse" and champion != "model"


def test_the_bootstrap_is_seeded() -> None:
    instance, y, p = fleet_rows()
    part = {"s": bs.RowPart.of(instance, y, p)}
    first = bs.bootstrap(part, {}, 40, count=50, seed=4)["s"]["pr_auc"]
    np.testing.assert_array_equal(first, bs.bootstrap(part, {}, 40, count=50, seed=4)["s"]["pr_auc"])
    assert not np.array_equal(first, bs.bootstrap(part, {}, 40, count=50, seed=5)["s"]["pr_auc"])


def test_a_matched_budget_equalises_alert_shares_of_different_scorers() -> None:
    rng = np.random.default_rng(2)
    scorers = {"wide": rng.normal(size=5000), "skewed": rng.exponential(size=5000), "small": rng.random(5000) / 100}
    for budget in (0.001, 0.02, 0.3):
        shares = [alert_share(p, budget_threshold(p, budget)) for p in scorers.values()]
        assert all(abs(s - budget) <= 1 / 5000 for s in shares)
    tied = np.repeat([0.9, 0.5, 0.1], [10, 40, 50])  # calibrated scores come in steps: the closest step
    assert alert_share(tied, budget_threshold(tied, 0.12)) == 0.1
    assert alert_share(tied, budget_threshold(tied, 0.001)) == 0.0


def test_intervals_are_none_where_the_figure_is_mostly_undefined() -> None:
    assert bs.interval(np.array([np.nan] * 9 + [0.5])) is None
    assert bs.interval(np.linspace(0, 1, 101)) == pytest.approx([0.05, 0.95])
    assert pd.isna(bs.ratio(np.array([1.0]), np.array([0.0]))[0])
