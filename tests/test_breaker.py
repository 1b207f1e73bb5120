"""The latched circuit breaker: open for its calm cycles after a spike, tripped by a slow ramp against a baseline
that does not move while it is open, closed by calm cycles or an operator's reset (CLI and shared state)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forewarn import service
from forewarn.cli import app
from forewarn.policy import GuardrailState, enforce
from forewarn.policy.schema import Policy
from forewarn.schemas import Action, ActionType, Plan, PlanState, PolicyMode
from forewarn.settings import Settings

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def _policy(**breaker: float) -> Policy:
    config = {"max-high-risk-jump-percent": 20, "max-high-risk-rise-percent": 30, "baseline-cycles": 12}
    config.update({k.replace("_", "-"): v for k, v in breaker.items()})
    guardrails = {"max-fleet-percent-per-cycle": 100, "circuit-breaker": config}
    return Policy.model_validate({"name": "b", "mode": "auto", "guardrails": guardrails})


def _cycles(policy: Policy, highs: list[int], state: GuardrailState | None = None) -> tuple[list[Plan], GuardrailState]:
    """One plan per cycle (one cordon each), a minute apart, on a fleet of 100 with ``highs`` high-risk."""
    state = state or GuardrailState()
    plans = []
    for n, high in enumerate(highs):
        plan = Plan(policy="b", mode=PolicyMode.AUTO, actions=[Action(type=ActionType.CORDON, instance_id=f"i{n}")])
        plan, state = enforce(
            plan, policy, fleet_size=100, high_risk_count=high, state=state, now=T0 + timedelta(minutes=n)
        )
        plans.append(plan)
    return plans, state


def _shadow(plans: list[Plan]) -> list[bool]:
    return [p.state is PlanState.SHADOW for p in plans]


def test_one_spike_keeps_the_breaker_open_for_its_calm_cycles() -> None:
    plans, state = _cycles(_policy(calm_cycles=3), [5, 5, 40, 40, 40, 40, 40, 40])
    # the spike's cycle and the three calm cycles after it are shadow; the fourth calm cycle closes it
    assert _shadow(plans) == [False, False, True, True, True, True, False, False]
    assert "circuit-breaker tripped" in plans[2].notes[0] and "5.0% to 40.0%" in plans[2].notes[0]
    assert "calm cycle 3 of 3" in plans[5].notes[0]
    assert "closed after 3 calm cycle(s)" in plans[6].notes[0]
    assert not state.breaker.open


def test_a_spike_while_open_starts_the_calm_count_again() -> None:
    plans, _ = _cycles(_policy(calm_cycles=2), [5, 30, 30, 55, 55, 55, 55])
    assert _shadow(plans) == [False, True, True, True, True, True, False]


def test_a_slow_ramp_trips_it_though_no_cycle_jumps() -> None:
    ramp = [5, 5, 5, 13, 21, 29, 37, 45, 53]  # +8 points a cycle: under the 20-point jump every time
    plans, state = _cycles(_policy(calm_cycles=2), ramp)
    assert _shadow(plans) == [False] * 8 + [True]
    assert "above its baseline" in plans[-1].notes[0]
    baseline = list(state.breaker.baseline)
    # while open, the baseline does not follow the ramp: the higher level is never taken as normal
    plans, state = _cycles(_policy(calm_cycles=2), [61, 69, 77], state)
    assert _shadow(plans) == [True, True, True] and state.breaker.baseline == baseline


def test_the_old_one_cycle_breaker_would_have_let_the_ramp_through() -> None:
    plans, _ = _cycles(_policy(max_high_risk_rise_percent=100), [5, 5, 5, 13, 21, 29, 37, 45, 53])
    assert not any(_shadow(plans))  # the jump alone never trips on this ramp: the rise check is what catches it


def test_an_operator_reset_closes_it_and_restarts_the_baseline() -> None:
    plans, state = _cycles(_policy(calm_cycles=5), [5, 60])
    assert _shadow(plans) == [False, True]
    state.breaker.reset()
    plans, state = _cycles(_policy(calm_cycles=5), [60, 60], state)
    assert _shadow(plans) == [False, False] and state.breaker.baseline == [60.0, 60.0]


def test_reset_breaker_cli_wins_over_a_cycle_that_read_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    monkeypatch.setenv("FOREWARN_HOME", str(tmp_path / "cli"))
    monkeypatch.setenv("FOREWARN_DATABASE_URL", url)
    cycle = service.context(dry_run=True, settings=Settings(home=tmp_path / "a", database_url=url))
    _, state = _cycles(_policy(), [5, 60])
    cycle.save_state(engine=cycle.engine(), guard_state=state)
    shown = CliRunner().invoke(app, ["policy", "breaker"])
    assert shown.exit_code == 0 and "OPEN" in shown.output, shown.output
    stale = cycle.guard_state()  # a cycle reads the open breaker ...
    reset = CliRunner().invoke(app, ["policy", "reset-breaker"])
    assert reset.exit_code == 0 and "reset: circuit breaker closed" in reset.output, reset.output
    stale.breaker.calm += 1  # ... and saves after the operator's reset: the reset stands
    cycle.save_state(engine=cycle.engine(), guard_state=stale)
    other = service.context(dry_run=True, settings=Settings(home=tmp_path / "b", database_url=url))
    assert not other.guard_state().breaker.open
    assert "closed" in CliRunner().invoke(app, ["policy", "breaker"]).output
