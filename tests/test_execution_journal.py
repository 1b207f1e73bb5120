"""The journal: plans round-trip, legal and illegal transitions, intents and outcomes."""

from __future__ import annotations

from pathlib import Path

import pytest

from forewarn.errors import PlanError
from forewarn.schemas import ActionState, FeatureContribution, PlanState
from tests.execution_support import full_plan, journal


def test_plan_round_trips(tmp_path: Path) -> None:
    jr = journal(tmp_path)
    plan = full_plan(PlanState.RECOMMENDED)
    plan.actions[1].reason.top_features = [FeatureContribution(feature="cpu_mean_1h", value=0.9, contribution=1.2)]
    plan.actions[1].reason.probability = 0.8
    plan.model_version = "m-1"
    saved = jr.save_plan(plan)
    assert saved == plan
    assert jr.list() == [plan] and jr.list(PlanState.APPROVED) == []


def test_transitions_follow_the_lifecycle(tmp_path: Path) -> None:
    jr = journal(tmp_path)
    plan = jr.save_plan(full_plan(PlanState.RECOMMENDED))
    with pytest.raises(PlanError, match="RECOMMENDED; it cannot become RUNNING"):
        jr.transition(plan.plan_id, PlanState.RUNNING)
    assert jr.approve(plan.plan_id).state == PlanState.APPROVED
    with pytest.raises(PlanError, match="cannot become APPROVED"):
        jr.approve(plan.plan_id)
    jr.transition(plan.plan_id, PlanState.RUNNING)
    with pytest.raises(PlanError, match="cannot become CANCELLED"):
        jr.cancel(plan.plan_id)
    assert jr.transition(plan.plan_id, PlanState.SUCCEEDED, note="done").notes[-1] == "done"
    with pytest.raises(PlanError, match="allowed next: none"):
        jr.transition(plan.plan_id, PlanState.ROLLED_BACK)


def test_cancel_and_shadow(tmp_path: Path) -> None:
    jr = journal(tmp_path)
    plan = jr.save_plan(full_plan(PlanState.RECOMMENDED))
    assert jr.cancel(plan.plan_id).state == PlanState.CANCELLED
    with pytest.raises(PlanError, match="must be unique"):
        jr.save_plan(full_plan(PlanState.SHADOW))
    shadow = full_plan(PlanState.SHADOW)
    for action in shadow.actions:
        action.action_id += "-2"
    jr.save_plan(shadow)
    with pytest.raises(PlanError):
        jr.approve(shadow.plan_id)


def test_saving_twice_or_an_unknown_plan_is_refused(tmp_path: Path) -> None:
    jr = journal(tmp_path)
    plan = jr.save_plan(full_plan())
    with pytest.raises(PlanError, match="already in the journal"):
        jr.save_plan(plan)
    with pytest.raises(PlanError, match="no plan 'nope'"):
        jr.get("nope")
    running = full_plan(PlanState.RUNNING)
    with pytest.raises(PlanError, match="must start"):
        jr.save_plan(running)


def test_intent_and_outcome_and_interrupted(tmp_path: Path) -> None:
    jr = journal(tmp_path)
    plan = jr.save_plan(full_plan())
    jr.transition(plan.plan_id, PlanState.RUNNING)
    first, second = plan.actions[0], plan.actions[1]
    jr.record_intent(plan.plan_id, first)
    with pytest.raises(PlanError, match=r"not run twice|cannot become running"):
        jr.record_intent(plan.plan_id, first)  # a second applier cannot take the same action
    jr.record_intent(plan.plan_id, second)
    assert [a.action_id for _, a in jr.interrupted()] == [first.action_id, second.action_id]
    jr.record_outcome(plan.plan_id, first.action_id, ActionState.SUCCEEDED)
    jr.record_outcome(plan.plan_id, second.action_id, ActionState.FAILED, "boom", applied=True)
    assert jr.interrupted() == []
    assert [a.action_id for a in jr.to_revert(plan.plan_id)] == [first.action_id, second.action_id]
    with pytest.raises(PlanError, match="cannot become succeeded"):
        jr.record_outcome(plan.plan_id, second.action_id, ActionState.SUCCEEDED)
    jr.record_outcome(plan.plan_id, first.action_id, ActionState.REVERTED)
    assert [a.action_id for a in jr.to_revert(plan.plan_id)] == [second.action_id]
    assert jr.get(plan.plan_id).actions[1].error == "boom"
    with pytest.raises(PlanError, match="has no action"):
        jr.record_outcome(plan.plan_id, "other", ActionState.SUCCEEDED)
