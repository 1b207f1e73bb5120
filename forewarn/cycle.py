"""The one cycle: recover, restore, score, decide, allocate, guard, journal, apply, release, remember.

The score-and-allocate flow, its Dask-sharded twin, ``forewarn replay`` and the demo all call
:func:`run_cycle`, each with the time of its clock, its cloud and its way of scoring:

1. recover: plans a crash left RUNNING are finished or reverted (:meth:`Applier.recover`);
2. restore: the work stranded on failed instances is moved to healthy ones, through the journal;
3. score: the latest features of every instance that is up, and the model's calibrated risk. Features
   older than the policy's ``fallback.max-feature-age-minutes`` at the cycle's time (or newer than it)
   count as missing: that instance is decided by the policy's fallback, not by the model; so is an instance
   whose features are out of range (absurd telemetry), with the reason in the plan's notes;
4. decide, allocate, guard: the policy's bands and rules, the allocator, the guardrails; an instance back
   in the low band gets a release of what Forewarn held there, as an action of the plan;
5. journal and apply: the plan is written before anything runs, then run when the mode approves it;
6. remember: the bands and guardrail budgets go back to the repository for the next cycle.

What a cycle did comes back as a :class:`CycleResult`, which flows publish (artifacts, metrics) and replay
scores against what then happened. Nothing here imports Prefect; flows pass a runner and a claim.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd

from forewarn import pipeline
from forewarn.cloud import CloudAdapter, capabilities
from forewarn.execution.applier import Applier, Hook
from forewarn.execution.restore import restore_failed_instance
from forewarn.execution.runner import ActionRunner
from forewarn.features.store import FeatureStoreGlue
from forewarn.model.explaining import ExplainChoice
from forewarn.model.scoring import TrainedModel
from forewarn.policy.breaker import BreakerState
from forewarn.policy.engine import PolicyEngine
from forewarn.schemas import ActionState, ActionType, Band, Instance, InstanceState, Plan, PlanState, RiskScore, Task
from forewarn.service import Context
from forewarn.stages import UNTIMED, Stages

Scoring = Callable[[Sequence[str], datetime], tuple[list[RiskScore], pd.DataFrame]]
"""Instance ids and the cycle's time -> their scores and the feature rows they came from (with
``instance_id`` and ``event_timestamp``); no score for an instance without features."""

Claim = Callable[[Plan, datetime], Plan]
"""Takes the plan's instances for this run; returns the plan less the actions on instances others hold."""


@dataclass
class OnlineScoring:
    """Production scoring: the Feast online store's latest features, scored by the champion (if fresh)."""

    glue: FeatureStoreGlue
    model: TrainedModel | None
    stages: Stages = UNTIMED
    explain: ExplainChoice | None = None
    """Which scores carry top features (:func:`forewarn.pipeline.explain_choice` of the policy); None: all."""

    def __call__(self, instance_ids: Sequence[str], now: datetime) -> tuple[list[RiskScore], pd.DataFrame]:
        with self.stages("online_read"):
            features = pipeline.online_features(self.glue, instance_ids, self.model)
            features = pipeline.set_aside_absurd(features, self.model.feature_names if self.model else None)
        with self.stages("score"):
            return pipeline.score(self.model, features, now=now, explain=self.explain), features


@dataclass
class FrameScoring:
    """Scoring over precomputed feature rows (replay): each instance's latest row at or before the cycle's
    time, which is what the online store holds once materialized up to then (a test shows the two equal)."""

    features: pd.DataFrame
    scorer: Callable[[pd.DataFrame, datetime], list[RiskScore]]
    _by_time: pd.DataFrame = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_time = self.features.sort_values("event_timestamp", kind="stable").reset_index(drop=True)

    def latest(self, instance_ids: Sequence[str], now: datetime) -> pd.DataFrame:
        upto = self._by_time[self._by_time["event_timestamp"] <= pd.Timestamp(now)]
        upto = upto[upto["instance_id"].isin(list(instance_ids))]
        return upto.groupby("instance_id", sort=False).tail(1).reset_index(drop=True)

    def __call__(self, instance_ids: Sequence[str], now: datetime) -> tuple[list[RiskScore], pd.DataFrame]:
        rows = pipeline.set_aside_absurd(self.latest(instance_ids, now))
        scorable = rows[rows["event_timestamp"].notna().to_numpy()]
        return (self.scorer(scorable, now) if len(scorable) else []), rows


