"""The applier: happy path, dry-run, retries, rollback in reverse order, snapshot restore, breaker."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.faults import ALWAYS
from forewarn.errors import AdapterError, PlanError
from forewarn.execution.applier import Applier
from forewarn.execution.resilience import AdapterBreaker, AdapterBreakerOpen, default_retry
from forewarn.schemas import ActionState, PlanState
from tests.execution_support import applier as make_applier
from tests.execution_support import demand_by_root, fleet, full_plan, journal, layout

MUTATING = ["cordon", "migrate", "reserve", "scale", "snapshot"]


def test_approved_plan_runs_every_action(tmp_path: Path) -> None:
    adapter, jr = fleet(), journal(tmp_path)
    before = demand_by_root(adapter)
    plan = make_applier(adapter, jr).run(full_plan())
    assert plan.state == PlanState.SUCCEEDED
    assert [a.state for a in plan.actions] == [ActionState.SUCCEEDED] * 5
    placement = adapter.placement()
    assert placement["t1"] == "i3" and placement["t2#1"] == "i4" and placement["t2"] == "i1"
    assert "i1" in adapter.state.cordoned and adapter.state.reserved["i2"] == 0.2
    assert "i-auto-0001" in adapter.state.instances
    assert demand_by_root(adapter) == before
    assert jr.snapshot_of(plan.plan_id) == "snap-0001"
    assert [m for m, _ in adapter.effects] == ["snapshot", "cordon", "migrate", "migrate", "reserve", "scale"]


def test_refuses_a_plan_that_is_not_approved(tmp_path: Path) -> None:
    adapter, jr = fleet(), journal(tmp_path)
    plan = jr.save_plan(full_plan(PlanState.RECOMMENDED))
    with pytest.raises(PlanError, match="only an APPROVED plan runs"):
        make_applier(adapter, jr).run(plan)
    assert adapter.effects == []


def test_dry_run_changes_nothing_and_marks_actions_skipped(tmp_path: Path) -> None:
    adapter, jr = fleet(), journal(tmp_path)
    before = layout(adapter)
    plan = Applier(adapter, jr).run(full_plan())  # dry_run is the default
    assert layout(adapter) == before and adapter.effects == []
    assert all(a.state == ActionState.SKIPPED and a.error and a.error.startswith("dry-run") for a in plan.actions)
    assert plan.state == PlanState.SUCCEEDED and any("dry-run" in n for n in plan.notes)


def test_invalid_params_are_refused_before_anything_runs(tmp_path: Path) -> None:
    adapter, jr = fleet(), journal(tmp_path)
    plan = full_plan()
    plan.actions[3].params = {"fraction": 2.0}
    with pytest.raises(PlanError, match=r"a-reserve.*fraction"):
        make_applier(adapter, jr).run(plan)
    assert adapter.effects == [] and jr.get(plan.plan_id).state == PlanState.APPROVED


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("method", [*MUTATING, "list_tasks", "list_instances", "health"])
def test_each_call_failing_once_is_retried(tmp_path: Path, method: str, when: str) -> None:
    adapter, jr = fleet(), journal(tmp_path)
    adapter.inject(method, when=when)
    plan = make_applier(adapter, jr).run(full_plan())
    assert plan.state == PlanState.SUCCEEDED, plan.notes
    keys = [key for _, key in adapter.effects]
    assert len(keys) == len(set(keys)) == 6  # every change happened exactly once


@pytest.mark.parametrize("failing", range(5))
def test_action_failing_always_rolls_back_in_reverse_order(tmp_path: Path, failing: int) -> None:
    adapter, jr = fleet(), journal(tmp_path)
    before, demand = layout(adapter), demand_by_root(adapter)
    method = ["cordon", "migrate", "migrate", "reserve", "scale"][failing]
    after = 1 if failing == 2 else 0  # the second migrate is the split
    adapter.inject(method, times=ALWAYS, after=after)
    plan = make_applier(adapter, jr).run(full_plan())
    assert plan.state == PlanState.ROLLED_BACK
    states = [a.state for a in plan.actions]
    assert states == [ActionState.REVERTED] * failing + [ActionState.FAILED] + [ActionState.SKIPPED] * (4 - failing)
    reverts = [key for _, key in adapter.effects if key.endswith(":revert")]
    if method == "migrate" and failing == 2:  # moving t1 back is a migrate too, so it fails: the snapshot is restored
        assert reverts == [] and adapter.effects[-1] == ("restore", f"{plan.plan_id}:restore")
    else:
        assert reverts == [f"{a.action_id}:revert" for a in reversed(plan.actions[:failing])]
    assert layout(adapter) == before and demand_by_root(adapter) == demand


def test_post_condition_failure_reverts_that_action_too(tmp_path: Path) -> None:
    adapter, jr = fleet(), journal(tmp_path)
    before = layout(adapter)
    original = adapter.health

    def health(instance_id: str) -> bool:  # i3 dies right after t1 lands on it, then comes back
        return original(instance_id) and not (instance_id == "i3" and adapter.placement().get("t1") == "i3")

    adapter.health = health  # type: ignore[method-assign]
    plan = make_applier(adapter, jr).run(full_plan())
    assert plan.state == PlanState.ROLLED_BACK
    assert plan.actions[1].state == ActionState.REVERTED and "post-condition" in str(plan.actions[1].error)
    assert layout(adapter) == before


def test_failed_revert_restores_the_snapshot(tmp_path: Path) -> None:
    adapter, jr = fleet(), journal(tmp_path)
    before = layout(adapter)
    adapter.inject("scale", times=ALWAYS)  # autoscale fails; reverting the reserve fails too
    adapter.inject("reserve", times=ALWAYS, after=1, error=AdapterError)
    plan = make_applier(adapter, jr).run(full_plan())
    assert plan.state == PlanState.ROLLED_BACK
    assert any("restored snapshot snap-0001" in n for n in plan.notes)
    assert [a.state for a in plan.actions[:4]] == [ActionState.REVERTED] * 4
    assert layout(adapter) == before


def test_failed_restore_ends_failed_with_the_reason(tmp_path: Path) -> None:
    adapter, jr = fleet(), journal(tmp_path)
    adapter.inject("scale", times=ALWAYS)
    adapter.inject("reserve", times=ALWAYS, after=1, error=AdapterError)
    adapter.inject("restore", times=ALWAYS)
    plan = make_applier(adapter, jr).run(full_plan())
    assert plan.state == PlanState.FAILED
    assert "needs an operator" in plan.notes[-1] and "restoring snapshot snap-0001 failed" in plan.notes[-1]


def test_snapshot_failure_stops_before_any_action(tmp_path: Path) -> None:
    adapter, jr = fleet(), journal(tmp_path)
    adapter.inject("snapshot", times=ALWAYS)
    plan = make_applier(adapter, jr).run(full_plan())
    assert plan.state == PlanState.FAILED and adapter.effects == []
    assert all(a.state == ActionState.SKIPPED for a in plan.actions)


def test_circuit_breaker_opens_and_stops_calls(tmp_path: Path) -> None:
    adapter, jr = fleet(), journal(tmp_path)
    adapter.inject("migrate", times=ALWAYS)
    breaker = AdapterBreaker(threshold=2, reset_seconds=60, clock=lambda: 0.0)
    retry = default_retry(attempts=5, sleep=lambda _: None)
    runner = Applier(adapter, jr, dry_run=False, breaker=breaker, retry=retry)
    plan = runner.run(full_plan())
    assert breaker.state == "open"
    assert adapter.faults.calls["migrate"] == 2  # the third attempt was refused by the breaker
    # the breaker guards the whole adapter: undoing the cordon and restoring are refused too, and the plan
    # says so instead of pretending it rolled back
    assert plan.state == PlanState.FAILED and "adapter breaker open" in plan.notes[-1]
    assert "i1" in adapter.state.cordoned
    with pytest.raises(AdapterBreakerOpen):
        breaker.call("simulated", lambda: None)


def test_retry_waits_with_backoff() -> None:
    waits: list[float] = []
    retry = default_retry(attempts=4, initial=1.0, maximum=100.0, sleep=waits.append)
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 4:
            raise AdapterError("throttled", retryable=True)
        return "ok"

    assert retry(flaky) == "ok"
    assert len(waits) == 3 and waits[0] < waits[2] and all(w >= 1.0 for w in waits)
