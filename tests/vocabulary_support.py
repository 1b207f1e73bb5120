"""The whole action vocabulary from policy decisions, for every adapter: shared by tests/test_contract_vocabulary.py
(simulated, AWS on moto_server, OpenStack's request mock) and the real-Nova tier (tests/nova/)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from forewarn.cloud import CloudAdapter, capabilities
from forewarn.execution.actions import handler_for
from forewarn.execution.applier import Applier
from forewarn.execution.journal import Journal
from forewarn.execution.resilience import default_retry
from forewarn.planning import plan_cycle
from forewarn.policy import GuardrailState, PolicyEngine
from forewarn.policy.loader import load_policy
from forewarn.schemas import ActionState, ActionType, Plan, PlanState, RiskScore

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
GUARDRAILS = """guardrails:
  max-fleet-percent-per-cycle: 100
  max-fleet-percent-per-window: {percent: 100}
  cooldown-minutes: 0
  circuit-breaker: {max-high-risk-jump-percent: 100, max-high-risk-rise-percent: 100}
"""
RULES: dict[ActionType, tuple[str, str]] = {
    # action type -> (the rule's match, its action), as an operator writes them
    ActionType.MIGRATE: ("{band: high}", "{type: migrate}"),
    ActionType.CORDON: ("{band: high}", "{type: cordon}"),
    ActionType.SCALE_BACK: ("{band: high}", "{type: scale-back, factor: 0.8}"),
    ActionType.RESERVE_BUFFER: ("{band: high}", "{type: reserve-buffer, fraction: 0.2}"),
    ActionType.NOTIFY: ("{band: high}", "{type: notify, channel: on-call, message: look at it}"),
    ActionType.RESTORE_SNAPSHOT: ("{band: high}", "{type: restore-snapshot, snapshot: latest}"),
    ActionType.RELEASE: ("{band: low}", "{type: release}"),
    ActionType.AUTOSCALE: ("{band: high}", "{type: migrate}"),  # no room for both: the allocator asks a scale-up
    ActionType.NONE: ("{band: high}", "{type: none}"),
}


def policy_file(tmp_path: Path, kind: ActionType) -> Path:
    match, action = RULES[kind]
    path = tmp_path / f"{kind.value}.yaml"
    path.write_text(f"name: contract-{kind.value}\nmode: auto\nrules:\n  - name: r\n"
                    f"    match: {match}\n    action: {action}\n{GUARDRAILS}")  # fmt: skip
    return path


def fleet_state(adapter: CloudAdapter) -> tuple[dict[str, str | None], dict[str, tuple[str, float, float]]]:
    """Where every task is, and what is held on every instance (state, capacity factor, buffer)."""
    placement = {t.task_id: t.instance_id for t in adapter.list_tasks()}
    held = {i.instance_id: (i.state.value, round(i.capacity_factor, 6), round(i.reserved, 6))
            for i in adapter.list_instances()}  # fmt: skip
    return placement, held


def applier(adapter: CloudAdapter, log: Journal) -> Applier:
    return Applier(adapter, log, dry_run=False, retry=default_retry(attempts=3, sleep=lambda _: None))


def decide_and_run(adapter: CloudAdapter, log: Journal, path: Path, risky: list[str], held: set[str]) -> Plan:
    policy = load_policy(path)
    instances, tasks = adapter.list_instances(), adapter.list_tasks()
    scores = [RiskScore(instance_id=i.instance_id, timestamp=T0, probability=0.95 if i.instance_id in risky else 0.0,
                        horizon_minutes=60, model_version="m") for i in instances]  # fmt: skip
    cycle = plan_cycle(
        scores, instances, tasks, engine=PolicyEngine(policy), policy=policy, guard_state=GuardrailState(), now=T0,
        model_version="m", held=held, can=capabilities(adapter), cloud=adapter.name,
    )  # fmt: skip
    assert cycle.plan.state is PlanState.APPROVED
    return applier(adapter, log).run(cycle.plan)


def revert(adapter: CloudAdapter, log: Journal, plan: Plan) -> None:
    """Undo a plan that succeeded, newest action first, as a rollback of it would."""
    for action in reversed(log.get(plan.plan_id).actions):
        if action.state is not ActionState.SUCCEEDED:
            continue
        if action.type is ActionType.RESTORE_SNAPSHOT:
            adapter.restore(str(log.snapshot_of(plan.plan_id)), key=f"{action.action_id}:undo")
        else:
            handler_for(action).revert(adapter, action)


def run_vocabulary(adapter: CloudAdapter, ids: list[str], log: Journal, kind: ActionType, tmp_path: Path) -> None:
    """Decide ``kind`` from its policy file on ``adapter`` (the contract fleet: ``a`` and ``b`` busy, ``c``
    empty), run it to SUCCEEDED (or see it dropped with its reason where the adapter cannot do it), revert it
    and check the fleet is as it was before."""
    a, b, c = ids
    held: set[str] = set()
    if kind in (ActionType.RESTORE_SNAPSHOT, ActionType.RELEASE):  # something to roll back to, something to release
        (tmp_path / "setup").mkdir()
        setup = policy_file(tmp_path / "setup", ActionType.CORDON)
        assert decide_and_run(adapter, log, setup, [c], set()).state is PlanState.SUCCEEDED
        held = log.holds()
    before = fleet_state(adapter)
    risky = [a, b] if kind is ActionType.AUTOSCALE else [] if kind is ActionType.RELEASE else [a]
    plan = decide_and_run(adapter, log, policy_file(tmp_path, kind), risky, held)
    assert plan.state is PlanState.SUCCEEDED, plan.notes
    ran = {x.type for x in plan.actions if x.state is ActionState.SUCCEEDED}
    if kind is ActionType.NONE:
        assert plan.actions == []
    elif kind in capabilities(adapter):
        assert kind in ran, (plan.actions, plan.notes)
    else:
        assert kind not in {x.type for x in plan.actions}
        assert any(n.startswith(f"capability: {adapter.name} cannot") for n in plan.notes), plan.notes
    if kind is not ActionType.NOTIFY and kind in ran:
        assert fleet_state(adapter) != before  # it did something
    revert(adapter, log, plan)
    after = fleet_state(adapter)
    assert after[0] == before[0]
    assert {i: after[1].get(i) for i in before[1]} == before[1]
