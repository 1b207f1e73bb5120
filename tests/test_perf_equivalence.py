"""The fast paths of the cycle give exactly what straightforward per-instance code gives.

Each reference below is the plain version the fast path replaced: a full stable argsort per row and one
record at a time for explanations, one ``BandTracker.update`` and one rule scan per instance for decisions,
one record at a time for the fleet arrays. Inputs are random, with ties, NaN, opt-outs, tags, groups,
workload kinds, failed instances, missing and repeated scores.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from forewarn.allocation.model import Fleet
from forewarn.errors import InputError
from forewarn.model.calibrate import Calibrator
from forewarn.model.explaining import top_k_by_magnitude
from forewarn.model.scoring import TrainedModel
from forewarn.policy import PolicyEngine, load_policy_text
from forewarn.policy.actions import get_action
from forewarn.policy.engine import matches
from forewarn.policy.loader import load_policy
from forewarn.schemas import ActionType, Band, Decision, FeatureContribution, Instance, InstanceState, RiskScore, Task
from forewarn.settings import PROJECT_ROOT

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
FEATURES = [f"f{k}" for k in range(8)]

RULES = """\
rules:
  - {name: db-by-hand, match: {band: high, workload-kinds: [database]}, action: {type: notify}}
  - {name: evacuate-prod, match: {band: high, tags: {env: prod}}, action: {type: migrate}}
  - {name: evacuate-any, match: {band: high}, action: {type: cordon, drain: true}}
  - {name: ease-web, match: {band: moderate, groups: [web]}, action: {type: scale-back, factor: 0.6}}
  - {name: ease, match: {band: moderate}, action: {type: scale-back, factor: 0.8}}
  - {name: stale-web, match: {band: high, model-fresh: false, groups: [web]}, action: {type: notify}}
  - {name: stale-any, match: {model-fresh: false, tags: {env: '*'}}, action: {type: cordon}}
  - {name: quiet, match: {band: low, tags: {env: dev}}, action: {type: none}}
