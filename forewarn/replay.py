"""Closed-loop replay: the production cycle under a simulated clock, over a simulated fleet whose state
persists between cycles, while a dataset's failures strike.

This module only drives the fleet and scores the outcome; every decision is the one cycle's
(:func:`forewarn.cycle.run_cycle`: recover, restore, score, decide, allocate, guard, journal, apply,
release). At each tick of the clock: instances whose repair is over come back as new; tasks that ended
leave and tasks that started arrive (from workloads.csv; without one every instance carries one unit task
all along); failures since the last tick strike, interrupting every task still on the failed instance and
every task whose migration off it had not finished (``migration_minutes``). Then the cycle runs: it
restores the interrupted work elsewhere and, in a predictive run, scores, plans and acts, releasing what
it held once an instance is back in the low band. A reactive run's cycle only restores.

Each run journals its plans in its own FOREWARN_HOME (``forewarn plan list`` shows them there).
Interruption cost of a task: the work since its last checkpoint plus the restart time, in task-hours.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from forewarn.clock import SimulatedClock
from forewarn.cloud import SimulatedCloud, root_id
from forewarn.compose import simulated_fleet
from forewarn.cycle import CycleResult, FrameScoring, run_cycle
from forewarn.dataset import Dataset
from forewarn.dataset_fleet import instances_from, tasks_at
from forewarn.model.evaluate import static_baseline
from forewarn.model.scoring import TrainedModel
from forewarn.policy.schema import Policy
from forewarn.replay_support import ReplayConfig, RunResult, arrivals, lost_hours, overhead
from forewarn.schemas import ActionState, ActionType, RiskScore, Task
from forewarn.service import Context
from forewarn.settings import Settings

Scorer = Callable[[pd.DataFrame, datetime], list[RiskScore]]
"""Scores the latest feature rows of the instances that are up, at a cycle's time."""

__all__ = ["Replay", "ReplayConfig", "RunResult", "Scorer", "lost_hours", "model_scorer", "static_scorer"]


def model_scorer(model: TrainedModel) -> Scorer:
    """The trained model's calibrated scores. One thread: a cycle scores a few hundred rows, and on a busy
    machine XGBoost's thread pool costs more than it saves on batches that small."""
    model.set_threads(1)
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
    """The mutable state of one replay run: its fleet, its context and what happened so far."""

    fleet: SimulatedCloud
    ctx: Context
    result: RunResult
    horizon: timedelta
    alerts: dict[str, list[datetime]] = field(default_factory=lambda: defaultdict(list))
    migrated_from: list[tuple[str, datetime]] = field(default_factory=list)
    in_flight: list[tuple[str, datetime, list[Task]]] = field(default_factory=list)
    down_until: dict[str, datetime] = field(default_factory=dict)
    on_fleet: set[str] = field(default_factory=set)


