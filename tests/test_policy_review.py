"""The pull-request workflow: `policy check` (and its alias), `policy diff --replay`, `policy explain`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from forewarn.cli import app
from forewarn.errors import PolicyError
from forewarn.policy import load_policy_text
from forewarn.policy.review import check_paths, github_annotation
from forewarn.schemas import Instance, RiskScore, Task

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
EXPLAINED = """\
name: explained
mode: recommend
bands:
  high: {enter: 0.6, exit: 0.45}
  moderate: {enter: 0.3, exit: 0.2}
  min-dwell-minutes: 15
rules:
  - name: fence
    match: {band: high}
    action: {type: cordon}
  - name: only-web
    match: {band: moderate, groups: [web]}
    action: {type: scale-back}
guardrails:
  max-actions-per-cycle: 1
  max-fleet-percent-per-cycle: 50
  max-fleet-percent-per-window: {percent: 50}
"""


def test_check_passes_every_shipped_policy_and_validate_is_an_alias() -> None:
    runner = CliRunner()
    for command in ("check", "validate"):
        result = runner.invoke(app, ["policy", command, str(ROOT / "policies")])
        assert result.exit_code == 0, result.output
        assert "3 policy file(s) valid" in result.output


def test_check_reports_file_line_column_key_and_allowed_values(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nrules:\n  - name: r\n    action: {type: cordon, drain: maybe}\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["policy", "check", str(bad), str(ROOT / "policies" / "default.yaml")])
    assert result.exit_code == 2
    assert f"{bad}:4:35, field 'rules[0].action.drain'" in result.output
    assert "(allowed: true, false)" in result.output


def test_check_can_annotate_a_pull_request(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmode: yolo\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["policy", "check", "--format", "github", str(bad)])
    assert result.exit_code == 2
    assert f"::error file={bad},line=2,col=7,title=forewarn policy check::{bad}:2:7, field 'mode'" in result.output
    _, errors = check_paths([bad])
    assert github_annotation(PolicyError("a, b", file="x:y.yaml", row=1)).startswith("::error file=x%3Ay.yaml,line=1")
    assert len(errors) == 1


def _journal_a_cycle(home: Path, policy_file: Path) -> None:
    from forewarn import pipeline, service
    from forewarn.settings import Settings

    ctx = service.context(settings=Settings(home=home, policy=policy_file))
    instances = [Instance(instance_id=f"vm-{k}", group="web" if k < 2 else "db") for k in range(4)]
    tasks = [Task(task_id=f"t{k}", instance_id=f"vm-{k}") for k in range(4)]
    risks = {"vm-0": 0.9, "vm-1": 0.8, "vm-2": 0.35, "vm-3": 0.1}
    scores = [
        RiskScore(instance_id=i, timestamp=T0, probability=p, horizon_minutes=60, model_version="m7")
        for i, p in risks.items()
    ]
    engine = ctx.engine()
    cycle = pipeline.plan_cycle(
        scores, instances, tasks, engine=engine, policy=ctx.policy, guard_state=ctx.guard_state(), now=T0,
        model_version="m7",
    )  # fmt: skip
    plan = service.apply_plan(ctx, None, cycle)  # type: ignore[arg-type]  # recommend: nothing runs
    ctx.save_state(engine=engine, guard_state=cycle.guard_state)
    assert plan.state == "RECOMMENDED"


@pytest.fixture
def explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    policy = tmp_path / "explained.yaml"
    policy.write_text(EXPLAINED, encoding="utf-8")
    monkeypatch.setenv("FOREWARN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FOREWARN_POLICY", str(policy))
    _journal_a_cycle(tmp_path / "home", policy)
    return policy


def _explain(instance: str) -> str:
    result = CliRunner().invoke(app, ["policy", "explain", instance])
    assert result.exit_code == 0, result.output
    return result.output


def test_explain_an_instance_with_an_action(explained: Path) -> None:
    out = _explain("vm-0")
    assert "score: 0.9000" in out and "top features" in out
    assert "band: high since 2024-03-01 12:00 UTC" in out
    assert "high enter 0.6 / exit 0.45" in out and "min dwell 15 min" in out
    assert "may from 12:15 UTC move down" in out
    assert "action: cordon (pending), rule 'fence'" in out and "budget used: actions 1" in out


def test_explain_an_instance_dropped_by_a_guardrail(explained: Path) -> None:
    out = _explain("vm-1")
    assert "action: none in the latest plan" in out
    assert "rule 'fence': matches -> cordon" in out
    assert "note: guardrail max-actions-per-cycle (1): dropped cordon on vm-1" in out
    assert "vm-0" not in out.replace("instance vm-1", "")


def test_explain_an_instance_no_rule_matched(explained: Path) -> None:
    out = _explain("vm-2")
    assert "band: moderate" in out and "score: not recorded" in out
    assert "rule 'fence': needs band high, instance is moderate" in out
    assert "rule 'only-web': matches if the instance has groups ['web'] -> scale-back" in out


def test_explain_an_unknown_instance_is_one_line(explained: Path) -> None:
    result = CliRunner().invoke(app, ["policy", "explain", "vm-99"])
    assert result.exit_code == 2
    assert "instance 'vm-99' is in no plan and not in the band tracker; known instances include vm-0" in result.output


def test_explain_without_any_plan(forewarn_home: Path) -> None:
    result = CliRunner().invoke(app, ["policy", "explain", "vm-0"])
    assert result.exit_code == 1 and "no plan in the journal yet" in result.output


def test_diff_replay_without_a_model_says_so(tmp_path: Path, forewarn_home: Path) -> None:
    policy = str(ROOT / "policies" / "default.yaml")
    args = ["policy", "diff", policy, policy, "--replay", str(tmp_path), "--model", str(tmp_path / "none")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "no current model" in result.output


class OracleModel:
    """Scores 0.95 where the instance fails within the next hour, else 0.01: a perfect stand-in model."""

    version = "oracle"

    def __init__(self, failures: pd.DataFrame) -> None:
        self.failures = failures

    def set_threads(self, threads: int) -> None:  # the replay tunes the model's threads
        pass

    def score(self, features: pd.DataFrame, *, timestamp: datetime) -> list[RiskScore]:
        soon = self.failures[
            (self.failures["timestamp"] > timestamp) & (self.failures["timestamp"] <= timestamp + timedelta(hours=1))
        ]
        doomed = set(soon["instance_id"])
        return [
            RiskScore(
                instance_id=str(i),
                timestamp=timestamp,
                probability=0.95 if i in doomed else 0.01,
                horizon_minutes=60,
                model_version=self.version,
            )
            for i in features["instance_id"]
        ]


def test_diff_on_replay_counts_actions_and_interruptions_avoided(tmp_path: Path) -> None:
    from forewarn.dataset import read_dataset
    from forewarn.pipeline import build_features
    from forewarn.policy.whatif import compare_on_replay
    from forewarn.sim import SimConfig, write

    data = read_dataset(write(SimConfig(instances=30, days=1.5, seed=4, failure_rate_per_day=0.6), tmp_path / "d"))
    old = load_policy_text("name: watch\nmode: auto\n")
    new = load_policy_text(
        "name: act\nmode: auto\nrules:\n  - name: evacuate\n    match: {band: high}\n    action: {type: migrate}\n"
        "guardrails: {max-fleet-percent-per-cycle: 20, max-fleet-percent-per-window: {percent: 50}}\n"
    )
    comparison = compare_on_replay(
        old, new, data, build_features(data), OracleModel(data.failures), start=data.end - pd.Timedelta(hours=12),
        workdir=tmp_path / "w",
    )  # fmt: skip
    reactive, before, after = comparison.runs
    assert [r.name for r in comparison.runs] == ["reactive", "old", "new"]
    assert reactive.failures > 0 and reactive.tasks_interrupted > 0
    assert before.actions_planned == {} and before.plans > 0 and before.interruptions_avoided == 0
    assert after.actions_planned.get("migrate", 0) > 0 and after.migrations > 0
    assert after.interruptions_avoided == reactive.tasks_interrupted - after.tasks_interrupted > 0
    text = comparison.render()
    assert "interruptions avoided" in text and "migrate: planned / run" in text


def _git(cwd: Path, *args: str) -> None:
    import subprocess

    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.mark.slow
def test_the_workflow_checks_and_diffs_changed_policies(tmp_path: Path) -> None:
    import os
    import shutil
    import subprocess

    import yaml

    from tests.servers import require_binary

    require_binary("git")
    steps = {
        s.get("name"): s
        for s in yaml.safe_load((ROOT / ".github/workflows/policy.yml").read_text())["jobs"]["check"]["steps"]
    }
    origin, work = tmp_path / "origin.git", tmp_path / "work"
    _git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    _git(tmp_path, "clone", "-q", str(origin), str(work))
    shutil.copytree(ROOT / "policies", work / "policies")
    for args in (
        ("config", "user.email", "t@example.org"),
        ("config", "user.name", "t"),
        ("add", "."),
        ("commit", "-qm", "base"),
        ("push", "-q", "origin", "main"),
        ("checkout", "-qb", "change"),
    ):
        _git(work, *args)
    default = work / "policies" / "default.yaml"
    default.write_text(default.read_text().replace("high: {enter: 0.1, exit: 0.06}", "high: {enter: 0.2, exit: 0.06}"))
    (work / "policies" / "examples" / "new.yaml").write_text("name: brand-new\n")
    _git(work, "add", ".")
    _git(work, "commit", "-qm", "change")
    summary = tmp_path / "summary.md"
    env = {
        **os.environ,
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        "BASE_REF": "main",
        "GITHUB_STEP_SUMMARY": str(summary),
        "RUNNER_TEMP": str(tmp_path / "runner"),
    }
    for name in ("Check every policy", "Diff each changed policy against the base branch"):
        done = subprocess.run(["bash", "-c", steps[name]["run"]], cwd=work, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    text = summary.read_text()
    assert "### `policies/default.yaml`" in text and "bands.high.enter: 0.1 -> 0.2" in text
    assert "### `policies/examples/new.yaml`" in text and "new policy (not on main)" in text