def stale_instances(
    features: pd.DataFrame, instance_ids: Sequence[str], now: datetime, max_age: timedelta
) -> list[str]:
    """Instances whose latest features are missing, older than ``max_age`` at ``now``, or from after ``now``."""
    if "event_timestamp" not in features or features.empty:
        return list(instance_ids)
    stamps = pd.to_datetime(features["event_timestamp"], utc=True)
    at = pd.Timestamp(now)
    ok = stamps.notna() & (stamps <= at) & (stamps >= at - max_age)
    good = set(features.loc[ok.to_numpy(), "instance_id"].astype(str))
    return [i for i in instance_ids if i not in good]


@dataclass
class CycleResult:
    """What one cycle did, for flows to publish and replay to score."""

    now: datetime
    plan: Plan | None
    scores: list[RiskScore]
    features: pd.DataFrame
    bands: dict[str, Band]
    stale: list[str]
    recovered: list[Plan]
    restores: list[Plan]
    model_version: str | None
    model_fresh: bool
    seconds: float = 0.0
    stranded: list[str] = field(default_factory=list)
    """Failed instances still holding tasks that a dry run did not restore."""
    breaker: BreakerState | None = None
    """The circuit breaker after this cycle (None for a reactive cycle)."""

    def actions(self, kind: ActionType, state: ActionState = ActionState.SUCCEEDED) -> list[str]:
        """Instances on which an action of ``kind`` ended in ``state`` this cycle."""
        if self.plan is None:
            return []
        return [a.instance_id for a in self.plan.actions if a.type == kind and a.state == state]

    @property
    def releases(self) -> int:
        return len(self.actions(ActionType.RELEASE))

    def summary(self) -> str:
        if self.plan is None:
            return f"{len(self.restores)} restore(s); no plan (reactive)"
        state = self.plan.state
        parts = [f"scored {len(self.scores):,} instances", f"plan {self.plan.plan_id} {state}"]
        parts.append(f"{len(self.plan.actions)} action(s)")
        if self.stale:
            parts.append(f"{len(self.stale):,} with stale or no features (fallback)")
        if self.recovered:
            parts.append(f"{len(self.recovered)} interrupted plan(s) finished")
        if self.restores:
            parts.append(f"{len(self.restores)} restore(s)")
        if self.breaker is not None and self.breaker.open:
            parts.append(f"circuit breaker open: {self.breaker.reason}")
        if self.stranded:
            parts.append(f"dry run: work of failed {', '.join(self.stranded)} not restored")
        return "; ".join(parts)


def stranded_instances(instances: Sequence[Instance], tasks: Sequence[Task]) -> list[str]:
    """Failed instances that still hold tasks (of the cloud's listings)."""
    failed = {i.instance_id for i in instances if i.state == InstanceState.FAILED}
    return sorted({str(t.instance_id) for t in tasks if t.instance_id in failed})


def restore_failed(
    ctx: Context, cloud: CloudAdapter, applier: Applier, now: datetime, stranded: Sequence[str]
) -> list[Plan]:
    """Move the work stranded on the failed instances ``stranded`` to healthy ones (one journalled plan per
    instance).

    In dry run nothing is planned (a dry-run plan would be made again every cycle): the cycle reports the
    stranded instances instead.
    """
    if ctx.dry_run:
        return []
    return [restore_failed_instance(cloud, ctx.journal, i, now=now, applier=applier) for i in stranded]


