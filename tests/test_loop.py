"""The whole loop, end to end, as `make demo` runs it: flows in process, then the closed-loop replay."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from rich.console import Console

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    from forewarn.demo import run_demo

    out = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as mp:  # run_demo points FOREWARN_* at `out`; undo that afterwards
        for name in ("FOREWARN_HOME", "FOREWARN_DATASET", "PREFECT_HOME"):
            mp.setenv(name, os.environ.get(name, ""))
        results = run_demo(out=out, instances=60, days=4, seed=11, console=Console(file=io.StringIO()))
    return out, results


def test_demo_runs_every_stage_and_writes_its_report(demo_run: tuple[Path, dict[str, object]]) -> None:
    out, results = demo_run
    policies = results["policies"]
    assert isinstance(policies, dict)
    forewarn, reactive = policies["forewarn"], policies["reactive"]
    assert forewarn["failures"] == reactive["failures"] > 0  # the same failures strike both runs
    assert forewarn["plans"] > 0 and reactive["plans"] == 0
    assert reactive["failures_predicted_in_time"] == 0 and reactive["migrations"] == 0
    assert json.loads((out / "results.json").read_text()) == results
    report = (out / "report.md").read_text()
    assert "| failures |" in report and "report.png" in report
    assert (out / "report.png").stat().st_size > 10_000


def test_demo_leaves_a_model_a_journal_and_feast_state(demo_run: tuple[Path, dict[str, object]]) -> None:
    from forewarn.execution.journal import Journal
    from forewarn.model.registry import ModelRegistry
    from forewarn.store import Repository

    out, results = demo_run
    state = out / "state"
    registry = ModelRegistry(state / "models")
    assert registry.current_version() == results["model_version"]
    card = registry.card(str(results["model_version"]))
    assert card.validation["success"] is True and card.metrics["n_train"] > 0
    plans = Journal(Repository(f"sqlite:///{state / 'forewarn.db'}")).list()
    forewarn = results["policies"]["forewarn"]  # type: ignore[index]
    # the score-and-allocate flow's plan, then every plan of the replay's one cycle (policy and restores)
    policy_plans = [p for p in plans if p.policy == results["policy"]]
    assert len(policy_plans) == forewarn["plans"] + 1
    assert plans[0].created_at.isoformat() == results["window"]["start"]  # type: ignore[index]
    restores = [p for p in plans if p.policy == "restore-failed-instance" and p.actions]
    assert len(restores) == forewarn["restores"]
    assert (state / "features").is_dir()


def test_another_seed_gives_other_numbers(demo_run: tuple[Path, dict[str, object]], tmp_path: Path) -> None:
    from forewarn.demo import run_replay
    from forewarn.sim import SimConfig, write

    out, results = demo_run
    other = write(SimConfig(instances=60, days=2, seed=12), tmp_path / "other")
    again = run_replay(
        dataset=other,
        model_dir=out / "state" / "models",
        policy=None,
        start=None,
        console=Console(file=io.StringIO()),
        out=tmp_path / "replay",
    )
    assert again["policies"] != results["policies"]
    assert again["model_version"] == results["model_version"]
