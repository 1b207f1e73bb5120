"""One schema per action: what a policy rule says is what the executor accepts, with the same defaults, and a
rollback to the ``latest`` snapshot restores the newest snapshot an earlier plan took (from the journal)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.simulated import SimulatedAdapter
from forewarn.allocation.planner import plan_actions
from forewarn.execution.actions import REGISTRY, handler_for
from forewarn.policy.actions import ACTIONS, get_action
from forewarn.policy.loader import load_policy
from forewarn.schemas import (
    Action,
    ActionState,
    ActionType,
    Band,
    Decision,
    Instance,
    InstanceState,
    Plan,
    PlanState,
    PolicyMode,
    Task,
    VelocityLimits,
)
from forewarn.settings import PROJECT_ROOT
from tests.execution_support import applier, journal

LIMITS = VelocityLimits(
    max_actions_per_cycle=50, max_concurrent_migrations=20, max_migrations_per_target=4, max_fleet_fraction=1.0
)
SHIPPED = sorted((PROJECT_ROOT / "policies").rglob("*.yaml"))
ALLOCATED = {ActionType.MIGRATE, ActionType.AUTOSCALE, ActionType.SCALE_BACK}
"""Decisions the allocator turns into other params (targets, shares, deltas); the rest pass through."""


def _fleet() -> tuple[list[Instance], list[Task]]:
    instances = [Instance(instance_id=f"i{k}", group="batch", tags={"autoscale": "true"}) for k in range(4)]
    return instances, [Task(task_id=f"t{k}", instance_id=f"i{k}", cpu=0.3, memory=0.3) for k in range(4)]


def _actions(kind: ActionType, params: dict[str, object]) -> list[Action]:
    instances, tasks = _fleet()
    decision = Decision(instance_id="i0", band=Band.HIGH, action=kind, rule="r", probability=0.9, params=params)
    risk = {i.instance_id: 0.9 if i.instance_id == "i0" else 0.01 for i in instances}
    return plan_actions([decision], instances, tasks, risk, LIMITS).actions


def _state(adapter: SimulatedAdapter, instance_id: str) -> InstanceState:
    return next(i.state for i in adapter.list_instances() if i.instance_id == instance_id)


def test_every_policy_action_has_an_executor_and_the_same_names() -> None:
    assert set(ACTIONS) == {t.value for t in REGISTRY}
    for kind in set(ActionType) - ALLOCATED:
        policy_fields = set(ACTIONS[kind.value].params_model.model_fields) - {"type"}
        assert policy_fields <= set(REGISTRY[kind].Params.model_fields), kind


@pytest.mark.parametrize("kind", sorted(set(ActionType), key=str))
def test_defaults_agree(kind: ActionType) -> None:
    """A default the executor gives a field the policy also names is the policy's default."""
    policy_model, executor = ACTIONS[kind.value].params_model, REGISTRY[kind].Params
    for name, field in executor.model_fields.items():
        if name in policy_model.model_fields:
            assert field.default == policy_model.model_fields[name].default, f"{kind.value}.{name}"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_rule_of_every_shipped_policy_makes_actions_the_executor_accepts(path: Path) -> None:
    policy = load_policy(path)
    specs = [rule.action for rule in policy.rules]
    specs.append(ACTIONS[policy.fallback.action].params_model())
    for spec in specs:
        params = get_action(spec.type).process(spec)  # type: ignore[arg-type]
        actions = _actions(ActionType(spec.type), params)
        for action in actions:
            handler_for(action).validate(action)  # raises PlanError naming the field the executor refuses
        if ActionType(spec.type) not in ALLOCATED | {ActionType.NONE, ActionType.RELEASE}:
            assert actions, f"{path.name}: {spec.type} made no action"


def test_notify_with_a_channel_runs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec = load_policy(PROJECT_ROOT / "policies" / "examples" / "aggressive.yaml").rules[0].action
    params = get_action("notify").process(spec)
    assert params["channel"] == "log"
    instances, tasks = _fleet()
    action = Action(type=ActionType.NOTIFY, instance_id="i0", params=params)
    plan = Plan(policy="p", mode=PolicyMode.AUTO, state=PlanState.APPROVED, actions=[action])
    done = applier(SimulatedAdapter(instances, tasks), journal(tmp_path)).run(plan)
    assert done.state is PlanState.SUCCEEDED
    assert any(r.name == "forewarn.notify.log" and "database on a risky instance" in r.message for r in caplog.records)


def test_rollback_to_latest_restores_the_snapshot_of_the_plan_before(tmp_path: Path) -> None:
    instances, tasks = _fleet()
    adapter, log = SimulatedAdapter(instances, tasks), journal(tmp_path)
    cordon = Plan(policy="p", mode=PolicyMode.AUTO, state=PlanState.APPROVED,
                  actions=[Action(type=ActionType.CORDON, instance_id="i1")])  # fmt: skip
    assert applier(adapter, log).run(cordon).state is PlanState.SUCCEEDED
    assert _state(adapter, "i1") is InstanceState.CORDONED
    params = get_action("restore-snapshot").process(get_action("restore-snapshot").params_model())  # snapshot: latest
    rollback = Plan(policy="p", mode=PolicyMode.AUTO, state=PlanState.APPROVED,
                    actions=[Action(type=ActionType.RESTORE_SNAPSHOT, instance_id="i1", params=params)])  # fmt: skip
    done = applier(adapter, log).run(rollback)
    assert done.state is PlanState.SUCCEEDED and done.actions[0].state is ActionState.SUCCEEDED
    assert done.actions[0].params["_undo"] == {"snapshot": log.snapshot_of(cordon.plan_id)}
    assert _state(adapter, "i1") is InstanceState.RUNNING  # back to before the cordon


def test_rollback_to_latest_without_an_earlier_snapshot_is_skipped_not_failed(tmp_path: Path) -> None:
    instances, tasks = _fleet()
    params = get_action("restore-snapshot").process(get_action("restore-snapshot").params_model())
    plan = Plan(policy="p", mode=PolicyMode.AUTO, state=PlanState.APPROVED,
                actions=[Action(type=ActionType.RESTORE_SNAPSHOT, instance_id="i1", params=params)])  # fmt: skip
    done = applier(SimulatedAdapter(instances, tasks), journal(tmp_path)).run(plan)
    assert done.state is PlanState.SUCCEEDED and done.actions[0].state is ActionState.SKIPPED
    assert "no earlier snapshot" in str(done.actions[0].error)


def test_the_older_name_rollback_still_reads_as_restore_snapshot() -> None:
    """docs/glossary.md: "rollback" is a plan's or a model's; a policy or journal written before says it of the
    snapshot action, and means ``restore-snapshot``."""
    from forewarn.policy.loader import load_policy_text

    text = (PROJECT_ROOT / "policies" / "default.yaml").read_text(encoding="utf-8")
    head, rules = text.split("rules:\n", 1)
    snap = "  - name: snap\n    match: {band: high}\n    action: {type: rollback, snapshot: s-1}\n"
    legacy = head + "rules:\n" + snap + rules
    policy = load_policy_text(legacy, "legacy.yaml")
    assert policy.rules[0].action.type == "restore-snapshot"
    assert ActionType("rollback") is ActionType.RESTORE_SNAPSHOT
    with pytest.raises(ValueError):
        ActionType("roll-back")
