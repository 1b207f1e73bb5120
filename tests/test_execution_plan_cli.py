"""`forewarn plan list|show|approve|cancel` against the journal of FOREWARN_HOME or FOREWARN_DATABASE_URL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapters.faults import ALWAYS
from adapters.simulated import SimulatedAdapter
from forewarn import compose, service
from forewarn.cli import app
from forewarn.errors import AdapterError, PlanError
from forewarn.execution.journal import Journal
from forewarn.schemas import ActionReason, Band, FeatureContribution, Plan, PlanState
from forewarn.store.lease import LeaseStore
from forewarn.store.repository import Repository
from tests import execution_support as support
from tests.execution_support import applier, fleet, full_plan

postgres_db, database = support.postgres_db, support.database  # fixtures
runner = CliRunner()


def explained(state: PlanState = PlanState.RECOMMENDED, suffix: str = "") -> Plan:
    plan = full_plan(state)
    plan.model_version = "m-7"
    for action in plan.actions:
        action.action_id += suffix
    plan.actions[1].reason = ActionReason(
        probability=0.83,
        band=Band.HIGH,
        rule="migrate-high",
        budget_used={"actions": 2, "migrations": 1},
        top_features=[FeatureContribution(feature="cpu_p95_1h", value=0.97, contribution=1.2)],
    )
    return plan


WIDE = """name: wide
mode: recommend
guardrails:
  max-fleet-percent-per-cycle: 100
  max-fleet-percent-per-window: {percent: 100}
  cooldown-minutes: 0
