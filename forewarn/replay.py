"""Closed-loop replay: a dataset's failures strike in simulated time while a policy acts on its scores.

Each cycle: instances whose repair is over come back (uncordoned, buffers and sizes restored); tasks that
ended leave and tasks that started arrive (from workloads.csv; without one every instance carries one unit
task all along); failures since the last cycle strike, interrupting every task still on the failed instance
and every task whose migration off it had not finished (``migration_minutes``); the interrupted work is then
restored elsewhere, as any operator would. A predictive run then scores every instance that is up, the
policy plans, the guardrails trim, the plan is journalled and the applier runs it in the simulated cloud.
Instances the policy held back (cordoned, scaled back, buffered) are released when the policy puts them
back in the low band; ``cordon_expiry_minutes`` is only a backstop for instances that stop being scored.
A reactive run skips scoring and planning: recovery after failure only.

Interruption cost of a task: the work since its last checkpoint plus the restart time, in task-hours.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from adapters.fleet import root_id
from adapters.simulated import SimulatedAdapter
from forewarn.dataset import Dataset
from forewarn.execution.applier import Applier
from forewarn.execution.journal import Journal
from forewarn.execution.rollback import restore_failed_instance
from forewarn.model.evaluate import static_baseline
from forewarn.model.train import TrainedModel
from forewarn.pipeline import finish_cycle, plan_cycle
from forewarn.policy.engine import PolicyEngine
from forewarn.policy.guardrails import GuardrailState
from forewarn.policy.schema import Policy
from forewarn.replay_support import ReplayConfig, RunResult, arrivals, features_at, lost_hours, overhead
from forewarn.schemas import ActionState, ActionType, Band, InstanceState, PlanState, RiskScore, Task
from forewarn.service import instances_from, tasks_at
from forewarn.store import Repository

Scorer = Callable[[pd.DataFrame, datetime], list[RiskScore]]
"""Scores the latest feature rows of the instances that are up, at a cycle's time."""

__all__ = ["Replay", "ReplayConfig", "RunResult", "Scorer", "lost_hours", "model_scorer", "static_scorer"]


def model_scorer(model: TrainedModel) -> Scorer:
    """The trained model's calibrated scores. One thread: a cycle scores a few hundred rows, and on a busy
    machine XGBoost's thread pool costs more than it saves on batches that small."""
    model.booster.set_param({"nthread": 1})
    return lambda features, now: model.score(features, timestamp=now)


def static_scorer(thresholds: dict[str, float], horizon_minutes: int) -> Scorer:
    """Fixed thresholds on current features: probability 1 where any is exceeded, else 0."""

    def score(features: pd.DataFrame, now: datetime) -> list[RiskScore]:
        flagged = static_baseline(features, thresholds)
        return [
            RiskScore(
                instance_id=str(i),
                timestamp=now,
                probability=float(p),
                horizon_minutes=horizon_minutes,
                model_version="static-thresholds",
            )
            for i, p in zip(flagged["instance_id"], flagged["probability"], strict=True)
        ]

    return score


