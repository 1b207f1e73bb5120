"""Policy files: the action registry, the shipped policies and docs, the generated schema, and errors."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path

import pandas as pd
import pytest

from forewarn.errors import PolicyError
from forewarn.policy import diff_policies, load_policy, load_policy_text, validate_paths
from forewarn.policy.actions import ACTIONS, ActionSpec, PolicyAction
from forewarn.policy.schema import json_schema
from forewarn.schemas import ActionType, VelocityLimits

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
DEFAULT = POLICIES / "default.yaml"

GOOD = """\
name: demo
mode: auto
bands:
  high: {enter: 0.6, exit: 0.45}
  moderate: {enter: 0.3, exit: 0.2}
rules:
  - name: evacuate
    match: {band: high}
    action: {type: migrate, split: {enabled: true, min-chunk: 0.25}}
  - name: ease
    match: {band: moderate}
    action: {type: scale-back, factor: 0.7, reserve-buffer: 0.1}
guardrails:
  max-actions-per-cycle: 20
  max-actions-per-type: {migrate: 10}
"""


def _yaml_blocks(markdown: Path) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", markdown.read_text(encoding="utf-8"), flags=re.S)


def test_every_action_type_is_registered_under_its_yaml_name() -> None:
    assert set(ACTIONS) == {kind.value for kind in ActionType}
    union = typing.get_args(typing.get_args(ActionSpec)[0])
    for name, cls in ACTIONS.items():
        assert issubclass(cls, PolicyAction)
        assert cls.name.value == name
        type_field = cls.params_model.model_fields["type"]
        assert typing.get_args(type_field.annotation) == (name,)
        assert cls.params_model in union, f"{name} params missing from ActionSpec"
        assert cls.params_model.model_json_schema()["additionalProperties"] is False
        assert cls().process(cls.params_model()) is not None  # every action has usable defaults


def test_shipped_policies_validate() -> None:
    files = sorted(POLICIES.rglob("*.yaml"))
    assert DEFAULT in files and len(files) >= 3
    assert validate_paths([POLICIES]) == []
    assert load_policy(DEFAULT).mode.value == "auto"


@pytest.mark.parametrize("doc", ["docs/policy.md", "policies/README.md"])
def test_yaml_examples_in_docs_validate(doc: str) -> None:
    blocks = _yaml_blocks(ROOT / doc)
    assert blocks, f"{doc} has no yaml examples"
    for index, block in enumerate(blocks):
        load_policy_text(block, source=f"{doc} example {index + 1}")


def test_schema_json_is_up_to_date() -> None:
    on_disk = json.loads((POLICIES / "schema.json").read_text(encoding="utf-8"))
    hint = "regenerate: python -m forewarn.policy.schema > policies/schema.json"
    assert on_disk == json.loads(json.dumps(json_schema())), hint


def test_velocity_limits_come_from_guardrails() -> None:
    limits = load_policy_text(GOOD).velocity_limits()
    assert limits == VelocityLimits(
        max_actions_per_cycle=20, max_concurrent_migrations=10, max_migrations_per_target=2, max_fleet_fraction=0.1
    )


BAD = [
    ("unknown key", GOOD.replace("split:", "splitt:"), (9, 29), "rules[0].action.splitt", "unknown key 'splitt'"),
    ("unknown top key", GOOD + "modes: auto\n", (16, 1), "modes", "allowed: bands"),
    ("bad type", GOOD.replace("factor: 0.7", "factor: lots"), (12, 40), "rules[1].action.factor", "valid number"),
    ("bad enum", GOOD.replace("mode: auto", "mode: yolo"), (2, 7), "mode", "allowed: shadow, recommend, auto"),
    ("duplicate key", GOOD.replace("mode: auto", "mode: auto\nmode: shadow"), (3, 1), "mode", "duplicate key"),
    (
        "object tag",
        GOOD.replace("mode: auto", "mode: !!python/object/apply:os.system [id]"),
        (2, 7),
        "mode",
        "not allowed",
    ),
    ("exit above enter", GOOD.replace("exit: 0.45", "exit: 0.7"), (4, 28), "bands.high.exit", "must be below enter"),
    ("moderate above high", GOOD.replace("enter: 0.3", "enter: 0.65"), (5, 21), "bands.moderate.enter", "below high"),
    (
        "unknown action",
        GOOD.replace("type: migrate", "type: evacuate"),
        (9, 20),
        "rules[0].action.type",
        "reserve-buffer",
    ),
    (
        "min above max",
        GOOD.replace("guardrails:", "  - {name: x, action: {type: autoscale, min: 5, max: 2}}\nguardrails:"),
        (13, 46),
        "rules[2].action.min",
        "must not exceed max",
    ),
    ("rule names", GOOD.replace("name: ease", "name: evacuate"), (10, 11), "rules[1].name", "unique"),
    ("percent range", GOOD + "  max-fleet-percent-per-cycle: 150\n", (16, 32), "max-fleet-percent-per-cycle", "100"),
    ("missing field", GOOD.replace("name: demo\n", ""), (1, 1), "name", "required"),
]


@pytest.mark.parametrize(("case", "text", "where", "field", "says"), BAD, ids=[b[0] for b in BAD])
def test_malformed_policy_gives_one_error_naming_file_line_column_and_field(
    case: str, text: str, where: tuple[int, int], field: str, says: str
) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy_text(text, source="p.yaml")
    error = info.value
    message = str(error)
    line, column = where
    assert error.file == "p.yaml" and (error.row, error.column) == where, message
    assert error.field is not None and field in error.field, message
    assert says in message
    assert message.startswith(f"p.yaml:{line}:{column}, field '") and "\n" not in message


def test_alias_bomb_is_refused() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefg":
        prev = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [" + ", ".join([f"*{prev}"] * 10) + "]\n"
    with pytest.raises(PolicyError, match="alias bomb") as info:
        load_policy_text(bomb, source="bomb.yaml")
    assert info.value.row is not None and info.value.field is not None


def test_too_many_aliases_and_recursion_are_refused() -> None:
    many = "name: x\ndescription: &d hi\nrules: [" + ", ".join(["*d"] * 101) + "]\n"
    with pytest.raises(PolicyError, match="aliases"):
        load_policy_text(many)
    with pytest.raises(PolicyError, match="refers to itself"):
        load_policy_text("name: &a [*a]\n")


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(PolicyError, match="YAML syntax") as info:
        load_policy_text("name: x\nrules: [\n", source="s.yaml")
    assert info.value.row is not None and info.value.row >= 2


def test_merge_keys_keep_working_and_override_is_not_a_duplicate() -> None:
    text = "name: m\nx-base: &base {enter: 0.6, exit: 0.45}\n"
    with pytest.raises(PolicyError, match="unknown key 'x-base'"):
        load_policy_text(text)
    ok = "name: m\nbands:\n  high: &h {enter: 0.7, exit: 0.5}\n  moderate:\n    <<: *h\n    enter: 0.3\n    exit: 0.2\n"
    assert load_policy_text(ok).bands.moderate.enter == 0.3


def test_validate_paths_reports_each_bad_file(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text(GOOD.replace("mode: auto", "mode: sometimes"))
    errors = validate_paths([tmp_path, tmp_path / "missing.yaml"])
    assert len(errors) == 2
    assert "bad.yaml:2:7, field 'mode'" in errors[0]
    assert "missing.yaml" in errors[1] and "not found" in errors[1]


def test_diff_lists_changed_fields_and_affected_instances() -> None:
    old = load_policy_text(GOOD)
    new = load_policy_text(GOOD.replace("enter: 0.6", "enter: 0.5").replace("factor: 0.7", "factor: 0.5"))
    scores = pd.DataFrame({"instance_id": ["a", "b", "c", "c"], "probability": [0.55, 0.1, 0.9, 0.52]})
    diff = diff_policies(old, new, scores_frame=scores)
    paths = {c.path: (c.old, c.new) for c in diff.changes}
    assert paths["bands.high.enter"] == (0.6, 0.5)
    assert paths["rules[ease].action.factor"] == (0.7, 0.5)
    assert diff.instances_scored == 3
    assert diff.band_changes == 2  # a and c (last row 0.52) move moderate -> high; b stays low
    assert diff.action_changes == 2
    assert diff.transitions["band moderate -> high"] == 2
    assert "2 change band" in diff.render()
    assert diff_policies(old, old).changes == []


def test_diff_refuses_a_frame_without_probability() -> None:
    policy = load_policy_text(GOOD)
    with pytest.raises(PolicyError, match="probability"):
        diff_policies(policy, policy, scores_frame=pd.DataFrame({"instance_id": ["a"]}))


def test_diff_prints_rule_names_literally_in_a_terminal() -> None:
    import io

    from rich.console import Console

    old = load_policy_text(GOOD)
    new = load_policy_text(GOOD.replace("factor: 0.7", "factor: 0.5"))
    out = io.StringIO()
    Console(file=out, width=200).print(diff_policies(old, new))
    assert "rules[ease].action.factor: 0.7 -> 0.5" in out.getvalue()
