"""Closed-loop replay: a dataset's failures strike in simulated time while a policy acts on its scores.

Each cycle: instances whose recovery is over come back; failures since the last cycle strike, interrupting
the tasks still on the failed instance (which are then restored elsewhere, as any operator would); then,
for a predictive run, every instance that is up is scored, the policy plans, the guardrails trim, the plan is
journalled and the applier runs it through the simulated cloud. A reactive run skips the scoring and planning.

Interruption cost of a task: the work since its last checkpoint plus the restart time, in task-hours.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from adapters.simulated import SimulatedAdapter
from forewarn.dataset import Dataset
from forewarn.execution.applier import Applier
from forewarn.execution.journal import Journal
from forewarn.execution.rollback import restore_failed_instance
from forewarn.model.train import TrainedModel
from forewarn.pipeline import finish_cycle, plan_cycle
from forewarn.policy.engine import PolicyEngine
from forewarn.policy.guardrails import GuardrailState
from forewarn.policy.schema import Policy
from forewarn.schemas import ActionState, ActionType, InstanceState, PlanState, Task
from forewarn.service import instances_from, tasks_at
from forewarn.store import Repository


@dataclass
class ReplayConfig:
    """How the replay models time and cost."""

    cycle_minutes: int = 10
    checkpoint_minutes: int = 60
    restart_minutes: int = 10
    cordon_expiry_minutes: int = 120


@dataclass
class RunResult:
    """What one policy did over the replayed window."""

    name: str
    failures: int = 0
    failures_hitting_work: int = 0
    tasks_interrupted: int = 0
    interrupted_task_hours: float = 0.0
    predicted_in_time: int = 0
    lead_minutes: list[float] = field(default_factory=list)
    migrations: int = 0
    unneeded_migrations: int = 0
    scale_actions: int = 0
    plans: int = 0
    capacity_overhead: float = 0.0
    timeline: list[tuple[datetime, float]] = field(default_factory=list)

    def summary(self) -> dict[str, float | int]:
        lead = pd.Series(self.lead_minutes, dtype=float)
        return {
            "failures": self.failures,
            "failures_predicted_in_time": self.predicted_in_time,
            "median_lead_minutes": float(lead.median()) if len(lead) else 0.0,
            "failures_hitting_work": self.failures_hitting_work,
            "tasks_interrupted": self.tasks_interrupted,
            "interrupted_task_hours": round(self.interrupted_task_hours, 3),
            "migrations": self.migrations,
            "unneeded_migrations": self.unneeded_migrations,
            "scale_actions": self.scale_actions,
            "plans": self.plans,
            "capacity_overhead": round(self.capacity_overhead, 4),
        }


def lost_hours(task: Task, at: datetime, config: ReplayConfig) -> float:
    """Work lost when ``task`` is interrupted at ``at``: since its last checkpoint, plus the restart."""
    started = task.start or at
    since_start = max((at - started).total_seconds() / 60.0, 0.0)
    return (since_start % config.checkpoint_minutes + config.restart_minutes) / 60.0


def features_at(
    features: pd.DataFrame, instance_ids: list[str], at: pd.Timestamp, tolerance: pd.Timedelta
) -> pd.DataFrame:
    """The latest feature row of each instance at or before ``at`` (within ``tolerance``)."""
    window = features[(features["event_timestamp"] <= at) & (features["event_timestamp"] > at - tolerance)]
    window = window[window["instance_id"].isin(instance_ids)]
    return window.sort_values("event_timestamp").groupby("instance_id", sort=False).tail(1).reset_index(drop=True)


class Replay:
    """Replays ``dataset`` from ``start`` to its end, once per policy, on a fresh simulated fleet each time."""

    def __init__(
        self,
        dataset: Dataset,
        features: pd.DataFrame,
        *,
        start: pd.Timestamp,
        workdir: Path,
        config: ReplayConfig | None = None,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> None:
        self.dataset = dataset
        self.features = features
        self.start = start
        self.workdir = workdir
        self.config = config or ReplayConfig()
        self.progress = progress
        self.end = dataset.end
        span = (self.end - start) / pd.Timedelta(minutes=self.config.cycle_minutes)
        self.cycles = [start + pd.Timedelta(minutes=self.config.cycle_minutes * k) for k in range(int(span) + 1)]
        f = dataset.failures
        self.failures = f[(f["timestamp"] >= start) & (f["timestamp"] <= self.end)].reset_index(drop=True)

    def run(self, name: str, *, model: TrainedModel | None = None, policy: Policy | None = None) -> RunResult:
        """One replay; with no model (or no policy) the run is reactive: recovery only."""
        cfg, result = self.config, RunResult(name=name)
        adapter = SimulatedAdapter(instances_from(self.dataset), tasks_at(self.dataset, self.start), dry_run=False)
        self.workdir.mkdir(parents=True, exist_ok=True)
        db = self.workdir / f"journal-{name}.db"
        db.unlink(missing_ok=True)
        repo = Repository(f"sqlite:///{db.resolve()}")
        repo.create_all()
        journal = Journal(repo)
        engine = PolicyEngine(policy) if policy else None
        guard = GuardrailState()
        alerts: dict[str, list[datetime]] = defaultdict(list)
        migrated_from: list[tuple[str, datetime]] = []
        cordoned_at: dict[str, datetime] = {}
        down_until: dict[str, datetime] = {}
        previous = self.start - pd.Timedelta(minutes=cfg.cycle_minutes)
        horizon = timedelta(minutes=(policy.horizon_minutes if policy else 60))
        overhead: list[float] = []
        for k, now_ts in enumerate(self.cycles):
            now = now_ts.to_pydatetime()
            for inst, until in list(down_until.items()):
                if until <= now:
                    adapter.recover_instance(inst)
                    del down_until[inst]
            for inst, since in list(cordoned_at.items()):
                if now - since >= timedelta(minutes=cfg.cordon_expiry_minutes) and adapter.health(inst):
                    adapter.uncordon(inst, key=f"expire-{inst}-{now:%Y%m%d%H%M}")
                    del cordoned_at[inst]
            strikes = self.failures[(self.failures["timestamp"] > previous) & (self.failures["timestamp"] <= now_ts)]
            for row in strikes.itertuples(index=False):
                self._strike(adapter, journal, row, alerts, result, down_until, horizon)
                cordoned_at.pop(str(row.instance_id), None)
            if engine is not None and model is not None and policy is not None:
                guard = self._plan_and_act(
                    adapter, journal, engine, policy, model, guard, now_ts, alerts, migrated_from, cordoned_at, result
                )
            overhead.append(self._overhead(adapter))
            result.timeline.append((now, result.interrupted_task_hours))
            previous = now_ts
            if self.progress:
                self.progress(name, k + 1, len(self.cycles))
        failed_after = self.failures.groupby("instance_id")["timestamp"].apply(list).to_dict()
        result.unneeded_migrations = sum(
            1
            for inst, when in migrated_from
            if not any(when <= ts.to_pydatetime() <= when + horizon for ts in failed_after.get(inst, []))
        )
        result.capacity_overhead = float(pd.Series(overhead).mean()) if overhead else 0.0
        return result

    def _strike(
        self,
        adapter: SimulatedAdapter,
        journal: Journal,
        row: object,
        alerts: dict[str, list[datetime]],
        result: RunResult,
        down_until: dict[str, datetime],
        horizon: timedelta,
    ) -> None:
        inst = str(row.instance_id)  # type: ignore[attr-defined]
        at = pd.Timestamp(row.timestamp).to_pydatetime()  # type: ignore[attr-defined]
        if not adapter.health(inst) and inst in down_until:
            return
        result.failures += 1
        fired = [t for t in alerts.get(inst, []) if at - horizon <= t < at]
        if fired:
            result.predicted_in_time += 1
            result.lead_minutes.append((at - min(fired)).total_seconds() / 60.0)
        on_it = [t for t in adapter.list_tasks() if t.instance_id == inst]
        if on_it:
            result.failures_hitting_work += 1
            result.tasks_interrupted += len(on_it)
            result.interrupted_task_hours += sum(lost_hours(t, at, self.config) for t in on_it)
        adapter.fail_instance(inst, at=at)
        recovery = row.recovery_minutes if pd.notna(row.recovery_minutes) else 60.0  # type: ignore[attr-defined]
        down_until[inst] = at + timedelta(minutes=float(recovery))
        if on_it:
            applier = Applier(adapter, journal, dry_run=False, bake_seconds=0)
            restore_failed_instance(adapter, journal, inst, now=at, applier=applier)

    def _plan_and_act(
        self,
        adapter: SimulatedAdapter,
        journal: Journal,
        engine: PolicyEngine,
        policy: Policy,
        model: TrainedModel,
        guard: GuardrailState,
        now_ts: pd.Timestamp,
        alerts: dict[str, list[datetime]],
        migrated_from: list[tuple[str, datetime]],
        cordoned_at: dict[str, datetime],
        result: RunResult,
    ) -> GuardrailState:
        now = now_ts.to_pydatetime()
        up = [i for i in adapter.list_instances() if i.state != InstanceState.FAILED]
        tolerance = pd.Timedelta(minutes=2 * self.config.cycle_minutes)
        feats = features_at(self.features, [i.instance_id for i in up], now_ts, tolerance)
        if feats.empty:
            return guard
        scores = model.score(feats, timestamp=now)
        for s in scores:
            if s.probability >= policy.bands.high.enter:
                alerts[s.instance_id].append(now)
        up_ids = {i.instance_id for i in up}
        cycle = plan_cycle(
            scores,
            up,
            [t for t in adapter.list_tasks() if t.instance_id in up_ids],
            engine=engine,
            policy=policy,
            guard_state=guard,
            now=now,
            model_version=model.version,
        )
        plan = cycle.plan
        journal.save_plan(plan)
        result.plans += 1
        if plan.state == PlanState.APPROVED and plan.actions:
            plan = Applier(adapter, journal, dry_run=False, bake_seconds=0).run(plan)
        for action in plan.actions:
            if action.state != ActionState.SUCCEEDED:
                continue
            if action.type == ActionType.MIGRATE:
                result.migrations += 1
                migrated_from.append((action.instance_id, now))
            elif action.type == ActionType.CORDON:
                cordoned_at[action.instance_id] = now
            elif action.type in (ActionType.AUTOSCALE, ActionType.SCALE_BACK):
                result.scale_actions += 1
        return finish_cycle(plan, cycle.guard_state)

    @staticmethod
    def _overhead(adapter: SimulatedAdapter) -> float:
        """Share of the fleet's CPU capacity held back: cordoned instances and reserved buffers."""
        instances = adapter.list_instances()
        total = sum(i.cpu_capacity for i in instances) or 1.0
        held = sum(i.cpu_capacity for i in instances if i.state == InstanceState.CORDONED)
        return held / total