"""


@pytest.fixture
def cloud(forewarn_home: Path, monkeypatch: pytest.MonkeyPatch) -> SimulatedAdapter:
    """The test fleet of four, under a policy whose guardrails let an approval of the whole plan through."""
    adapter = fleet()
    forewarn_home.mkdir(parents=True, exist_ok=True)
    (forewarn_home / "wide.yaml").write_text(WIDE)
    monkeypatch.setenv("FOREWARN_POLICY", str(forewarn_home / "wide.yaml"))
    monkeypatch.delenv("FOREWARN_DATABASE_URL", raising=False)
    monkeypatch.delenv("FOREWARN_DRY_RUN", raising=False)
    monkeypatch.setattr(compose, "cloud", lambda ctx, dataset=None, *, at=None: adapter)
    return adapter


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["plan", *args])
    return result.exit_code, result.output


def test_list_newest_first_and_by_state(cloud: SimulatedAdapter) -> None:
    jr = service.journal()
    waiting = jr.save_plan(explained())
    cloud.inject("reserve", times=ALWAYS, error=AdapterError)
    rolled = applier(cloud, jr).run(explained(PlanState.APPROVED, "-2"))
    code, out = invoke("list")
    assert code == 0, out
    assert out.index(rolled.plan_id) < out.index(waiting.plan_id)
    assert "ROLLED_BACK" in out and "RECOMMENDED" in out
    code, out = invoke("list", "--state", "rolled_back")
    assert code == 0 and rolled.plan_id in out and waiting.plan_id not in out
    code, out = invoke("list", "--state", "done")
    assert code == 2 and "--state" in out and "allowed: RECOMMENDED" in out


def test_show_prints_each_action_with_its_reason_and_outcome(cloud: SimulatedAdapter) -> None:
    cloud.inject("reserve", times=ALWAYS, error=AdapterError)
    plan = applier(cloud, service.journal()).run(explained(PlanState.APPROVED))
    code, out = invoke("show", plan.plan_id)
    assert code == 0, out
    assert f"plan {plan.plan_id}: ROLLED_BACK" in out and "model m-7" in out
    assert "2. a-move  migrate i1 -> i3 tasks t1" in out
    assert (
        "reason: score 0.830 (high); rule migrate-high; top features cpu_p95_1h +1.20; "
        "budget used actions 2, migrations 1"
    ) in out
    assert "outcome: reverted" in out
    assert "4. a-reserve  reserve-buffer i2 {'fraction': 0.2}" in out
    assert "outcome: failed: injected fault" in out and "outcome: skipped: not run: plan rolled back" in out
    assert "rolled back: action a-reserve (reserve-buffer) failed" in out
    code, out = invoke("show", "nope")
    assert code == 1 and "no plan 'nope'" in out


def test_approve_runs_the_plan_dry_by_default(cloud: SimulatedAdapter) -> None:
    plan = service.journal().save_plan(explained())
    code, out = invoke("approve", plan.plan_id)
    assert code == 0, out
    assert f"{plan.plan_id}: SUCCEEDED (5 skipped)" in out and cloud.effects == []
    code, out = invoke("approve", plan.plan_id)
    assert code == 1 and "is SUCCEEDED; only a RECOMMENDED plan is approved" in out


def test_approve_live_succeeds_or_exits_1_when_rolled_back(cloud: SimulatedAdapter) -> None:
    jr = service.journal()
    good, bad = jr.save_plan(explained()), jr.save_plan(explained(suffix="-bad"))
    code, out = invoke("approve", good.plan_id, "--no-dry-run")
    assert code == 0 and "SUCCEEDED (5 succeeded)" in out, out
    assert jr.get(good.plan_id).state == PlanState.SUCCEEDED and len(cloud.effects) == 6
    cloud.inject("reserve", times=ALWAYS, error=AdapterError)  # the moves are done already: only this acts
    code, out = invoke("approve", bad.plan_id, "--no-dry-run")
    assert code == 1 and "ROLLED_BACK" in out and "rolled back: action a-reserve-bad (reserve-buffer) failed" in out


def test_cancel(cloud: SimulatedAdapter) -> None:
    plan = service.journal().save_plan(explained())
    code, out = invoke("cancel", plan.plan_id)
    assert code == 0 and f"{plan.plan_id}: CANCELLED" in out
    assert service.journal().get(plan.plan_id).state == PlanState.CANCELLED
    code, out = invoke("cancel", plan.plan_id)
    assert code == 1 and "CANCELLED; it cannot become CANCELLED" in out


def test_commands_read_the_database_url(database: str, forewarn_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOREWARN_DATABASE_URL", database)
    repo = Repository(database)
    plan = Journal(repo).save_plan(explained())
    code, out = invoke("list")
    assert code == 0 and plan.plan_id in out, out
    code, out = invoke("show", plan.plan_id)
    assert code == 0 and "rule migrate-high" in out
    assert not (forewarn_home / "forewarn.db").exists()  # nothing went to the default SQLite file
    repo.dispose()


def _stays_recommended(plan: Plan, out: str, *why: str) -> None:
    """The approve was refused with one line naming why, and the plan is as it was."""
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and "stays RECOMMENDED" in lines[0] and all(w in lines[0] for w in why), out
    after = service.journal().get(plan.plan_id)
    assert after.state == PlanState.RECOMMENDED and after.notes == plan.notes


def test_approving_a_stale_plan_is_refused(cloud: SimulatedAdapter) -> None:
    old = explained()
    old.created_at = old.created_at - timedelta(days=730)  # the plan of two years ago
    plan = service.journal().save_plan(old)
    code, out = invoke("approve", plan.plan_id, "--no-dry-run")
    assert code == 1
    _stays_recommended(plan, out, "minutes old", "max-plan-age-minutes 60", "re-plan")
    assert cloud.effects == []


def test_approve_passes_the_guardrails_as_they_stand_now(
    cloud: SimulatedAdapter, forewarn_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (forewarn_home / "wide.yaml").write_text(WIDE.replace("cooldown-minutes: 0", "cooldown-minutes: 30"))
    jr = service.journal()
    first, second = jr.save_plan(explained()), jr.save_plan(explained(suffix="-again"))
    code, out = invoke("approve", first.plan_id, "--no-dry-run")
    assert code == 0 and "SUCCEEDED" in out, out
    effects = len(cloud.effects)
    code, out = invoke("approve", second.plan_id, "--no-dry-run")  # the same instances, within the cooldown
    assert code == 1
    _stays_recommended(second, out, "cooldown-minutes (30)", "cordon on i1")
    assert len(cloud.effects) == effects


def test_approve_refuses_while_the_breaker_is_open(cloud: SimulatedAdapter) -> None:
    plan = service.journal().save_plan(explained())
    ctx = service.context()
    state = ctx.guard_state()
    state.breaker.open, state.breaker.reason = True, "high-risk share jumped"
    ctx.save_state(engine=ctx.engine(), guard_state=state)
    code, out = invoke("approve", plan.plan_id, "--no-dry-run")
    assert code == 1
    _stays_recommended(plan, out, "circuit breaker OPEN")
    code, out = runner.invoke(app, ["policy", "reset-breaker"]).exit_code, ""
    assert code == 0
    code, out = invoke("approve", plan.plan_id, "--no-dry-run")
    assert code == 0 and "SUCCEEDED" in out, out


def test_approve_claims_the_instances_and_refuses_when_another_run_holds_one(cloud: SimulatedAdapter) -> None:
    plan = service.journal().save_plan(explained())
    store = LeaseStore(service.context().repo.engine)
    assert store.claim({"i3"}, "another-run", cycle="c", ttl=timedelta(minutes=5)) == {"i3"}
    code, out = invoke("approve", plan.plan_id, "--no-dry-run")
    assert code == 1
    _stays_recommended(plan, out, "claimed by another run (i3)")
    assert cloud.effects == [] and store.claimed_by("another-run") == {"i3"}
    rest = {"i1", "i2", "i4"}  # the approve's partial claims were given back: a third run gets them
    assert store.claim(rest, "third-run", cycle="c", ttl=timedelta(minutes=5)) == rest
    store.release_claims(rest, "third-run")
    store.release_claims({"i3"}, "another-run")
    code, out = invoke("approve", plan.plan_id, "--no-dry-run")
    assert code == 0 and "SUCCEEDED" in out, out


def test_an_approve_that_cannot_start_leaves_the_plan_recommended(
    cloud: SimulatedAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = service.journal().save_plan(explained())

    def snapshot_store_down(self: Journal, plan_id: str, state: PlanState, note: str | None = None) -> Plan:
        if state == PlanState.RUNNING:
            raise PlanError("journal unavailable")
        return original(self, plan_id, state, note)

    original = Journal.transition
    monkeypatch.setattr(Journal, "transition", snapshot_store_down)
    code, out = invoke("approve", plan.plan_id, "--no-dry-run")
    assert code == 1 and "could not start, it stays RECOMMENDED: journal unavailable" in out, out
    assert service.journal().get(plan.plan_id).state == PlanState.RECOMMENDED
    assert cloud.effects == []
