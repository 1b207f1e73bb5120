"""A corpus of malformed policies (tests/policy_corpus/): each is refused with one precise line, and nothing acts.

Each file starts with ``# expect: LINE:COLUMN KEY | text | text ...``: the error must name that file, line,
column and key path (``-`` when the problem has no key, such as a syntax error) and contain every text.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapters.simulated import SimulatedAdapter
from forewarn import pipeline, planning, service
from forewarn.errors import PolicyError
from forewarn.policy import load_policy
from forewarn.schemas import Instance, InstanceState, PlanState, RiskScore, Task
from forewarn.settings import Settings

CORPUS = Path(__file__).resolve().parent / "policy_corpus"
FILES = sorted(CORPUS.glob("*.yaml"))
CONTROL = """\
name: control
mode: recommend
rules:
  - name: fence
    match: {band: high}
    action: {type: cordon}
guardrails: {max-fleet-percent-per-cycle: 10}
"""
EXPECT = re.compile(r"^# expect: (\d+):(\d+) (\S+) \| (.+)$")
NOW = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)


def _expectation(path: Path) -> tuple[int, int, str | None, list[str]]:
    match = EXPECT.match(path.read_text(encoding="utf-8").splitlines()[0])
    assert match, f"{path.name}: first line must be '# expect: LINE:COLUMN KEY | text'"
    line, column, key, says = match.groups()
    return int(line), int(column), None if key == "-" else key, [s.strip() for s in says.split("|")]


def test_the_corpus_is_large_and_every_file_states_its_expectation() -> None:
    assert len(FILES) >= 30
    for path in FILES:
        _expectation(path)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_malformed_policy_is_refused_naming_file_line_column_and_key(path: Path) -> None:
    line, column, key, says = _expectation(path)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    error, message = info.value, str(info.value)
    assert (error.file, error.row, error.column) == (str(path), line, column), message
    assert error.field == key, message
    assert message.startswith(f"{path}:{line}:{column}"), message
    if key is not None:
        assert f"'{key}'" in message
    for text in says:
        assert text in message, message
    if any(text.startswith("allowed:") for text in says):
        assert error.allowed, message
    assert "\n" not in message and "Traceback" not in message


def _fleet() -> tuple[list[Instance], list[Task], list[RiskScore]]:
    instances = [Instance(instance_id=f"vm-{k}", cpu_capacity=4, memory_capacity=4) for k in range(40)]
    tasks = [Task(task_id=f"t-{k}", instance_id=f"vm-{k}", cpu=0.5, memory=0.5) for k in range(40)]
    scores = [
        RiskScore(
            instance_id=f"vm-{k}",
            timestamp=NOW,
            probability=0.9 if k < 2 else 0.01,
            horizon_minutes=60,
            model_version="m1",
        )
        for k in range(40)
    ]
    return instances, tasks, scores


def _cycle(policy_file: Path, home: Path) -> tuple[service.Context, SimulatedAdapter]:
    """One score-and-allocate cycle as the flow runs it: engine, plan, journal, applier, saved state."""
    ctx = service.context(dry_run=False, settings=Settings(home=home), policy=policy_file)
    instances, tasks, scores = _fleet()
    adapter = SimulatedAdapter(instances, tasks, dry_run=False)
    try:
        engine = ctx.engine()
        cycle = pipeline.plan_cycle(
            scores,
            instances,
            tasks,
            engine=engine,
            policy=ctx.policy,
            guard_state=ctx.guard_state(),
            now=NOW,
            model_version="m1",
        )
        plan = service.apply_plan(ctx, adapter, cycle)
        ctx.save_state(engine=engine, guard_state=pipeline.finish_cycle(plan, cycle.guard_state))
    finally:
        ctx.repo.create_all()  # so the journal can be read back even when the policy failed to load
    return ctx, adapter


def test_the_cycle_acts_with_a_valid_policy(tmp_path: Path) -> None:
    control = tmp_path / "control.yaml"
    control.write_text(CONTROL, encoding="utf-8")
    ctx, adapter = _cycle(control, tmp_path)
    plans = ctx.journal.list()
    assert len(plans) == 1 and plans[0].state is PlanState.RECOMMENDED
    assert sorted(a.instance_id for a in plans[0].actions) == ["vm-0", "vm-1"]  # planned, awaiting approval
    assert all(i.state is InstanceState.RUNNING for i in adapter.list_instances())
    assert ctx.cycle_state("bands") is not None  # the cycle's state was saved


def test_no_action_is_taken_under_any_malformed_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reached: list[str] = []
    monkeypatch.setattr(planning, "enforce", lambda *a, **k: reached.append("guardrails"))
    monkeypatch.setattr(SimulatedAdapter, "cordon", lambda *a, **k: reached.append("cordon"))
    for path in FILES:
        with pytest.raises(PolicyError):
            _cycle(path, tmp_path)
        ctx = service.context(settings=Settings(home=tmp_path))
        assert ctx.journal.list() == [], path.name
        assert ctx.cycle_state("bands") is None, path.name
    assert reached == []


def test_policy_check_exits_2_and_prints_one_line_per_bad_file() -> None:
    from forewarn.cli import app

    result = CliRunner().invoke(app, ["policy", "check", str(CORPUS)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == len(FILES)
    for path in FILES:
        line, column, _, _ = _expectation(path)
        assert any(f"{path}:{line}:{column}" in text for text in lines), path.name