class Replay:
    """Replays ``dataset`` from ``start`` to its end, once per policy, on a fresh simulated fleet each time.

    Args:
        workdir: each run's FOREWARN_HOME is ``workdir/<run name>`` unless :meth:`run` is given a home.
    """

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
        home: Path | None = None,
    ) -> RunResult:
        """One replay; with no scorer (nor model) or no policy the run is reactive: recovery only."""
        scorer = scorer or (model_scorer(model) if model is not None else None)
        predictive = scorer is not None and policy is not None
        version = (model.version if model is not None else "static-thresholds") if predictive else None
        scoring = FrameScoring(self.features, scorer) if predictive and scorer is not None else None
        run = self._fresh(name, policy, home)
        clock = SimulatedClock(self.start.to_pydatetime() - timedelta(minutes=self.config.cycle_minutes))
        base = sum(i.cpu_capacity for i in run.fleet.list_instances()) or 1.0
        shares = run.result.overhead_timeline
        for k, now_ts in enumerate(self.cycles):
            previous = pd.Timestamp(clock.now())
            now = clock.set(now_ts.to_pydatetime())
            self._repair(run, now)
            self._churn(run, previous, now_ts)
            strikes = self.failures[(self.failures["timestamp"] > previous) & (self.failures["timestamp"] <= now_ts)]
            for row in strikes.itertuples(index=False):
                self._strike(
                    run, str(row.instance_id), pd.Timestamp(row.timestamp).to_pydatetime(), row.recovery_minutes
                )
            cycle = run_cycle(run.ctx, run.fleet, now, scoring=scoring, model_version=version, model_fresh=True)
            self._account(run, cycle, policy)
            shares.append(overhead(run.fleet.list_instances(), base))
            run.result.timeline.append((now, run.result.interrupted_task_hours))
            if self.progress:
                self.progress(name, k + 1, len(self.cycles))
        failed_at = self.failures.groupby("instance_id")["timestamp"].apply(list).to_dict()
        run.result.unneeded_migrations = sum(
            1 for inst, when in run.migrated_from
            if not any(when <= ts.to_pydatetime() <= when + run.horizon for ts in failed_at.get(inst, []))
        )  # fmt: skip
        run.result.capacity_overhead = float(pd.Series(shares).mean()) if shares else 0.0
        run.result.home = str(run.ctx.settings.home)
        return run.result

    def _fresh(self, name: str, policy: Policy | None, home: Path | None) -> _Run:
        where = home if home is not None else self.workdir / name
        where.mkdir(parents=True, exist_ok=True)
        if home is None:  # a run's own home starts empty; a given home keeps its journal and adds to it
            (where / "forewarn.db").unlink(missing_ok=True)
        settings = Settings(home=where, database_url="")
        ctx = Context(settings=settings, dry_run=False, given_policy=policy, ephemeral_state=True)
        fleet = simulated_fleet(instances_from(self.dataset), tasks_at(self.dataset, self.start))
        horizon = timedelta(minutes=policy.horizon_minutes if policy else 60)
        on_fleet = {t.task_id for t in fleet.list_tasks()}
        return _Run(fleet=fleet, ctx=ctx, result=RunResult(name=name), horizon=horizon, on_fleet=on_fleet)

    @staticmethod
    def _repair(run: _Run, now: datetime) -> None:
        for inst, until in list(run.down_until.items()):
            if until <= now:
                run.fleet.repair_instance(inst)
                del run.down_until[inst]

    def _churn(self, run: _Run, previous: pd.Timestamp, now: pd.Timestamp) -> None:
        """Tasks that ended leave; tasks that started arrive on their instance, or the freest one up."""
        fleet = run.fleet
        for task in fleet.list_tasks():
            if self.ends.get(root_id(task.task_id), now + pd.Timedelta(1)) <= now:
                fleet.end_task(task.task_id)
        new = self.arrivals[(self.arrivals["start"] > previous) & (self.arrivals["start"] <= now)]
        if new.empty:
            return
        instances = {i.instance_id: i for i in fleet.list_instances()}
        up = [i for i, inst in instances.items() if inst.state.value == "running"]
        for task in new["task"]:
            where = task.instance_id
            if where not in up:
                where = max(up, key=lambda i: fleet.free(i)[0]) if up else where
            fleet.add_task(task.model_copy(update={"instance_id": where}))

    def _strike(self, run: _Run, inst: str, at: datetime, recovery: float | None) -> None:
        fleet, result = run.fleet, run.result
        known = {i.instance_id for i in fleet.list_instances()}
        if inst in run.down_until or inst not in known:
            return
        result.failures += 1
        fired = [t for t in run.alerts.get(inst, []) if at - run.horizon <= t < at]
        if fired:
            result.predicted_in_time += 1
            result.lead_minutes.append((at - min(fired)).total_seconds() / 60.0)
        on_it = [t for t in fleet.list_tasks() if t.instance_id == inst]
        moving = [t for src, until, tasks in run.in_flight if src == inst and at < until for t in tasks]
        run.in_flight = [entry for entry in run.in_flight if entry[1] > at]
        if on_it or moving:
            result.failures_hitting_work += 1
            result.tasks_interrupted += len(on_it) + len(moving)
            result.interrupted_task_hours += sum(lost_hours(t, at, self.config) for t in on_it + moving)
        fleet.fail_instance(inst, at=at)
        repair = 60.0 if recovery is None or pd.isna(recovery) else float(recovery)
        run.down_until[inst] = at + timedelta(minutes=repair)

    def _account(self, run: _Run, cycle: CycleResult, policy: Policy | None) -> None:
        """What the cycle did, in the replay's terms: alerts, migrations in flight, scale actions, releases."""
        result, now = run.result, cycle.now
        result.restores += sum(1 for plan in cycle.restores if plan.actions)
        if cycle.plan is None or policy is None:
            return
        result.plans += 1
        for s in cycle.scores:
            if s.probability >= policy.bands.high.enter:
                run.alerts[s.instance_id].append(now)
        by_id = {t.task_id: t for t in run.fleet.list_tasks()}
        for action in (a for a in cycle.plan.actions if a.state == ActionState.SUCCEEDED):
            if action.type == ActionType.MIGRATE:
                result.migrations += 1
                result.migrated_task_hours += len(action.task_ids) * self.config.migration_minutes / 60.0
                run.migrated_from.append((action.instance_id, now))
                until = now + timedelta(minutes=self.config.migration_minutes)
                moved = [by_id[t] for t in action.task_ids if t in by_id]
                run.in_flight.append((action.instance_id, until, moved))
            elif action.type in (ActionType.AUTOSCALE, ActionType.SCALE_BACK):
                result.scale_actions += 1
            elif action.type == ActionType.RELEASE:
                result.releases += 1
