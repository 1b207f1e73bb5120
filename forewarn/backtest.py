"""The backtest: train on the earlier part of a dataset in time, evaluate the later part, beside two baselines.

The scorers are the train flow's race candidates as it would fit them with ``--until`` at the cut: the same
rows (one per instance per 15 minutes before the cut), labels (failures known at the cut), features and
:func:`forewarn.model.candidates.fit_candidates` with the default TrainConfig, all from
:mod:`forewarn.model.frame`. They learn on the same training period, are calibrated on the same validation
period (isotonic), and are scored on the same later rows:
    model: XGBoost as in production (early stopping, calibration and the operating threshold all from
        periods inside the training part).
    static: per-metric thresholds (:mod:`forewarn.model.baselines`).
    logistic: an L2 logistic regression on the same features (:mod:`forewarn.model.logistic`).
Evaluation is the event-level view of ARCHITECTURE.md, over every telemetry sample from the cut on.
``champion`` is what the train flow's rule (:func:`forewarn.model.champion.decide`) picks on the evaluated
part; ``details.race_at_cut`` is the race the train flow itself ran at the cut, on its own newest period.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from forewarn.backtest_stats import (
    EVENT_KEYS,
    alert_share,
    budget_threshold,
    event_part,
    instance_codes,
    row_part,
    with_intervals,
)
from forewarn.dataset import Dataset, read_dataset
from forewarn.distributed.compute import shard_dataset
from forewarn.errors import ConfigError, InputError
from forewarn.model.baseline_model import BaselineModel
from forewarn.model.baselines import StaticThresholds
from forewarn.model.bootstrap import LEVEL, RESAMPLES, untie
from forewarn.model.candidates import fit_candidates, static_columns
from forewarn.model.champion import ORDER, race
from forewarn.model.config import TrainConfig
from forewarn.model.evaluate import (
    EventFrame,
    Events,
    brier,
    event_frame,
    events_at,
    pr_auc,
    roc_auc,
    summarise_events,
)
from forewarn.model.frame import (
    TRAIN_EVERY_MINUTES,
    dataset_features,
    join_features,
    model_feature_names,
    training_labels,
)
from forewarn.model.labels import censored_column, label_column, make_labels

METHODS = ("model", "static", "logistic")
NAMES = {"xgboost": "model", "static": "static", "logistic": "logistic"}
"""The train flow's candidate names -> the backtest's scorer names."""
KEYS = ("pr_auc", "roc_auc", "event_recall", "alert_precision", "median_lead_minutes", "brier")
Progress = Callable[[str], None]
_UNITS = {"m": 1, "min": 1, "h": 60, "d": 1440}


def parse_horizon(text: str) -> int:
    """``30m``, ``2h``, ``3d`` or a bare number of minutes, as minutes. Raises ConfigError otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*(m|min|h|d)?\s*", str(text))
    if not match or int(match.group(1)) <= 0:
        raise ConfigError(f"'{text}' is not a horizon", field="--horizon", allowed=["30m", "2h", "3d", "45"])
    return int(match.group(1)) * _UNITS[match.group(2) or "m"]


class BacktestConfig(BaseModel):
    """What one backtest run does."""

    model_config = ConfigDict(extra="forbid")

    horizon_minutes: int = Field(gt=0)
    train_fraction: float = Field(default=0.6, gt=0.0, lt=1.0)
    seed: int = 0
    nthread: int = Field(default=2, gt=0)
    resamples: int = Field(default=RESAMPLES, ge=10)
    alert_budget: float | None = Field(default=None, gt=0.0, lt=1.0)


class Evaluated(BaseModel):
    """One scorer's eval-part scores (for the report) and its metrics."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    scores: pd.DataFrame
    threshold: float
    metrics: dict[str, Any]
    lead_minutes: list[float]
    matched: dict[str, Any]
    events: tuple[Events, Events]


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def cut_time(features: pd.DataFrame, train_fraction: float) -> pd.Timestamp:
    """The start of the evaluated part: the time before which about ``train_fraction`` of the feature rows lie."""
    times = features["event_timestamp"].sort_values().reset_index(drop=True)
    if times.empty:
        raise InputError("the dataset has no telemetry rows to backtest", field="telemetry")
    return pd.Timestamp(times.iloc[min(int(train_fraction * len(times)), len(times) - 1)])


class Prepared(BaseModel):
    """The rows of one backtest: what the model trains on, what is evaluated, with which features."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    train: pd.DataFrame
    evaluate: pd.DataFrame
    columns: list[str]
    static_columns: dict[str, str]
    cut: pd.Timestamp


