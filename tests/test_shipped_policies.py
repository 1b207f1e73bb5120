"""Every policy shipped under policies/ runs the production cycle as written: its plan is journalled and none
ends FAILED or ROLLED_BACK (tests/test_replay.py replays aggressive.yaml acting on a fleet)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from forewarn.cycle import run_cycle
from forewarn.policy.loader import load_policy
from forewarn.schemas import PlanState
from forewarn.settings import PROJECT_ROOT
from tests.test_cycle import T0, Oracle, cloud, context

SHIPPED = sorted((PROJECT_ROOT / "policies").rglob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_a_shipped_policy_runs_cycles(path: Path, tmp_path: Path) -> None:
    ctx = context(tmp_path, policy=load_policy(path))
    oracle = Oracle()
    oracle.risk.update({"i1": 0.95, "i2": 0.3})
    for n in range(3):
        result = run_cycle(ctx, cloud(ctx), T0 + timedelta(minutes=10 * n), scoring=oracle, model_version="oracle")
        assert result.plan is not None and ctx.journal.exists(result.plan.plan_id)
        assert result.plan.state not in (PlanState.FAILED, PlanState.ROLLED_BACK), result.plan.notes
