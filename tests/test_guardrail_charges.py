"""Cooldowns and window budgets are charged only for actions that succeeded, from the journal: a recommend-mode
plan, a dry run and actions dropped by claims start no cooldown; a live success does, at the cycle's time."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from forewarn.cycle import CycleResult, run_cycle
from forewarn.schemas import ActionState, Plan, PlanState, PolicyMode
from forewarn.service import Context
from tests.test_cycle import POLICY, T0, Oracle, cloud, context

LATER = T0 + timedelta(minutes=10)  # inside the 30-minute cooldown of default.yaml


def _two_cycles(ctx: Context, **first: object) -> tuple[CycleResult, CycleResult]:
    oracle = Oracle()
    oracle.risk["i1"] = 0.9
    one = run_cycle(ctx, cloud(ctx), T0, scoring=oracle, model_version="oracle", **first)  # type: ignore[arg-type]
    two = run_cycle(ctx, cloud(ctx), LATER, scoring=oracle, model_version="oracle")
    return one, two


def _cooled(result: CycleResult) -> list[str]:
    assert result.plan is not None
    return [n for n in result.plan.notes if n.startswith("guardrail cooldown-minutes") and "on i1" in n]


def test_a_live_success_starts_the_cooldown_at_the_cycle_time(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    one, two = _two_cycles(ctx)
    assert one.plan is not None and one.plan.state is PlanState.SUCCEEDED and one.plan.actions
    assert _cooled(two)
    charged = ctx.journal.charges()
    assert {r.instance_id for r in charged} >= {"i1"} and {r.at for r in charged} == {T0}


def test_a_recommend_mode_plan_starts_no_cooldown(tmp_path: Path) -> None:
    ctx = context(tmp_path, policy=POLICY.model_copy(update={"mode": PolicyMode.RECOMMEND}))
    one, two = _two_cycles(ctx)
    assert one.plan is not None and one.plan.state is PlanState.RECOMMENDED and one.plan.actions
    assert ctx.journal.charges() == [] and not _cooled(two)
    assert two.plan is not None and any(a.instance_id == "i1" for a in two.plan.actions)


def test_a_dry_run_starts_no_cooldown(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    ctx.dry_run = True
    one, two = _two_cycles(ctx)
    assert one.plan is not None and one.plan.actions
    assert {a.state for a in one.plan.actions} == {ActionState.SKIPPED}
    assert ctx.journal.charges() == [] and not _cooled(two)


def test_actions_dropped_by_claims_start_no_cooldown(tmp_path: Path) -> None:
    ctx = context(tmp_path)

    def others_hold_everything(plan: Plan, _now: object) -> Plan:
        dropped = [f"claimed elsewhere: {a.type.value} on {a.instance_id}" for a in plan.actions]
        return plan.model_copy(update={"actions": [], "notes": [*plan.notes, *dropped]})

    one, two = _two_cycles(ctx, claim=others_hold_everything)
    assert one.plan is not None and one.plan.actions == []
    assert not _cooled(two)
    assert two.plan is not None and two.plan.state is PlanState.SUCCEEDED and two.plan.actions
    assert {r.at for r in ctx.journal.charges()} == {LATER}  # the second cycle's success, nothing of the first