"""


def _policy_text(rules: list[str]) -> str:
    head = "name: equivalence\nmode: auto\nbands:\n  high: {enter: 0.6, exit: 0.45}\n"
    head += "  moderate: {enter: 0.3, exit: 0.2}\n  min-dwell-minutes: 10\nrules:\n"
    tail = "fallback:\n  static-thresholds: {mem: 0.9, err: 3}\n  action: cordon\n"
    return head + "".join(rules) + tail


# --- explanations and scores ---------------------------------------------------------------------------


def test_top_k_equals_a_full_stable_sort_with_ties_and_nan() -> None:
    rng = np.random.default_rng(7)
    for trial in range(200):
        rows, width = int(rng.integers(1, 40)), int(rng.integers(1, 10))
        contribs = (rng.integers(-2, 3, size=(rows, width)) * rng.random((rows, width)) ** (trial % 2)).astype("f4")
        if trial % 5 == 0:
            contribs[rng.random((rows, width)) < 0.1] = np.nan
        for k in range(-1, width + 2):
            expected = np.argsort(-np.abs(contribs), axis=1, kind="mergesort")[:, :k]
            assert np.array_equal(top_k_by_magnitude(contribs, k), expected)


@pytest.fixture(scope="module")
def trained() -> TrainedModel:
    rng = np.random.default_rng(0)
    x = rng.random((3000, len(FEATURES)), dtype=np.float32)
    y = (rng.random(3000) < 0.05 + 0.5 * (x[:, 0] > 0.9)).astype(float)
    params = {"objective": "binary:logistic", "max_depth": 3, "nthread": 1, "verbosity": 0}
    booster = xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=20)
    calibrator = Calibrator.fit(booster.inplace_predict(x), y)
    return TrainedModel(booster, calibrator, feature_names=FEATURES, horizon_minutes=60, version="eq")


def _reference_scores(model: TrainedModel, frame: pd.DataFrame, now: datetime, top_k: int) -> list[RiskScore]:
    probabilities = model.predict_proba(frame)
    matrix = frame[FEATURES].astype(np.float32)
    contribs = model.booster.predict(xgb.DMatrix(matrix, missing=np.nan), pred_contribs=True)[:, :-1]
    values = frame[FEATURES].to_numpy(dtype=float)
    out = []
    for row in range(len(frame)):
        order = sorted(range(len(FEATURES)), key=lambda j: -abs(float(contribs[row, j])))[: max(top_k, 0)]
        top = [
            FeatureContribution(
                feature=FEATURES[j],
                value=None if np.isnan(values[row, j]) else float(values[row, j]),
                contribution=float(contribs[row, j]),
            )
            for j in order
        ]
        when = frame["event_timestamp"].iloc[row].to_pydatetime() if "event_timestamp" in frame else now
        out.append(
            RiskScore(
                instance_id=str(frame["instance_id"].iloc[row]),
                timestamp=when,
                probability=float(probabilities[row]),
                horizon_minutes=60,
                model_version="eq",
                top_features=top,
            )
        )
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_scores_and_top_features_equal_the_reference(trained: TrainedModel, seed: int) -> None:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.random((300, len(FEATURES))), columns=FEATURES)
    frame = frame.mask(rng.random(frame.shape) < 0.15)  # missing features: zero contributions tie
    frame.insert(0, "instance_id", [f"i-{k}" for k in range(300)])
    if seed == 2:
        frame.insert(1, "event_timestamp", pd.Timestamp(T0) - pd.to_timedelta(rng.integers(0, 60, 300), "min"))
    for top_k in (0, 3, 5):
        fast = trained.score(frame, timestamp=T0, top_k=top_k)
        reference = _reference_scores(trained, frame, T0, top_k)
        assert fast == reference
        assert [s.model_fields_set for s in fast] == [s.model_fields_set for s in reference]
    partial = trained.score(frame, timestamp=T0, explain_from=0.2)
    for got, full in zip(partial, reference, strict=True):
        assert got.probability == full.probability
        assert got.top_features == (full.top_features[:3] if full.probability >= 0.2 else [])


# --- decisions -------------------------------------------------------------------------------------------


class ReferenceEngine(PolicyEngine):
    """The per-instance engine: one tracker update and one scan of the rules per instance."""

    def decide(
        self,
        scores: Sequence[RiskScore],
        instances: Sequence[Instance],
        tasks: Sequence[Task],
        *,
        now: datetime,
        model_fresh: bool = True,
        features: Mapping[str, Mapping[str, float]] | None = None,
    ) -> list[Decision]:
        fresh = model_fresh and bool(scores)
        latest: dict[str, RiskScore] = {}
        for score in scores:
            if score.instance_id not in latest or score.timestamp >= latest[score.instance_id].timestamp:
                latest[score.instance_id] = score
        out, self.last_bands, tag = [], {}, self.policy.opt_out_tag
        for instance in instances:
            if instance.state in (InstanceState.FAILED, InstanceState.TERMINATED):
                continue
            own = [t for t in tasks if t.instance_id == instance.instance_id]
            current = latest.get(instance.instance_id) if fresh else None
            if fresh and current is None:
                continue
            if current is not None:
                band = self.tracker.update(instance.instance_id, current.probability, now)
                triggered: list[str] = []
            else:
                band, triggered = self._static_band(instance.instance_id, features or {})
            rule = next((r for r in self.policy.rules if matches(r.match, band, instance, own, fresh)), None)
            decision = None
            if rule is not None:
                decision = Decision(
                    instance_id=instance.instance_id,
                    band=band,
                    action=ActionType(rule.action.type),
                    rule=rule.name,
                    probability=current.probability if current else None,
                    top_features=list(current.top_features) if current else [],
                    params=get_action(rule.action.type).process(rule.action),
                )
            elif not fresh and band is Band.HIGH:
                decision = self._fallback(instance, triggered)
            holds = instance.state == InstanceState.CORDONED or instance.capacity_factor < 1 or instance.reserved > 0
            if decision is not None and decision.action is ActionType.RELEASE and not holds:
                decision = None  # a release only where something is held back
            self.last_bands[instance.instance_id] = band
            pinned = [t.task_id for t in own if tag in t.tags]
            if decision is None and (tag in instance.tags or pinned):
                rule_name = "opt-out" if tag in instance.tags else "opt-out-tasks"
                decision = Decision(instance_id=instance.instance_id, band=band, action=ActionType.NONE, rule=rule_name)
            if decision is not None:
                out.append(self._honour_opt_out(decision, instance, pinned))
        return out


def _fleet(rng: random.Random, size: int) -> tuple[list[Instance], list[Task]]:
    instances = [
        Instance(
            instance_id=f"i-{k}",
            group=rng.choice(["web", "db", "default"]),
            tags=rng.choice([{}, {"env": "prod"}, {"env": "dev"}, {"forewarn/opt-out": "yes"}]),
            state=rng.choice([InstanceState.RUNNING] * 8 + [InstanceState.FAILED, InstanceState.CORDONED]),
        )
        for k in range(size)
    ]
    tasks = [
        Task(
            task_id=f"t-{k}",
            instance_id=rng.choice([None, *(i.instance_id for i in instances)]),
            kind=rng.choice(["batch", "database", "web"]),
            tags=rng.choice([{}, {}, {}, {"forewarn/opt-out": "1"}]),
        )
        for k in range(size * 2)
    ]
    return instances, tasks


def _scores(rng: random.Random, instances: Sequence[Instance], at: datetime) -> list[RiskScore]:
    picked = [i for i in instances if rng.random() < 0.9] + rng.sample(list(instances), k=3)
    return [
        RiskScore(
            instance_id=i.instance_id,
            timestamp=at - timedelta(minutes=rng.choice([0, 1])),
            probability=rng.choice([0.0, 0.2, 0.3, 0.45, 0.6, rng.random()]),
            horizon_minutes=60,
            model_version="eq",
        )
        for i in picked
    ]


@pytest.mark.parametrize("seed", range(6))
def test_decisions_bands_and_tracker_equal_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    lines = RULES.splitlines(keepends=True)[1:]
    rng.shuffle(lines)
    policy = (
        load_policy_text(_policy_text(lines)) if seed % 2 == 0 else load_policy(PROJECT_ROOT / "policies/default.yaml")
    )
    fast, reference = PolicyEngine(policy), ReferenceEngine(policy)
    instances, tasks = _fleet(rng, 60)
    now = T0
    for _ in range(6):
        now += timedelta(minutes=rng.choice([1, 5, 12]))
        scores = _scores(rng, instances, now)
        fresh = rng.random() < 0.8
        features = {i.instance_id: {"mem": rng.random(), "err": float(rng.randint(0, 4))} for i in instances}
        if rng.random() < 0.2:
            scores = []
        got = fast.decide(scores, instances, tasks, now=now, model_fresh=fresh, features=features)
        assert got == reference.decide(scores, instances, tasks, now=now, model_fresh=fresh, features=features)
        assert list(fast.last_bands.items()) == list(reference.last_bands.items())
        assert fast.tracker.model_dump() == reference.tracker.model_dump()
    doubled = [*instances, instances[0]]  # a repeated instance sees its own first update
    scores = _scores(rng, instances, now + timedelta(minutes=30))
    later = now + timedelta(minutes=30)
    assert fast.decide(scores, doubled, tasks, now=later) == reference.decide(scores, doubled, tasks, now=later)


# --- fleet arrays ------------------------------------------------------------------------------------------


def test_fleet_arrays_equal_the_record_by_record_build() -> None:
    rng = random.Random(3)
    instances, tasks = _fleet(rng, 80)
    risk = {i.instance_id: rng.random() for i in instances if rng.random() < 0.8} | {"gone": 0.5}
    fleet = Fleet.from_records(instances, tasks, risk)
    index = {i.instance_id: row for row, i in enumerate(instances)}
    expected_risk = np.array([risk.get(i.instance_id, np.nan) for i in instances])
    assert np.array_equal(fleet.risk, expected_risk, equal_nan=True)
    assert fleet.task_instance.tolist() == [-1 if t.instance_id is None else index[t.instance_id] for t in tasks]
    assert fleet.state.tolist() == [i.state.value for i in instances]
    assert fleet.group is not None and fleet.group.tolist() == [i.group for i in instances]
    assert fleet.task_min_chunk.tolist() == [t.min_chunk for t in tasks]
    assert fleet.task_splittable.tolist() == [t.splittable for t in tasks]
    assert fleet.to_tasks() == tasks


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("instance", "instance_id 'i-0' appears twice (rows 1 and 4)"),
        ("task", "task_id 't-0' appears twice (rows 1 and 3)"),
        ("risk", "risk of 'i-1' is nan; a probability lies in [0, 1]"),
        ("unknown", "task 't-1' is on unknown instance 'nowhere'"),
    ],
)
def test_fleet_refuses_the_same_inputs_with_the_same_message(change: str, message: str) -> None:
    instances = [Instance(instance_id=f"i-{k}") for k in range(3)]
    tasks = [Task(task_id=f"t-{k}", instance_id=f"i-{k}") for k in range(2)]
    risk: dict[str, float] = {"i-0": 0.1, "i-1": 0.2, "i-2": 1.5 if change == "risk" else 0.3}
    if change == "instance":
        instances.append(Instance(instance_id="i-0"))
    if change == "task":
        tasks.append(Task(task_id="t-0"))
    if change == "risk":
        risk["i-1"] = float("nan")
    if change == "unknown":
        tasks[1] = Task(task_id="t-1", instance_id="nowhere")
    with pytest.raises(InputError) as caught:
        Fleet.from_records(instances, tasks, risk)
    assert message in str(caught.value)
