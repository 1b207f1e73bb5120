"""The stages of the loop as plain, typed functions; flows/ wraps each in a Prefect task.

materialize: dataset -> window features -> Feast offline store -> online store.
train: point-in-time training frame -> Great Expectations gate -> XGBoost -> registry (never a worse model).
score: online features -> calibrated risk scores with their top features.
plan: scores -> policy decisions -> allocation -> guardrails -> a journalled plan.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from forewarn.dataset import Dataset
from forewarn.execution.applier import Applier
from forewarn.execution.journal import Journal
from forewarn.features.events import EVENT_FEATURES
from forewarn.features.store import FeatureStoreGlue
from forewarn.model.champion import challenge, newest_holdout
from forewarn.model.frame import TRAIN_EVERY_MINUTES as TRAIN_EVERY_MINUTES
from forewarn.model.frame import dataset_features, training_labels
from forewarn.model.frame import training_entities as training_entities
from forewarn.model.registry import ModelCard, ModelRegistry
from forewarn.model.train import TrainConfig, TrainedModel, train_model
from forewarn.policy.engine import PolicyEngine
from forewarn.policy.guardrails import GuardrailState, enforce
from forewarn.policy.schema import Policy
from forewarn.schemas import Band, Instance, Plan, PlanState, PolicyMode, RiskScore, Task
from forewarn.validation import ValidationReport, validate_training_frame

build_features = dataset_features
"""Window features of every instance at every telemetry step (see :func:`forewarn.model.frame.dataset_features`)."""


def materialize(glue: FeatureStoreGlue, features: pd.DataFrame, *, end: datetime | None = None) -> int:
    """Write features to the offline store, apply the definitions and materialize up to ``end``."""
    glue.write_offline(features)
    glue.apply()
    until = end or pd.Timestamp(features["event_timestamp"].max()).to_pydatetime()
    glue.materialize(end=until)
    return len(features)


@dataclass
class TrainOutcome:
    """What a training run produced: the card of the new model, whether it became current, the gate."""

    card: ModelCard | None
    promoted: bool
    validation: ValidationReport
    rows: int


def train(
    dataset: Dataset,
    glue: FeatureStoreGlue,
    registry: ModelRegistry,
    *,
    horizon_minutes: int,
    until: pd.Timestamp | None = None,
    config: TrainConfig | None = None,
    actions: pd.DataFrame | None = None,
) -> TrainOutcome:
    """Train on the point-in-time frame from Feast; the current model stays if the gate fails or it is worse.

    With ``actions`` (journalled outcomes, :func:`forewarn.model.feedback.journal_actions`), an instance that
    was drained or migrated is labelled by what then happened to it, never assumed healthy. The new model
    becomes champion only if it beats the current one on the same newest holdout rows. The rows and labels
    come from :mod:`forewarn.model.frame`, as in the backtest.
    """
    labelled = training_labels(dataset, horizon_minutes, until=until, actions=actions)
    frame = glue.training_frame(labelled)
    label = f"label_{horizon_minutes}m"
    report = validate_training_frame(
        frame, feature_columns=glue.feature_names, label_column=label, sparse_columns=EVENT_FEATURES
    )
    if not report.success:
        return TrainOutcome(card=None, promoted=False, validation=report, rows=len(frame))
    cfg = config or TrainConfig(horizon_minutes=horizon_minutes)
    model = train_model(frame, glue.feature_names, label, cfg)
    window = (
        pd.Timestamp(frame["event_timestamp"].min()).to_pydatetime(),
        pd.Timestamp(frame["event_timestamp"].max()).to_pydatetime(),
    )
    card = registry.register(model, data_window=window, validation=report.model_dump(mode="json"))
    glue.register_service(card.version, card.features)  # the model version's contract with the feature store
    holdout = newest_holdout(frame, fraction=cfg.fractions[-1])  # the newest period, scored by both models
    promoted = challenge(registry, card.version, holdout, label).promoted
    return TrainOutcome(card=card, promoted=promoted, validation=report, rows=len(frame))


def online_features(
    glue: FeatureStoreGlue, instance_ids: Sequence[str], model: TrainedModel | None = None
) -> pd.DataFrame:
    """The latest features of each instance from the online store (NaN where it has none), read through the
    model version's FeatureService when a model is given."""
    service = glue.ensure_service(model.version, model.feature_names) if model is not None else None
    return glue.online_features(list(instance_ids), service=service)


