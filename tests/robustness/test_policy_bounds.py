"""Every number a policy holds has a finite range, and a policy at the edge of every range still runs cycles:
no duration overflows a ``timedelta`` and no threshold is NaN."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from forewarn.errors import PolicyError
from forewarn.policy import load_policy
from forewarn.policy.loader import load_policy_text
from forewarn.policy.numbers import MAX_COUNT, MAX_CYCLES, TEN_YEARS_HOURS, YEAR_MINUTES
from forewarn.policy.schema import json_schema
from tests.test_policy_corpus import _cycle

EDGE = f"""\
name: edge
mode: recommend
horizon-minutes: {YEAR_MINUTES}
bands: {{min-dwell-minutes: {YEAR_MINUTES}}}
rules:
  - name: fence
    match: {{band: high}}
    action: {{type: cordon}}
guardrails:
  max-actions-per-cycle: {MAX_COUNT}
  max-concurrent-migrations: {MAX_COUNT}
  cooldown-minutes: {YEAR_MINUTES}
  max-plan-age-minutes: {YEAR_MINUTES}
  max-fleet-percent-per-window: {{percent: 100, window-minutes: {YEAR_MINUTES}}}
  circuit-breaker: {{baseline-cycles: {MAX_CYCLES}, calm-cycles: {MAX_CYCLES}}}
fallback:
  max-model-age-hours: {TEN_YEARS_HOURS}
  max-feature-age-minutes: {YEAR_MINUTES}
  static-thresholds: {{cpu_mean_1h: 1.0e12, memory_mean_1h: -1.0e12}}
"""


def _numbers(node: Any, path: str, defs: dict[str, Any], out: dict[str, dict[str, Any]]) -> None:
    if isinstance(node, dict):
        if "$ref" in node:
            _numbers(defs[node["$ref"].split("/")[-1]], path, defs, out)
            return
        if node.get("type") in ("number", "integer"):
            out[path] = node
        for key in ("properties", "additionalProperties", "items"):
            value = node.get(key)
            if key == "properties" and isinstance(value, dict):
                for name, child in value.items():
                    _numbers(child, f"{path}.{name}" if path else name, defs, out)
            elif isinstance(value, dict):
                _numbers(value, f"{path}[]", defs, out)
        for key in ("anyOf", "oneOf", "allOf"):
            for child in node.get(key, []):
                _numbers(child, path, defs, out)


def test_every_number_of_the_policy_schema_has_a_lower_and_an_upper_bound() -> None:
    schema = json_schema()
    numbers: dict[str, dict[str, Any]] = {}
    _numbers(schema, "", schema.get("$defs", {}), numbers)
    assert len(numbers) >= 25, sorted(numbers)  # bands, guardrails, fallback and every action's parameters
    unbounded = [
        path
        for path, spec in numbers.items()
        if not ({"minimum", "exclusiveMinimum"} & spec.keys() and {"maximum", "exclusiveMaximum"} & spec.keys())
    ]
    assert unbounded == []


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1e400", "1.0e+16"])
def test_no_duration_field_takes_a_non_finite_or_absurd_value(value: str) -> None:
    for key in (
        "bands: {min-dwell-minutes: %s}",
        "guardrails: {cooldown-minutes: %s}",
        "fallback: {max-model-age-hours: %s}",
    ):
        with pytest.raises(PolicyError, match="must be a finite number"):
            load_policy_text(f"name: x\n{key % value}\n", "p.yaml")


def test_a_policy_at_the_edge_of_every_range_runs_two_cycles(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(EDGE, encoding="utf-8")
    policy = load_policy(path)
    assert policy.model_is_fresh(datetime(2015, 1, 1, tzinfo=UTC), datetime(2024, 3, 4, tzinfo=UTC))
    assert not policy.model_is_fresh(datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 12, 1, tzinfo=UTC))
    for _ in range(2):  # the second reads the first's bands, cooldowns and window
        ctx, _adapter = _cycle(path, tmp_path)
    plans = ctx.journal.list()
    assert len(plans) == 2 and sorted(a.instance_id for a in plans[0].actions) == ["vm-0", "vm-1"]
