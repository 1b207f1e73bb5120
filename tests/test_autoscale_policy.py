"""The autoscale thresholds the allocator uses are the policy's: `low-utilisation` and `high-utilisation` of an
autoscale rule change the plan, and a policy where they would flap is refused with one line."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from forewarn.allocation.sizing import autoscale_params
from forewarn.errors import PolicyError
from forewarn.planning import plan_cycle
from forewarn.policy.actions import AutoscaleParams
from forewarn.policy.engine import PolicyEngine
from forewarn.policy.guardrails import GuardrailState
from forewarn.policy.loader import load_policy_text
from forewarn.schemas import ActionType, Band, Decision, Instance, RiskScore, Task

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
POLICY = """\
name: elastic
mode: auto
guardrails:
  max-fleet-percent-per-cycle: 100
  max-fleet-percent-per-window: {percent: 100}
rules:
  - name: elastic-batch
    match: {band: low, groups: [batch]}
    action: {type: autoscale, min: 1, max: 10%s}
"""


def _autoscale(extra: str) -> list[dict[str, object]]:
    """The autoscale actions of one cycle over four batch instances, each half full."""
    policy = load_policy_text(POLICY % extra, "elastic.yaml")
    instances = [Instance(instance_id=f"b{k}", group="batch") for k in range(4)]
    tasks = [Task(task_id=f"t{k}", instance_id=f"b{k}", cpu=0.5, memory=0.5) for k in range(4)]
    scores = [RiskScore(instance_id=i.instance_id, timestamp=T0, probability=0.01, horizon_minutes=60,
                        model_version="m") for i in instances]  # fmt: skip
    planned = plan_cycle(
        scores, instances, tasks, engine=PolicyEngine(policy), policy=policy, guard_state=GuardrailState(),
        now=T0, model_version="m",
    )  # fmt: skip
    return [a.params for a in planned.plan.actions if a.type is ActionType.AUTOSCALE]


def test_high_utilisation_from_the_policy_changes_the_plan() -> None:
    assert _autoscale("") == []  # 50% sits between the defaults 0.30 and 0.85
    up = _autoscale(", high-utilisation: 0.4")
    assert [p["delta"] for p in up] == [2], up  # to the midpoint (0.35): 4 x (0.5 / 0.35 - 1) -> 2 more
    lower = _autoscale(", low-utilisation: 0.1, high-utilisation: 0.4")  # midpoint 0.25: 4 x (0.5 / 0.25 - 1)
    assert [p["delta"] for p in lower] == [4], lower


def test_thresholds_that_would_flap_are_refused_with_one_line() -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy_text(POLICY % ", low-utilisation: 0.9, high-utilisation: 0.5", "elastic.yaml")
    message = str(caught.value)
    assert "elastic.yaml" in message and "low-utilisation" in message and "below high-utilisation (0.5)" in message
    assert "\n" not in message


def test_a_decision_without_bounds_takes_the_policys_defaults_not_a_number_of_its_own() -> None:
    """The allocator has no capacity threshold of its own: what a decision lacks is the policy's default."""
    bare = Decision(instance_id="b0", band=Band.LOW, action=ActionType.AUTOSCALE, rule="r", params={"triggered": []})
    assert autoscale_params(bare) == AutoscaleParams()  # min 1, max 10, 0.30, 0.85, as docs/policy.md says
    given = bare.model_copy(update={"params": {"max": 3, "high_utilisation": 0.4}})
    assert (autoscale_params(given).max, autoscale_params(given).high_utilisation) == (3, 0.4)