def run_cycle(
    ctx: Context,
    cloud: CloudAdapter,
    now: datetime,
    *,
    scoring: Scoring | None,
    model_version: str | None = None,
    model_fresh: bool = True,
    runner: ActionRunner | None = None,
    claim: Claim | None = None,
    bake_seconds: float = 0.0,
    hook: Hook | None = None,
    stages: Stages = UNTIMED,
) -> CycleResult:
    """One cycle at ``now`` (see the module docstring); ``scoring=None`` is a reactive cycle: recover and
    restore only, no plan. ``hook`` is the applier's crash-point hook (tests kill the process there);
    ``stages`` times the policy, allocation, guardrails, journal and apply (the scoring times its own)."""
    started = time.monotonic()
    applier = Applier(
        cloud, ctx.journal, dry_run=ctx.dry_run, runner=runner, bake_seconds=bake_seconds, hook=hook, clock=lambda: now
    )
    recovered = applier.recover()
    instances, all_tasks = cloud.list_instances(), cloud.list_tasks()  # the fleet is listed once a cycle
    stranded = stranded_instances(instances, all_tasks)
    restores = restore_failed(ctx, cloud, applier, now, stranded)
    if restores:  # they moved work: the plan starts from the fleet as they left it
        instances, all_tasks = cloud.list_instances(), cloud.list_tasks()
    stranded = stranded if ctx.dry_run else []
    empty = pd.DataFrame({"instance_id": pd.Series(dtype=str)})
    if scoring is None:
        return CycleResult(
            now, None, [], empty, {}, [], recovered, restores, None, False, time.monotonic() - started, stranded
        )
    up = [i for i in instances if i.state not in (InstanceState.FAILED, InstanceState.TERMINATED)]
    up_ids = [i.instance_id for i in up]
    live = set(up_ids)
    tasks = [t for t in all_tasks if t.instance_id in live]
    scores, features = scoring(up_ids, now)
    unscorable: dict[str, str] = dict(features.attrs.get(pipeline.UNSCORABLE, {}))
    with stages("policy"):
        max_age = timedelta(minutes=ctx.policy.fallback.max_feature_age_minutes)
        stale = stale_instances(features, up_ids, now, max_age)
        if stale:
            late = set(stale)
            scores = [s for s in scores if s.instance_id not in late]
            features = features[~features["instance_id"].astype(str).isin(late)]
        engine: PolicyEngine = ctx.engine()
        fallback_features = pipeline.feature_map(features, ctx.policy.fallback.static_thresholds)
    with stages("guardrails"):
        guard_state, held = ctx.guard_state(now), ctx.journal.holds()
    planned = pipeline.plan_cycle(
        scores,
        up,
        tasks,
        engine=engine,
        policy=ctx.policy,
        guard_state=guard_state,
        now=now,
        model_version=model_version,
        model_fresh=model_fresh,
        features=fallback_features,
        stale=stale,
        held=held,
        can=capabilities(cloud),
        cloud=cloud.name,
        stages=stages,
    )
    planned.plan.notes += [f"{i}: {why}" for i, why in sorted(unscorable.items()) if i in live]
    if claim is not None and planned.plan.state == PlanState.APPROVED and planned.plan.actions:
        planned.plan = claim(planned.plan, now)
    plan = pipeline.apply_plan(ctx.journal, applier, planned.plan, stages=stages)
    with stages("guardrails"):
        guard_state = pipeline.finish_cycle(plan, planned.guard_state)
        ctx.save_state(engine=engine, guard_state=guard_state)
    return CycleResult(
        now=now,
        plan=plan,
        scores=scores,
        features=features,
        bands=dict(engine.last_bands),
        stale=stale,
        recovered=recovered,
        restores=restores,
        model_version=model_version,
        model_fresh=model_fresh,
        seconds=time.monotonic() - started,
        stranded=stranded,
        breaker=guard_state.breaker,
    )
