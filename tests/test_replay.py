"""The closed-loop replay on a small hand-made fleet, with scorers whose foresight we choose."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from forewarn.dataset import Dataset, write_dataset
from forewarn.demo import contenders
from forewarn.errors import ConfigError
from forewarn.execution.journal import Journal
from forewarn.policy.loader import load_policy
from forewarn.replay import Replay, ReplayConfig, Scorer, static_scorer
from forewarn.schemas import ActionState, ActionType, PlanState, RiskScore
from forewarn.settings import PROJECT_ROOT
from forewarn.store.repository import Repository

T0 = pd.Timestamp("2024-03-01T00:00:00Z")
IDS = [f"i{k}" for k in range(6)]
DEFAULT = load_policy(PROJECT_ROOT / "policies" / "default.yaml")
POLICY = DEFAULT.model_copy(  # a fleet of six: per-cycle and per-window shares and the breaker must allow one move
    update={
        "guardrails": DEFAULT.guardrails.model_copy(
            update={
                "max_fleet_percent_per_cycle": 50.0,
                "max_fleet_percent_per_window": DEFAULT.guardrails.max_fleet_percent_per_window.model_copy(
                    update={"percent": 100.0}
                ),
                "circuit_breaker": DEFAULT.guardrails.circuit_breaker.model_copy(
                    update={"max_high_risk_jump_percent": 100.0}
                ),
            }
        )
    }
)


def fleet(workloads: pd.DataFrame | None = None) -> tuple[Dataset, pd.DataFrame]:
    """Six instances over six hours; i1 fails at 3h, i2 at 4h (each down 30 minutes)."""
    stamps = pd.date_range(T0, periods=72, freq="5min")
    telemetry = pd.DataFrame({"instance_id": [i for i in IDS for _ in stamps], "timestamp": list(stamps) * len(IDS)})
    telemetry["cpu"] = 0.5
    failures = pd.DataFrame(
        {"instance_id": ["i1", "i2"], "timestamp": [T0 + pd.Timedelta(hours=3), T0 + pd.Timedelta(hours=4)]}
    )
    failures["recovery_minutes"] = 30.0
    features = telemetry[["instance_id", "timestamp"]].rename(columns={"timestamp": "event_timestamp"})
    features["memory_mean_1h"] = 0.5
    features["error_count_mean_1h"] = 0.0
    hot = (features["instance_id"] == "i1") & (features["event_timestamp"] >= T0 + pd.Timedelta(hours=2))
    features.loc[hot, "memory_mean_1h"] = 0.99
    return Dataset(telemetry=telemetry, failures=failures, workloads=workloads), features


def oracle(data: Dataset, lead_minutes: float, flag: set[str] | None = None) -> Scorer:
    """Scores 0.9 for an instance failing within ``lead_minutes`` (or always, for those in ``flag``)."""

    def score(features: pd.DataFrame, now: datetime) -> list[RiskScore]:
        soon = data.failures[
            (data.failures["timestamp"] > now) & (data.failures["timestamp"] <= now + timedelta(minutes=lead_minutes))
        ]
        hot = set(soon["instance_id"]) | (flag or set())
        return [
            RiskScore(
                instance_id=i,
                timestamp=now,
                probability=0.9 if i in hot else 0.0,
                horizon_minutes=60,
                model_version="oracle",
            )
            for i in features["instance_id"]
        ]

    return score


def replay(tmp_path: Path, data: Dataset, features: pd.DataFrame, **config: float) -> Replay:
    return Replay(data, features, start=T0, workdir=tmp_path, config=ReplayConfig(**config))  # type: ignore[arg-type]


def test_reactive_loses_the_work_on_every_failed_instance(tmp_path: Path) -> None:
    data, features = fleet()
    result = replay(tmp_path, data, features).run("reactive")
    assert (result.failures, result.failures_hitting_work, result.tasks_interrupted) == (2, 2, 2)
    assert result.interrupted_task_hours == pytest.approx(2 * 10 / 60)  # unit tasks: the restart only
    assert result.migrations == result.plans == result.scale_actions == 0
    assert result.capacity_overhead == 0.0


def test_a_timely_warning_moves_the_work_and_no_failure_hits_it(tmp_path: Path) -> None:
    data, features = fleet()
    result = replay(tmp_path, data, features).run("oracle", policy=POLICY, scorer=oracle(data, 60))
    assert result.failures == 2 and result.predicted_in_time == 2
    assert result.failures_hitting_work == 0 and result.interrupted_task_hours == 0.0
    assert result.migrations >= 2 and result.unneeded_migrations == 0
    assert result.capacity_overhead > 0.0  # the sources were cordoned for a while
    assert result.overhead_timeline[-1] == 0.0  # and released once repaired


def test_a_task_still_migrating_when_its_source_fails_is_interrupted(tmp_path: Path) -> None:
    data, features = fleet()
    late = oracle(data, 10)  # warned one cycle before the failure
    slow = replay(tmp_path / "slow", data, features, migration_minutes=30).run("slow", policy=POLICY, scorer=late)
    quick = replay(tmp_path / "quick", data, features, migration_minutes=0).run("quick", policy=POLICY, scorer=late)
    assert slow.migrations >= 2 and slow.failures_hitting_work == 2
    assert quick.failures_hitting_work == 0


def test_false_alarms_count_as_unneeded_and_release_once_the_band_is_low(tmp_path: Path) -> None:
    data, features = fleet()
    flagged = oracle(data, 0, flag={"i0"})

    def first_hour_only(features: pd.DataFrame, now: datetime) -> list[RiskScore]:
        scores = flagged(features, now)
        return scores if now < (T0 + pd.Timedelta(hours=1)).to_pydatetime() else [
            s.model_copy(update={"probability": 0.0}) for s in scores
        ]  # fmt: skip

    result = replay(tmp_path, data, features).run("noisy", policy=POLICY, scorer=first_hour_only)
    assert result.migrations >= 1 and result.unneeded_migrations == result.migrations
    assert result.releases >= 1  # the policy's release, not a timer, gave the capacity back
    assert max(result.overhead_timeline) > 0.0 and result.overhead_timeline[-1] == 0.0


def test_static_thresholds_act_on_current_telemetry(tmp_path: Path) -> None:
    data, features = fleet()
    scorer = static_scorer(dict(POLICY.fallback.static_thresholds), POLICY.horizon_minutes)
    result = replay(tmp_path, data, features).run("static", policy=POLICY, scorer=scorer)
    assert result.predicted_in_time == 1  # i1 ran hot before failing; i2 gave no sign
    assert result.failures_hitting_work == 1


def test_tasks_come_and_go_as_workloads_say(tmp_path: Path) -> None:
    hour = pd.Timedelta(hours=1)
    workloads = pd.DataFrame(
        {
            "task_id": ["ends-early", "arrives-late", "runs-through"],
            "instance_id": ["i1", "i2", "i2"],
            "start": [T0, T0 + 3.5 * hour, T0],
            "end": [T0 + 2 * hour, T0 + 6 * hour, pd.NaT],
            "cpu": 0.1,
            "memory": 0.1,
            "kind": "batch",
            "data_size": 0.0,
            "expected_duration": 60.0,
        }
    )
    data, features = fleet(workloads)
    result = replay(tmp_path, data, features).run("reactive")
    assert result.failures_hitting_work == 1  # i1's task had ended; i2 carries two when it fails
    assert result.tasks_interrupted == 2
    assert result.interrupted_task_hours == pytest.approx((30 + 10) / 60 + (0 + 10) / 60)


def test_compare_names_each_run_and_refuses_unknown_entries(tmp_path: Path) -> None:
    other = tmp_path / "cautious.yaml"
    other.write_text(
        (PROJECT_ROOT / "policies" / "default.yaml").read_text().replace("name: default", "name: cautious")
    )
    runs = contenders(POLICY, ["reactive", "static", str(other), str(other)])
    assert [(r.name, r.kind) for r in runs] == [
        ("forewarn", "model"), ("reactive", "reactive"), ("static", "static"), ("cautious", "model"),
        ("cautious-2", "model"),
    ]  # fmt: skip
    with pytest.raises(ConfigError, match=r"--compare.*neither reactive, static nor a policy file"):
        contenders(POLICY, ["reactiv"])


def test_cli_reports_a_bad_compare_entry_in_one_line(tmp_path: Path) -> None:
    from forewarn.cli import app

    data, _ = fleet()
    write_dataset(data, tmp_path / "ds")
    result = CliRunner().invoke(app, ["replay", str(tmp_path / "ds"), "--compare", "reactive,nonsense"])
    assert result.exit_code == 2
    assert "nonsense" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_cli_replays_each_policy_and_writes_json_and_report(tmp_path: Path) -> None:
    import json

    import numpy as np
    import xgboost as xgb

    from forewarn.cli import app
    from forewarn.model.calibrate import Calibrator
    from forewarn.model.registry import ModelRegistry
    from forewarn.model.scoring import TrainedModel
    from forewarn.pipeline import build_features

    data, _ = fleet()
    write_dataset(data, tmp_path / "ds")
    names = [c for c in build_features(data).columns if c not in ("instance_id", "event_timestamp")]
    rng = np.random.default_rng(0)
    x, y = rng.random((400, len(names))), (rng.random(400) < 0.1).astype(float)
    booster = xgb.train({"objective": "binary:logistic", "nthread": 1}, xgb.DMatrix(x, label=y), num_boost_round=5)
    model = TrainedModel(booster, Calibrator.fit(booster.predict(xgb.DMatrix(x)), y), feature_names=names,
                         horizon_minutes=60, version="20240301T000000Z-test00", metrics={"pr_auc": 0.5})  # fmt: skip
    registry = ModelRegistry(tmp_path / "models")
    card = registry.register(model, data_window=(T0.to_pydatetime(), T0.to_pydatetime()), validation={"success": True})
    registry.promote(card.version)
    other = tmp_path / "cautious.yaml"
    other.write_text(
        (PROJECT_ROOT / "policies" / "default.yaml").read_text().replace("name: default", "name: cautious")
    )
    out = tmp_path / "out.json"
    argv = ["replay", str(tmp_path / "ds"), "--model", str(tmp_path / "models"), "--compare", f"reactive,{other}",
            "--out", str(tmp_path / "report"), "--json", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    policies = json.loads(out.read_text())["policies"]
    assert list(policies) == ["forewarn", "reactive", "cautious"]
    wanted = {"interrupted_task_hours", "failures_hitting_work", "migrations", "unneeded_migrations", "scale_actions",
              "capacity_overhead"}  # fmt: skip
    assert all(wanted <= set(row) for row in policies.values())
    assert policies["reactive"]["failures_hitting_work"] == 2
    assert "| interrupted task hours |" in (tmp_path / "report" / "report.md").read_text()


@pytest.mark.slow
def test_replay_on_its_own_trains_first_and_journals_its_plans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`forewarn replay DATASET --compare reactive,static --json OUT` with an empty FOREWARN_HOME: it trains a
    model on the data before the replayed window, replays through the one cycle, and `forewarn plan list`
    shows the policy run's plans afterwards."""
    import json

    from forewarn.cli import app
    from forewarn.execution.journal import Journal
    from forewarn.sim import SimConfig, write
    from forewarn.store import Repository

    home = tmp_path / "home"
    monkeypatch.setenv("FOREWARN_HOME", str(home))
    monkeypatch.delenv("FOREWARN_DATABASE_URL", raising=False)
    dataset = write(SimConfig(instances=40, days=3, seed=5), tmp_path / "ds")
    out = tmp_path / "out.json"
    argv = ["replay", str(dataset), "--compare", "reactive,static", "--json", str(out), "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert "training one on the data before" in result.output
    report = json.loads(out.read_text())
    assert list(report["policies"]) == ["forewarn", "reactive", "static"]
    for row in report["policies"].values():
        assert {"releases", "restores", "interrupted_task_hours", "plans"} <= set(row)
    forewarn = report["policies"]["forewarn"]
    assert report["policies"]["reactive"]["restores"] == report["policies"]["reactive"]["failures_hitting_work"]
    plans = Journal(Repository(f"sqlite:///{home / 'forewarn.db'}")).list()
    assert len([p for p in plans if p.policy == report["policy"]]) == forewarn["plans"] > 0
    listed = CliRunner().invoke(app, ["plan", "list"])
    assert listed.exit_code == 0 and plans[-1].plan_id in listed.output


def test_the_aggressive_example_replays_without_a_failed_plan(tmp_path: Path) -> None:
    """aggressive.yaml as shipped: its notify rule (a ``channel``) for database work, migrations for the rest."""
    hour = pd.Timedelta(hours=1)
    workloads = pd.DataFrame(
        {
            "task_id": ["db", "batch-1", "batch-2"],
            "instance_id": ["i2", "i1", "i3"],
            "start": [T0, T0, T0],
            "end": [pd.NaT, T0 + 5 * hour, pd.NaT],
            "cpu": 0.2,
            "memory": 0.2,
            "kind": ["database", "batch", "batch"],
            "data_size": 0.0,
            "expected_duration": 60.0,
        }
    )
    data, features = fleet(workloads)
    policy = load_policy(PROJECT_ROOT / "policies" / "examples" / "aggressive.yaml")
    result = replay(tmp_path, data, features).run("aggressive", policy=policy, scorer=oracle(data, 60))
    assert result.plans > 0
    plans = Journal(Repository(f"sqlite:///{Path(result.home) / 'forewarn.db'}")).list()
    ended_badly = [
        (p.plan_id, p.state, p.notes[-1:]) for p in plans if p.state in (PlanState.FAILED, PlanState.ROLLED_BACK)
    ]
    assert ended_badly == []
    done = {(a.type, a.state) for p in plans for a in p.actions}
    assert (ActionType.NOTIFY, ActionState.SUCCEEDED) in done  # the database instance: told, not moved
    assert (ActionType.MIGRATE, ActionState.SUCCEEDED) in done