@dataclass
class _Run:
    """The mutable state of one replay run."""

    adapter: SimulatedAdapter
    journal: Journal
    result: RunResult
    horizon: timedelta
    engine: PolicyEngine | None = None
    guard: GuardrailState = field(default_factory=GuardrailState)
    alerts: dict[str, list[datetime]] = field(default_factory=lambda: defaultdict(list))
    migrated_from: list[tuple[str, datetime]] = field(default_factory=list)
    in_flight: list[tuple[str, datetime, list[Task]]] = field(default_factory=list)
    held: dict[str, datetime] = field(default_factory=dict)
    down_until: dict[str, datetime] = field(default_factory=dict)


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
        self.dataset, self.features, self.start, self.workdir = dataset, features, start, workdir
        self.config = config or ReplayConfig()
        self.progress = progress
        self.end = dataset.end
        span = (self.end - start) / pd.Timedelta(minutes=self.config.cycle_minutes)
        self.cycles = [start + pd.Timedelta(minutes=self.config.cycle_minutes * k) for k in range(int(span) + 1)]
        f = dataset.failures
        self.failures = f[(f["timestamp"] >= start) & (f["timestamp"] <= self.end)].reset_index(drop=True)
        self.arrivals, self.ends = arrivals(dataset, start)

    def run(
        self,
        name: str,
        *,
        model: TrainedModel | None = None,
        policy: Policy | None = None,
        scorer: Scorer | None = None,
    ) -> RunResult:
        """One replay; with no scorer (nor model) or no policy the run is reactive: recovery only."""
        scorer = scorer or (model_scorer(model) if model is not None else None)
        run = self._fresh(name, policy)
        previous = self.start - pd.Timedelta(minutes=self.config.cycle_minutes)
        base = sum(i.cpu_capacity for i in run.adapter.list_instances()) or 1.0
        shares = run.result.overhead_timeline
        for k, now_ts in enumerate(self.cycles):
            now = now_ts.to_pydatetime()
            self._recover(run, now)
            self._churn(run, previous, now_ts)
            strikes = self.failures[(self.failures["timestamp"] > previous) & (self.failures["timestamp"] <= now_ts)]
            for row in strikes.itertuples(index=False):
                self._strike(
                    run, str(row.instance_id), pd.Timestamp(row.timestamp).to_pydatetime(), row.recovery_minutes
                )
            if run.engine is not None and scorer is not None and policy is not None:
                self._plan_and_act(run, policy, scorer, now_ts, model.version if model else "static-thresholds")
            shares.append(overhead(run.adapter.state, base))
            run.result.timeline.append((now, run.result.interrupted_task_hours))
            previous = now_ts
            if self.progress:
                self.progress(name, k + 1, len(self.cycles))
        failed_at = self.failures.groupby("instance_id")["timestamp"].apply(list).to_dict()
        run.result.unneeded_migrations = sum(
            1 for inst, when in run.migrated_from
            if not any(when <= ts.to_pydatetime() <= when + run.horizon for ts in failed_at.get(inst, []))
        )  # fmt: skip
        run.result.capacity_overhead = float(pd.Series(shares).mean()) if shares else 0.0
        return run.result

    def _fresh(self, name: str, policy: Policy | None) -> _Run:
        adapter = SimulatedAdapter(instances_from(self.dataset), tasks_at(self.dataset, self.start), dry_run=False)
        self.workdir.mkdir(parents=True, exist_ok=True)
        db = self.workdir / f"journal-{name}.db"
        db.unlink(missing_ok=True)
        repo = Repository(f"sqlite:///{db.resolve()}")
        repo.create_all()
        horizon = timedelta(minutes=policy.horizon_minutes if policy else 60)
        engine = PolicyEngine(policy) if policy else None
        return _Run(adapter=adapter, journal=Journal(repo), result=RunResult(name=name), horizon=horizon, engine=engine)

    def _recover(self, run: _Run, now: datetime) -> None:
        for inst, until in list(run.down_until.items()):
            if until <= now:
                run.adapter.recover_instance(inst)
                self._release(run, inst, f"repaired-{inst}-{now:%Y%m%d%H%M}")
                del run.down_until[inst]
        expiry = self.config.cordon_expiry_minutes
        for inst, since in list(run.held.items()):
            if expiry is not None and now - since >= timedelta(minutes=expiry) and run.adapter.health(inst):
                self._release(run, inst, f"expire-{inst}-{now:%Y%m%d%H%M}")

    @staticmethod
    def _release(run: _Run, inst: str, key: str) -> None:
        """Give an instance back its full capacity: uncordon, no buffer, nominal size."""
        state = run.adapter.state
        if inst in state.cordoned:
            run.adapter.uncordon(inst, key=f"{key}-uncordon")
        if state.reserved.get(inst, 0.0) > 0:
            run.adapter.reserve(inst, 0.0, key=f"{key}-unreserve")
        if inst in state.nominal:
            run.adapter.scale(inst, factor=1.0, key=f"{key}-size")
            del state.nominal[inst]
        run.held.pop(inst, None)

    def _churn(self, run: _Run, previous: pd.Timestamp, now: pd.Timestamp) -> None:
        """Tasks that ended leave; tasks that started arrive on their instance, or the freest one up."""
        state = run.adapter.state
        for task_id in [t for t in state.tasks if self.ends.get(root_id(t), now + pd.Timedelta(1)) <= now]:
            del state.tasks[task_id]
        new = self.arrivals[(self.arrivals["start"] > previous) & (self.arrivals["start"] <= now)]
        for task in new["task"]:
            where = task.instance_id
            if where in state.failed or where in state.cordoned or where not in state.instances:
                up = [i for i in state.instances if i not in state.failed and i not in state.cordoned]
                where = max(up, key=lambda i: state.free(i)[0]) if up else where
            state.tasks[task.task_id] = task.model_copy(update={"instance_id": where})

    def _strike(self, run: _Run, inst: str, at: datetime, recovery: float | None) -> None:
        adapter, result = run.adapter, run.result
        if inst in run.down_until or inst not in adapter.state.instances:
            return
        result.failures += 1
        fired = [t for t in run.alerts.get(inst, []) if at - run.horizon <= t < at]
        if fired:
            result.predicted_in_time += 1
            result.lead_minutes.append((at - min(fired)).total_seconds() / 60.0)
        on_it = [t for t in adapter.list_tasks() if t.instance_id == inst]
        moving = [t for src, until, tasks in run.in_flight if src == inst and at < until for t in tasks]
        run.in_flight = [entry for entry in run.in_flight if entry[1] > at]
        if on_it or moving:
            result.failures_hitting_work += 1
            result.tasks_interrupted += len(on_it) + len(moving)
            result.interrupted_task_hours += sum(lost_hours(t, at, self.config) for t in on_it + moving)
        adapter.fail_instance(inst, at=at)
        repair = 60.0 if recovery is None or pd.isna(recovery) else float(recovery)
        run.down_until[inst] = at + timedelta(minutes=repair)
        if on_it:
            applier = Applier(adapter, run.journal, dry_run=False, bake_seconds=0)
            restore_failed_instance(adapter, run.journal, inst, now=at, applier=applier)

    def _plan_and_act(self, run: _Run, policy: Policy, scorer: Scorer, now_ts: pd.Timestamp, version: str) -> None:
        assert run.engine is not None
        adapter, now = run.adapter, now_ts.to_pydatetime()
        up = [i for i in adapter.list_instances() if i.state != InstanceState.FAILED]
        tolerance = pd.Timedelta(minutes=2 * self.config.cycle_minutes)
        feats = features_at(self.features, [i.instance_id for i in up], now_ts, tolerance)
        if feats.empty:
            return
        scores = scorer(feats, now)
        for s in scores:
            if s.probability >= policy.bands.high.enter:
                run.alerts[s.instance_id].append(now)
        up_ids = {i.instance_id for i in up}
        tasks = adapter.list_tasks()
        cycle = plan_cycle(
            scores, up, [t for t in tasks if t.instance_id in up_ids], engine=run.engine, policy=policy,
            guard_state=run.guard, now=now, model_version=version,
        )  # fmt: skip
        plan = cycle.plan
        run.journal.save_plan(plan)
        run.result.plans += 1
        if plan.state == PlanState.APPROVED and plan.actions:
            plan = Applier(adapter, run.journal, dry_run=False, bake_seconds=0).run(plan)
        by_id = {t.task_id: t for t in tasks}
        for action in (a for a in plan.actions if a.state == ActionState.SUCCEEDED):
            if action.type == ActionType.MIGRATE:
                run.result.migrations += 1
                run.result.migrated_task_hours += len(action.task_ids) * self.config.migration_minutes / 60.0
                run.migrated_from.append((action.instance_id, now))
                until = now + timedelta(minutes=self.config.migration_minutes)
                run.in_flight.append((action.instance_id, until, [by_id[t] for t in action.task_ids if t in by_id]))
            if action.type in (ActionType.AUTOSCALE, ActionType.SCALE_BACK):
                run.result.scale_actions += 1
            if action.type in (ActionType.CORDON, ActionType.SCALE_BACK, ActionType.RESERVE_BUFFER):
                run.held.setdefault(action.instance_id, now)
        for inst in [i for i in run.held if run.engine.last_bands.get(i) == Band.LOW and adapter.health(i)]:
            self._release(run, inst, f"low-{inst}-{now:%Y%m%d%H%M}")
        run.guard = finish_cycle(plan, cycle.guard_state)
