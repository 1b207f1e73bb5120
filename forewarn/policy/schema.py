"""The policy file, as pydantic models. YAML keys are kebab-case, Python fields snake_case.

``python -m forewarn.policy.schema > policies/schema.json`` writes the JSON Schema generated from these
models (editors use it to complete and check policy files).

Terms:
    band: low, moderate or high. An instance enters a band when its probability reaches ``enter`` and
        leaves it when the probability falls below ``exit`` (hysteresis), after ``min-dwell-minutes``.
    rule: a match and an action; the first rule that matches an instance decides for it.
    guardrails: limits on how much of the fleet one cycle (or a sliding window) may change.
    fallback: the static policy used when the model is missing, stale or failed validation.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field

from forewarn.policy.actions import ACTIONS, ActionSpec, PolicyModel, get_action
from forewarn.policy.numbers import (
    MAX_CYCLES,
    TEN_YEARS_HOURS,
    YEAR_MINUTES,
    Count,
    Cycles,
    MetricValue,
    Minutes,
    Percent,
    PositiveMinutes,
    Probability,
    within,
)
from forewarn.schemas import ActionType, Band, PolicyMode, VelocityLimits

Problem = tuple[tuple[str | int, ...], str]
"""A semantic problem: the YAML path of the offending key and what is wrong."""


class Threshold(PolicyModel):
    """Enter the band at or above ``enter``; leave it below ``exit`` (``exit`` < ``enter``)."""

    enter: Probability
    exit: Probability


class Bands(PolicyModel):
    """Band thresholds with hysteresis, and how long an instance stays in a band before leaving it."""

    high: Threshold = Field(default_factory=lambda: Threshold(enter=0.6, exit=0.45))
    moderate: Threshold = Field(default_factory=lambda: Threshold(enter=0.3, exit=0.2))
    min_dwell_minutes: Minutes = 10.0


class Match(PolicyModel):
    """Conditions on one instance; every condition given must hold, absent ones match anything."""

    band: Band | None = None
    tags: dict[str, str] = Field(default_factory=dict, description="instance tags; value '*' matches any value")
    groups: list[str] = Field(default_factory=list, description="the instance's group is one of these")
    workload_kinds: list[str] = Field(default_factory=list, description="a task of one of these kinds runs there")
    model_fresh: bool | None = Field(default=None, description="false: only when the fallback policy is in force")


class Rule(PolicyModel):
    """A named rule: when ``match`` holds, do ``action``."""

    name: str = Field(min_length=1)
    match: Match = Field(default_factory=Match)
    action: ActionSpec


class Window(PolicyModel):
    """At most ``percent`` of the fleet touched within any ``window_minutes``."""

    percent: Percent = 25.0
    window_minutes: PositiveMinutes = 60.0


class CircuitBreaker(PolicyModel):
    """Fall back to shadow (plans recorded, never run) when the high-risk share of the fleet jumps or ramps.

    It trips when the share grew since the previous cycle by more than ``max_high_risk_jump_percent`` points
    (a spike), or stands more than ``max_high_risk_rise_percent`` points above its trailing baseline (the mean
    of the last ``baseline_cycles`` cycles while it was closed: a slow ramp). Once tripped it stays open for
    ``calm_cycles`` calm cycles in a row (no spike, no rise above the baseline, which does not move while it
    is open), then closes on the next calm one, or when an operator resets it (``forewarn policy reset-breaker``).
    """

    max_high_risk_jump_percent: Percent = 20.0
    max_high_risk_rise_percent: Percent = 30.0
    baseline_cycles: Annotated[int, Field(ge=1, le=MAX_CYCLES), within(1, MAX_CYCLES, unit=" cycles")] = 12
    calm_cycles: Cycles = 3


class Guardrails(PolicyModel):
    """Velocity limits enforced on every plan before anything acts."""

    max_actions_per_cycle: Count = 20
    max_concurrent_migrations: Count = 10
    max_migrations_per_target: Count = 2
    max_actions_per_type: dict[ActionType, Count] = Field(default_factory=dict)
    max_fleet_percent_per_cycle: Percent = 10.0
    max_fleet_percent_per_window: Window = Field(default_factory=Window)
    cooldown_minutes: Minutes = 30.0
    circuit_breaker: CircuitBreaker = Field(default_factory=CircuitBreaker)
    max_plan_age_minutes: PositiveMinutes = 60.0
    """``plan approve`` refuses a recommended plan older than this (the fleet has moved on: re-plan instead)."""


class Fallback(PolicyModel):
    """Static policy for when the model cannot be trusted: any threshold reached -> ``action``."""

    max_model_age_hours: Annotated[
        float,
        Field(gt=0.0, le=TEN_YEARS_HOURS, allow_inf_nan=False),
        within(0.0, TEN_YEARS_HOURS, lo_open=True, unit=" hours (ten years)"),
    ] = 48.0
    """A model is stale when the data it learned from ended longer ago than this, by the cycle's clock."""
    max_feature_age_minutes: PositiveMinutes = 30.0
    """Features older than this at the cycle's time count as missing: the fallback decides that instance."""
    static_thresholds: dict[str, MetricValue] = Field(default_factory=dict)
    action: ActionType = ActionType.CORDON


