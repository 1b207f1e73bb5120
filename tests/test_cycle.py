"""The one production cycle on a simulated clock: actions outlive their cycle, releases when risk falls,
restores after a failure, recovery of a plan a killed process left RUNNING, and freshness on one clock."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from forewarn import compose
from forewarn.clock import SimulatedClock
from forewarn.cloud import CloudAdapter
from forewarn.cycle import CycleResult, run_cycle
from forewarn.dataset import Dataset
from forewarn.policy.loader import load_policy
from forewarn.policy.schema import Policy
from forewarn.schemas import ActionState, ActionType, InstanceState, PlanState, RiskScore
from forewarn.service import Context
from forewarn.settings import PROJECT_ROOT, Settings
from tests import execution_support as support

postgres_db, database = support.postgres_db, support.database  # fixtures
T0 = datetime.fromisoformat("2024-03-01T00:00:00+00:00")
IDS = ["i0", "i1", "i2", "i3"]
DEFAULT = load_policy(PROJECT_ROOT / "policies" / "default.yaml")
POLICY = DEFAULT.model_copy(  # a fleet of four: the shares and the breaker must allow one instance a cycle
    update={
        "guardrails": DEFAULT.guardrails.model_copy(
            update={
                "max_fleet_percent_per_cycle": 50.0,
                "max_fleet_percent_per_window": DEFAULT.guardrails.max_fleet_percent_per_window.model_copy(
                    update={"percent": 100.0}
                ),
                "circuit_breaker": DEFAULT.guardrails.circuit_breaker.model_copy(
                    update={"max_high_risk_jump_percent": 100.0}
                ),
            }
        )
    }
)
CONTEXT = multiprocessing.get_context("forkserver")


def dataset() -> Dataset:
    """Four instances, each running one unit task (no workloads.csv)."""
    telemetry = pd.DataFrame({"instance_id": IDS, "timestamp": [pd.Timestamp(T0)] * len(IDS), "cpu": 0.5})
    failures = pd.DataFrame({"instance_id": pd.Series(dtype=str), "timestamp": pd.Series(dtype="M8[ns, UTC]")})
    return Dataset(telemetry=telemetry, failures=failures)


class Oracle:
    """Scores each instance with the probability set in ``risk`` (0 by default), from features of ``age``."""

    def __init__(self) -> None:
        self.risk: dict[str, float] = {}
        self.age: dict[str, timedelta] = {}

    def __call__(self, ids: Sequence[str], now: datetime) -> tuple[list[RiskScore], pd.DataFrame]:
        scores = [
            RiskScore(instance_id=i, timestamp=now, probability=self.risk.get(i, 0.0), horizon_minutes=60,
                      model_version="oracle")
            for i in ids
        ]  # fmt: skip
        stamps = [pd.Timestamp(now - self.age.get(i, timedelta(0))) for i in ids]
        features = pd.DataFrame({"instance_id": list(ids), "event_timestamp": stamps, "memory_mean_1h": 0.99})
        return scores, features


def context(home: Path, url: str = "", policy: Policy = POLICY) -> Context:
    return Context(settings=Settings(home=home, database_url=url), dry_run=False, given_policy=policy)


def cloud(ctx: Context) -> CloudAdapter:
    """The production simulated cloud, read from its state file as a new flow run would."""
    return compose.cloud(ctx, dataset(), at=T0)


def state_of(ctx: Context, instance_id: str) -> InstanceState:
    return next(i.state for i in cloud(ctx).list_instances() if i.instance_id == instance_id)


def test_actions_outlive_their_cycle_risk_that_falls_is_released_and_failed_work_restored(tmp_path: Path) -> None:
    ctx, oracle, clock = context(tmp_path), Oracle(), SimulatedClock(T0)
    oracle.risk["i1"] = 0.9
    first = run_cycle(context(tmp_path), cloud(ctx), clock.now(), scoring=oracle, model_version="oracle")
    assert first.plan is not None and first.plan.state == PlanState.SUCCEEDED
    assert "i1" in first.actions(ActionType.MIGRATE) and "i1" in first.actions(ActionType.CORDON)

    second = run_cycle(context(tmp_path), cloud(ctx), clock.advance(timedelta(minutes=10)), scoring=oracle)
    assert state_of(ctx, "i1") == InstanceState.CORDONED  # still in force: a new process, a new adapter
    assert not [t for t in cloud(ctx).list_tasks() if t.instance_id == "i1"]
    assert second.releases == 0

    oracle.risk["i1"] = 0.0  # risk falls; the release waits for the dwell and the hold's cooldown
    released: list[CycleResult] = []
    for _ in range(6):
        result = run_cycle(context(tmp_path), cloud(ctx), clock.advance(timedelta(minutes=10)), scoring=oracle)
        if result.releases:
            released.append(result)
    assert len(released) == 1 and released[0].actions(ActionType.RELEASE) == ["i1"]
    assert released[0].now - first.now >= timedelta(minutes=POLICY.guardrails.cooldown_minutes)
    release = next(a for a in released[0].plan.actions if a.type == ActionType.RELEASE)  # type: ignore[union-attr]
    assert release.reason.rule == "release-low-risk" and release.reason.band == "low"
    assert state_of(ctx, "i1") == InstanceState.RUNNING
    assert ctx.journal.holds() == set()

    failing = cloud(ctx)
    victim = next(t.instance_id for t in failing.list_tasks() if t.instance_id != "i1")
    failing.fail_instance(str(victim), at=clock.now())  # type: ignore[attr-defined]
    after = run_cycle(context(tmp_path), cloud(ctx), clock.advance(timedelta(minutes=10)), scoring=oracle)
    assert [p.state for p in after.restores] == [PlanState.SUCCEEDED]
    assert after.restores[0].policy == "restore-failed-instance"
    assert not [t for t in cloud(ctx).list_tasks() if t.instance_id == victim]


def _killed_cycle(home: str, url: str) -> None:
    """The child: one cycle that migrates off i1, killed (SIGKILL) right after the migration executed."""

    def hook(point: str, action_id: str | None) -> None:
        if point == "after-execute" and action_id is not None and action_id.startswith("kill-"):
            os.kill(os.getpid(), signal.SIGKILL)

    ctx = context(Path(home), url)
    oracle = Oracle()
    oracle.risk["i1"] = 0.9
    adapter = cloud(ctx)

    def scoring(ids: Sequence[str], now: datetime) -> tuple[list[RiskScore], pd.DataFrame]:
        return oracle(ids, now)

    original = ctx.journal.save_plan

    def save_plan(plan):  # type: ignore[no-untyped-def]
        for action in plan.actions:
            if action.type == ActionType.MIGRATE:
                action.action_id = "kill-" + action.action_id
        return original(plan)

    ctx.journal.save_plan = save_plan  # type: ignore[method-assign]
    run_cycle(ctx, adapter, T0, scoring=scoring, model_version="oracle", hook=hook)


@pytest.mark.slow
def test_a_plan_a_killed_process_left_running_is_finished_by_the_next_cycle(tmp_path: Path, database: str) -> None:
    child = CONTEXT.Process(target=_killed_cycle, args=(str(tmp_path), database))
    child.start()
    child.join(180)
    assert child.exitcode == -signal.SIGKILL, "the cycle was not killed mid-plan"
    ctx = context(tmp_path, database)
    (running,) = ctx.journal.list(PlanState.RUNNING)
    assert any(a.state == ActionState.RUNNING for a in running.actions)

    result = run_cycle(context(tmp_path, database), cloud(ctx), T0 + timedelta(minutes=10), scoring=Oracle())
    assert [p.plan_id for p in result.recovered] == [running.plan_id]
    finished = ctx.journal.get(running.plan_id)
    assert finished.state in (PlanState.SUCCEEDED, PlanState.ROLLED_BACK)
    assert ctx.journal.list(PlanState.RUNNING) == []
    migrations = [key for method, key in cloud(ctx).effects if method == "migrate"]  # type: ignore[attr-defined]
    assert len(migrations) == len(set(migrations))  # nothing ran twice
    ctx.repo.engine.dispose()


def test_stale_features_send_the_instance_to_the_fallback(tmp_path: Path) -> None:
    oracle = Oracle()
    oracle.risk.update({"i1": 0.9, "i3": 0.9})
    oracle.age["i1"] = timedelta(minutes=POLICY.fallback.max_feature_age_minutes + 5)
    ctx = context(tmp_path)
    result = run_cycle(ctx, cloud(ctx), T0, scoring=oracle, model_version="oracle")
    assert result.stale == ["i1"]
    assert {s.instance_id for s in result.scores} == {"i0", "i2", "i3"}  # i1's 0.9 came from old features
    assert result.plan is not None
    assert "i3" in result.actions(ActionType.MIGRATE) and "i1" not in {a.instance_id for a in result.plan.actions}


def test_features_from_after_the_cycle_time_are_not_used(tmp_path: Path) -> None:
    oracle = Oracle()
    oracle.risk["i2"] = 0.9
    oracle.age["i2"] = -timedelta(minutes=5)  # materialized past the time this cycle runs at (--at)
    ctx = context(tmp_path)
    result = run_cycle(ctx, cloud(ctx), T0, scoring=oracle, model_version="oracle")
    assert result.stale == ["i2"] and result.plan is not None and not result.plan.actions


def test_a_model_is_stale_by_the_end_of_its_data_against_the_cycle_clock(tmp_path: Path) -> None:
    from forewarn import service
    from forewarn.model.config import TrainConfig
    from forewarn.model.train import train_model
    from tests.test_model import FEATURES, planted_frame

    ctx = context(tmp_path)
    end = T0 - timedelta(days=7)
    model = train_model(planted_frame(seed=1), FEATURES, "label_60m", TrainConfig(max_rounds=20))
    card = ctx.registry.register(model, data_window=(end - timedelta(days=3), end), validation={"success": True})
    ctx.registry.promote(card.version)
    assert card.created_at > datetime.now(card.created_at.tzinfo) - timedelta(hours=1)  # built just now
    assert service.usable_model(ctx, T0)[1] is False  # a week after its data: stale, whatever the wall clock
    assert service.usable_model(ctx, end + timedelta(hours=1))[1] is True


def test_a_dry_run_cycle_reports_stranded_work_and_changes_nothing(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    ctx.dry_run = True
    fleet = cloud(ctx)
    fleet.fail_instance("i2", at=T0)  # type: ignore[attr-defined]
    oracle = Oracle()
    oracle.risk["i1"] = 0.9
    result = run_cycle(ctx, cloud(ctx), T0, scoring=oracle, model_version="oracle")
    assert result.stranded == ["i2"] and result.restores == []
    assert "not restored" in result.summary()
    assert result.plan is not None and all(a.state == ActionState.SKIPPED for a in result.plan.actions)
    assert state_of(ctx, "i1") == InstanceState.RUNNING  # planned, journalled, not done