def score(model: TrainedModel | None, features: pd.DataFrame, *, now: datetime) -> list[RiskScore]:
    """Calibrated scores with their top features; none without a model (the policy's fallback decides)."""
    if model is None:
        return []
    known = features.dropna(subset=model.feature_names, how="all")
    return model.score(known, timestamp=now)


def feature_map(features: pd.DataFrame) -> dict[str, dict[str, float]]:
    """instance_id -> feature -> value, for the policy's static fallback thresholds."""
    indexed = features.drop(columns=[c for c in ("event_timestamp",) if c in features]).set_index("instance_id")
    return {str(k): {c: float(v) for c, v in row.items() if pd.notna(v)} for k, row in indexed.iterrows()}


@dataclass
class CyclePlan:
    """One cycle's plan with the guardrail state to carry into the next cycle."""

    plan: Plan
    guard_state: GuardrailState
    high_risk: int


def plan_cycle(
    scores: Sequence[RiskScore],
    instances: Sequence[Instance],
    tasks: Sequence[Task],
    *,
    engine: PolicyEngine,
    policy: Policy,
    guard_state: GuardrailState,
    now: datetime,
    model_version: str | None,
    model_fresh: bool = True,
    features: dict[str, dict[str, float]] | None = None,
    stale: Sequence[str] = (),
    held: Collection[str] | None = None,
) -> CyclePlan:
    """Decide, allocate and enforce the guardrails: the plan of one cycle, not yet persisted or run.

    ``stale``: instances whose features are too old to score (the fallback decides them); ``held``: the
    instances Forewarn holds back (from the journal), the only ones a release may touch.
    """
    from forewarn.allocation.planner import plan_actions

    decisions = engine.decide(
        scores, instances, tasks, now=now, model_fresh=model_fresh, features=features, stale=stale, held=held
    )
    risk = {s.instance_id: s.probability for s in scores}
    allocation = plan_actions(decisions, instances, tasks, risk, policy.velocity_limits())
    mode = PolicyMode(policy.mode)
    plan = Plan(
        policy=policy.name,
        mode=mode,
        model_version=model_version,
        actions=allocation.actions,
        notes=list(allocation.explanations),
        created_at=now,
    )
    high = sum(1 for band in engine.last_bands.values() if band == Band.HIGH)
    plan, guard_state = enforce(
        plan, policy, fleet_size=len(instances), high_risk_count=high, state=guard_state, now=now
    )
    if plan.mode == PolicyMode.SHADOW:
        plan.state = PlanState.SHADOW
    elif plan.mode == PolicyMode.AUTO:
        plan.state = PlanState.APPROVED
    return CyclePlan(plan=plan, guard_state=guard_state, high_risk=high)


def apply_plan(journal: Journal, applier: Applier, plan: Plan) -> Plan:
    """Journal the plan before anything runs; run it when the policy's mode approved it. A plan with nothing
    to do ends SUCCEEDED at once rather than waiting APPROVED."""
    journal.save_plan(plan)
    if plan.state == PlanState.APPROVED and plan.actions:
        return applier.run(plan)
    if plan.state == PlanState.APPROVED:
        journal.transition(plan.plan_id, PlanState.RUNNING)
        journal.transition(plan.plan_id, PlanState.SUCCEEDED, note="no action needed")
        return journal.get(plan.plan_id)
    return plan


FINISHED = frozenset({PlanState.SUCCEEDED, PlanState.FAILED, PlanState.ROLLED_BACK, PlanState.CANCELLED})


def finish_cycle(plan: Plan, guard_state: GuardrailState) -> GuardrailState:
    """After the applier: the plan's migrations no longer count against the concurrent-migration cap."""
    if plan.state in FINISHED:
        guard_state.mark_finished([a.action_id for a in plan.actions])
    return guard_state