def _evaluated_rows(
    features: pd.DataFrame, later: np.ndarray, columns: list[str], dataset: Dataset, horizon_minutes: int
) -> pd.DataFrame:
    """The rows from the cut on, labelled with every failure, their features as float32.

    XGBoost reads its features as float32, so the model's scores do not change; the baselines' change
    in the eighth digit at most. Only the keys are labelled, so the features are copied once.
    """
    keys = features.loc[later, ["instance_id", "event_timestamp"]]
    labelled = make_labels(keys, dataset.failures, [horizon_minutes], data_end=dataset.end)
    rows = np.flatnonzero(later)[keys.index.get_indexer(labelled.index)]
    values = {name: features[name].to_numpy()[rows].astype(np.float32) for name in columns}
    out = labelled.reset_index(drop=True)
    return pd.concat([out, pd.DataFrame(values, index=out.index)], axis=1)


FEATURE_CHUNK_ROWS = 50_000
"""Features are built for runs of whole instances of about this many telemetry rows at a time; only the
training rows (float64, as the train flow reads them) and the evaluated rows (float32) of each are kept, so
memory grows with the largest instance's history and the evaluated rows, not with the fleet's features."""


def instance_groups(telemetry: pd.DataFrame, rows: int | None = None) -> list[list[str]]:
    """The instances, sorted as the feature frame sorts them, in runs of about ``rows`` telemetry rows
    (default :data:`FEATURE_CHUNK_ROWS`)."""
    rows = rows or FEATURE_CHUNK_ROWS
    counts = telemetry["instance_id"].astype(str).value_counts().sort_index()
    groups: list[list[str]] = [[]]
    size = 0
    for instance, count in counts.items():
        if groups[-1] and size + int(count) > rows:
            groups.append([])
            size = 0
        groups[-1].append(str(instance))
        size += int(count)
    return groups


def prepare(dataset: Dataset, horizon_minutes: int, train_fraction: float) -> Prepared:
    """The training frame exactly as the train flow builds it with ``until`` at the cut, and every later sample.

    Training rows, labels and features come from :mod:`forewarn.model.frame` (the train flow's own
    functions; the features are joined in memory rather than through Feast). The evaluated part is every
    telemetry sample from the cut on, labelled with all failures, as the live loop would score them.
    Features are per instance, so they are built for a few instances at a time (:func:`instance_groups`).
    """
    columns = model_feature_names(dataset.metrics)
    keys = dataset.telemetry[["instance_id", "timestamp"]].drop_duplicates()
    cut = cut_time(pd.DataFrame({"event_timestamp": pd.to_datetime(keys["timestamp"], utc=True)}), train_fraction)
    del keys
    labels = training_labels(dataset, horizon_minutes, until=cut).reset_index(drop=True)
    labelled_ids = labels["instance_id"].astype(str).to_numpy()
    train_parts, eval_parts = [], []
    for ids in instance_groups(dataset.telemetry):
        part = shard_dataset(dataset, ids)
        features = dataset_features(part)
        before = (features["event_timestamp"] < cut).to_numpy()
        mine = labels.loc[np.isin(labelled_ids, ids)]
        train_parts.append(join_features(mine, features.loc[before], columns))
        eval_parts.append(_evaluated_rows(features, ~before, columns, dataset, horizon_minutes))
        del features, part
    train = pd.concat(train_parts).sort_index() if train_parts else labels
    evaluate = pd.concat(eval_parts, ignore_index=True)
    del train_parts, eval_parts
    return Prepared(
        train=train.reset_index(drop=True),
        evaluate=evaluate,
        columns=columns,
        static_columns=static_columns(dataset.metrics, columns),
        cut=cut,
    )