class Policy(PolicyModel):
    """One policy file."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    mode: PolicyMode = PolicyMode.SHADOW
    horizon_minutes: Annotated[
        int, Field(gt=0, le=YEAR_MINUTES), within(0, YEAR_MINUTES, lo_open=True, unit=" minutes (a year)")
    ] = 60
    bands: Bands = Field(default_factory=Bands)
    rules: list[Rule] = Field(default_factory=list)
    opt_out_tag: str = Field(default="forewarn/opt-out", min_length=1)
    guardrails: Guardrails = Field(default_factory=Guardrails)
    fallback: Fallback = Field(default_factory=Fallback)
    explain: Literal["risky", "all"] = "risky"
    """Which scores carry their top features: ``risky`` (every score from the moderate band's entry up, and
    a sample of the rest; the contributions cost more than the scores) or ``all``."""

    def velocity_limits(self) -> VelocityLimits:
        """The guardrails as the shared :class:`VelocityLimits` record."""
        g = self.guardrails
        return VelocityLimits(
            max_actions_per_cycle=g.max_actions_per_cycle,
            max_concurrent_migrations=g.max_concurrent_migrations,
            max_migrations_per_target=g.max_migrations_per_target,
            max_fleet_fraction=g.max_fleet_percent_per_cycle / 100.0,
        )

    def model_is_fresh(self, data_end: datetime | None, now: datetime) -> bool:
        """Whether a model whose training data ended at ``data_end`` is young enough at the cycle's time
        ``now`` (``fallback.max-model-age-hours``); when it was built does not matter."""
        if data_end is None:
            return False
        return now - data_end <= timedelta(hours=self.fallback.max_model_age_hours)


def _band_problems(bands: Bands) -> list[Problem]:
    problems: list[Problem] = []
    for band in ("high", "moderate"):
        t: Threshold = getattr(bands, band)
        if t.exit >= t.enter:
            problems.append((("bands", band, "exit"), f"exit ({t.exit}) must be below enter ({t.enter})"))
    if bands.moderate.enter >= bands.high.enter:
        problems.append(
            (("bands", "moderate", "enter"), f"must be below high.enter ({bands.high.enter}), or moderate is empty")
        )
    if bands.moderate.exit >= bands.high.exit:
        problems.append((("bands", "moderate", "exit"), f"must be below high.exit ({bands.high.exit})"))
    return problems


def semantic_problems(policy: Policy) -> list[Problem]:
    """Checks beyond the schema: thresholds in order, unique rule names, sane limits, valid action params."""
    problems = _band_problems(policy.bands)
    seen: set[str] = set()
    for index, rule in enumerate(policy.rules):
        if rule.name in seen:
            problems.append((("rules", index, "name"), f"rule name '{rule.name}' is used twice; names must be unique"))
        seen.add(rule.name)
        for path, message in get_action(rule.action.type).validate(rule.action):
            problems.append((("rules", index, "action", *path), message))
    g = policy.guardrails
    if g.max_fleet_percent_per_cycle > g.max_fleet_percent_per_window.percent:
        problems.append(
            (
                ("guardrails", "max-fleet-percent-per-cycle"),
                f"must not exceed max-fleet-percent-per-window.percent ({g.max_fleet_percent_per_window.percent})",
            )
        )
    if g.max_migrations_per_target > g.max_concurrent_migrations:
        problems.append((("guardrails", "max-migrations-per-target"), "must not exceed max-concurrent-migrations"))
    for kind, cap in g.max_actions_per_type.items():
        if cap > g.max_actions_per_cycle:
            problems.append(
                (("guardrails", "max-actions-per-type", kind.value), "must not exceed max-actions-per-cycle")
            )
    if policy.fallback.action.value not in ACTIONS:
        problems.append((("fallback", "action"), f"unknown action type '{policy.fallback.action}'"))
    return problems


def json_schema() -> dict[str, object]:
    """The JSON Schema of a policy file (kebab-case keys)."""
    schema = Policy.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Forewarn policy"
    return schema


def main() -> None:
    """Print the JSON Schema (``python -m forewarn.policy.schema > policies/schema.json``)."""
    print(json.dumps(json_schema(), indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