class Scorer(NamedTuple):
    """One fitted scorer: its scores on the evaluated rows and on the training rows, and its threshold.

    ``rank_eval`` and ``rank_train`` order the rows for the matched budget when the scores tie in steps:
    the model's booster output before isotonic calibration, which orders rows as the calibrated score
    does (calibration is monotone) and splits its ties, so a budget between two steps can be met.
    """

    p_eval: np.ndarray
    p_train: np.ndarray
    threshold: float
    rank_eval: np.ndarray | None = None
    rank_train: np.ndarray | None = None
    rule_threshold: float | None = None
    """The static rules' own operating point: alert where a rule fires (the raw score at or above this), not
    where the calibrated score passes a threshold (calibration may merge firing and quiet into one value)."""

    def own(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Training scores, evaluated scores and threshold of the scorer's own operating point."""
        if self.rule_threshold is not None and self.rank_eval is not None and self.rank_train is not None:
            return self.rank_train, self.rank_eval, self.rule_threshold
        return self.p_train, self.p_eval, self.threshold

    def ranks(self) -> tuple[np.ndarray, np.ndarray]:
        """The scores the matched threshold is chosen on (training rows) and applied to (evaluated rows)."""
        if self.rank_eval is None or self.rank_train is None:
            return self.p_train, self.p_eval
        return self.rank_train, self.rank_eval


def _evaluate(eval_part: pd.DataFrame, ef: EventFrame, scorer: Scorer, matched_threshold: float) -> Evaluated:
    p = scorer.p_eval
    _, own_eval, own_threshold = scorer.own()
    own = events_at(ef, own_eval, own_threshold)
    metrics = summarise_events(ef, own, own_threshold)
    known = ef.up & ~ef.censored
    y, p_known = ef.truthful[known].astype(float), p[ef.order][known]
    untied = untie(p)[ef.order][known]  # ties score as chance (see untie), as in the intervals and the race
    metrics["pr_auc"] = _clean(pr_auc(y, untied)) if y.sum() else None
    metrics["roc_auc"] = _clean(roc_auc(y, untied))
    metrics["brier"] = brier(y, p_known) if len(y) else None
    metrics["n_samples"], metrics["prevalence"] = len(y), float(y.mean()) if len(y) else None
    rank_train, rank_eval = scorer.ranks()
    at_budget = events_at(ef, rank_eval, matched_threshold)
    matched = summarise_events(ef, at_budget, matched_threshold)
    matched["alert_share_train"] = alert_share(rank_train, matched_threshold)
    matched["alert_share_eval"] = float(at_budget.alert.sum() / max(int(ef.up.sum()), 1))
    scores = pd.DataFrame(
        {
            "instance_id": eval_part["instance_id"].to_numpy(),
            "event_timestamp": eval_part["event_timestamp"].to_numpy(),
            "probability": p,
            "label": eval_part[label_column(ef_horizon(ef))].to_numpy(),
            "censored": eval_part[censored_column(ef_horizon(ef))].to_numpy(dtype=bool),
        }
    )
    return Evaluated(
        scores=scores,
        threshold=own_threshold,
        metrics=metrics,
        lead_minutes=own.leads.dropna().tolist(),
        matched=matched,
        events=(own, at_budget),
    )


def ef_horizon(ef: EventFrame) -> int:
    """The horizon in minutes of an event frame."""
    return int(ef.window / pd.Timedelta(minutes=1))


def _in_parts(score: Callable[[pd.DataFrame], np.ndarray], frame: pd.DataFrame, rows: int = 50_000) -> np.ndarray:
    """``score(frame)``, a part of ``rows`` rows at a time: a scorer copies its feature matrix, bounded so."""
    if len(frame) <= rows:
        return np.asarray(score(frame))
    return np.concatenate([score(frame.iloc[start : start + rows]) for start in range(0, len(frame), rows)])


def _fit(
    rows: Prepared, config: BacktestConfig, say: Progress
) -> tuple[dict[str, Scorer], list[dict[str, Any]], dict[str, Any]]:
    """Fit the train flow's three candidates on the training rows (:func:`fit_candidates`); their scores on
    both parts, the static rules, and the race the train flow would run at the cut."""
    horizon, label = config.horizon_minutes, label_column(config.horizon_minutes)
    train_known = rows.train[~rows.train[censored_column(horizon)].astype(bool)]
    if train_known[label].sum() == 0 or rows.evaluate.empty:
        raise InputError(
            f"the training part (first {config.train_fraction:.0%} in time) has no failure within {horizon} min, "
            "or nothing is left to evaluate; use a longer --horizon or another --train-fraction",
            field="--train-fraction",
        )
    say(f"training XGBoost, the static rules and the logistic model on {len(train_known):,} rows")
    train_cfg = TrainConfig(horizon_minutes=horizon, seed=config.seed, nthread=config.nthread)
    fitted = fit_candidates(rows.train, rows.columns, label, train_cfg, static=rows.static_columns)
    ev, tr = rows.evaluate, rows.train
    scorers = {
        NAMES[name]: Scorer(
            _in_parts(m.predict_proba, ev),
            m.predict_proba(tr),
            m.threshold,
            _in_parts(m.raw_proba, ev),
            m.raw_proba(tr),
        )
        for name, m in fitted.models.items()
    }
    static = fitted.models["static"]
    baseline = static.baseline if isinstance(static, BaselineModel) else None
    if isinstance(baseline, StaticThresholds):
        scorers["static"] = scorers["static"]._replace(rule_threshold=baseline.threshold)
    rules = [r.model_dump() for r in baseline.rules] if isinstance(baseline, StaticThresholds) else []
    test = fitted.test
    at_cut, _, _ = race(
        {name: m.predict_proba(test) for name, m in fitted.models.items()},
        test[label].to_numpy(dtype=float),
        test["instance_id"].to_numpy(),
        ORDER,
        resamples=config.resamples,
        seed=config.seed,
    )
    return scorers, rules, {"champion": NAMES[at_cut.champion], "reason": at_cut.reason, "rows": at_cut.rows}


def _budget(scorers: dict[str, Scorer], given: float | None) -> tuple[float, str]:
    """The matched alert budget and where it comes from."""
    if given is not None:
        return given, "given"
    static = scorers["static"]
    share = alert_share(*static.own()[::2])
    if share > 0:
        return share, "the static rules' alert share on the training rows"
    model = scorers["model"]
    return alert_share(model.p_train, model.threshold), "the model's alert share on the training rows (no static rule)"


def run_backtest(
    dataset_dir: str | Path | Dataset, config: BacktestConfig, *, progress: Progress | None = None
) -> tuple[dict[str, Any], dict[str, Evaluated]]:
    """Run the backtest; returns the JSON-ready summary and, per scorer, what the report plots."""
    say = progress or (lambda _step: None)
    horizon = config.horizon_minutes
    say("reading the dataset")
    dataset = dataset_dir if isinstance(dataset_dir, Dataset) else read_dataset(dataset_dir)
    say(f"features for {len(dataset.telemetry):,} rows, {len(dataset.metrics)} metrics")
    rows = prepare(dataset, horizon, config.train_fraction)
    scorers, rules, at_cut = _fit(rows, config, say)
    eval_part, cut = rows.evaluate, rows.cut
    say(f"evaluating {len(eval_part):,} rows")
    failures = dataset.failures
    ef = event_frame(eval_part, failures, horizon)
    budget, budget_source = _budget(scorers, config.alert_budget)
    results = {
        name: _evaluate(eval_part, ef, scorer, budget_threshold(scorer.ranks()[0], budget))
        for name, scorer in scorers.items()
    }
    say(f"bootstrap over instances, {config.resamples:,} resamples")
    codes = instance_codes(ef)
    figures: dict[str, dict[str, Any]] = {}
    for name, result in results.items():
        figures[name] = {key: _clean(result.metrics.get(key)) for key in KEYS}
        figures[name]["matched"] = {
            key: _clean(result.matched.get(key)) for key in (*EVENT_KEYS, "alert_share_train", "alert_share_eval")
        }
    figures, (champion, reason) = with_intervals(
        figures,
        {name: row_part(ef, untie(scorers[name].p_eval), codes) for name in results},
        {name: event_part(ef, r.events[0], codes) for name, r in results.items()},
        {name: event_part(ef, r.events[1], codes) for name, r in results.items()},
        len(codes),
        count=config.resamples,
        seed=config.seed,
    )
    fail_times = pd.to_datetime(failures["timestamp"], utc=True)
    summary: dict[str, Any] = {
        "horizon_minutes": horizon,
        "events_train": int(((fail_times > rows.train["event_timestamp"].min()) & (fail_times <= cut)).sum()),
        "events_eval": int(results["model"].metrics["n_failures"]),
        "alert_budget": budget,
        **figures,
    }
    summary["champion"], summary["champion_reason"] = champion, reason
    summary["details"] = {
        "train_fraction": config.train_fraction,
        "rows_train": int((~rows.train[censored_column(horizon)].astype(bool)).sum()),
        "rows_eval": len(eval_part),
        "eval_from": cut.isoformat(),
        "train_every_minutes": TRAIN_EVERY_MINUTES,
        "instances": int(dataset.telemetry["instance_id"].nunique()),
        "instances_resampled": len(codes),
        "resamples": config.resamples,
        "interval_level": LEVEL,
        "alert_budget_source": budget_source,
        "metrics": list(dataset.metrics),
        "features": len(rows.columns),
        "static_rules": rules,
        "race_at_cut": at_cut,
        "per_method": {name: {k: _clean(v) for k, v in r.metrics.items()} for name, r in results.items()},
        "matched_thresholds": {name: _clean(r.matched["threshold"]) for name, r in results.items()},
    }
    return summary, results
