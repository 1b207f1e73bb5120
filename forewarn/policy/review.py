"""What ``forewarn policy check`` and ``forewarn policy diff OLD NEW`` do, as plain functions.

:func:`check_paths` checks files (or every ``*.yaml`` in a folder) and returns one error per bad file;
:func:`validate_paths` gives them as lines. :func:`diff_policies` lists every changed key and, given recent
scores, how many instances would land in another band or get another action.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from forewarn.errors import PolicyError
from forewarn.policy.actions import PolicyModel
from forewarn.policy.engine import band_for, matches
from forewarn.policy.loader import load_policy
from forewarn.policy.schema import Policy
from forewarn.schemas import ActionType, Band, Instance

if TYPE_CHECKING:
    import pandas as pd


def _policy_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
    return [path]


def check_file(file: Path, within: Path | None = None) -> PolicyError | None:
    """The problem with one policy file, or None; never raises, whatever the bytes (each problem is one line)."""
    try:
        load_policy(file, within=within)
    except PolicyError as exc:
        return exc
    except RecursionError:
        return PolicyError("nested too deeply to check", file=file)
    except Exception as exc:  # one bad file must not stop the check of the others
        return PolicyError(f"cannot be checked: {type(exc).__name__}: {str(exc)[:200]}", file=file)
    return None


def check_paths(paths: Iterable[str | Path]) -> tuple[list[Path], list[PolicyError]]:
    """Check policy files; a folder means every ``*.yaml``/``*.yml`` under it, each confined to that folder
    (a symlink leading out of it is refused unread).

    Returns:
        The files checked and one error per bad file (or missing path), each naming file, line, column, key.
    """
    checked: list[Path] = []
    errors: list[PolicyError] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists() and not path.is_symlink():
            errors.append(PolicyError("policy file not found", file=path))
            continue
        # a folder confines its files; a file named directly may be a symlink only within its own folder
        folder = path if path.is_dir() else path.absolute().parent if path.is_symlink() else None
        files = _policy_files(path)
        if not files:
            errors.append(PolicyError("no *.yaml policy files in this folder", file=path))
        for file in files:
            checked.append(file)
            problem = check_file(file, within=folder)
            if problem is not None:
                errors.append(problem)
    return checked, errors


def validate_paths(paths: Iterable[str | Path]) -> list[str]:
    """Validate policy files (see :func:`check_paths`); returns the errors as lines."""
    return [str(error) for error in check_paths(paths)[1]]


def github_annotation(error: PolicyError) -> str:
    """``error`` as a GitHub Actions workflow command, so the pull request shows it on the offending line."""
    where = [f"file={_escape(error.file, True)}"] if error.file else []
    if error.row is not None:
        where.append(f"line={error.row}")
    if error.column is not None:
        where.append(f"col={error.column}")
    where.append("title=forewarn policy check")
    return f"::error {','.join(where)}::{_escape(str(error), False)}"


def _escape(text: str, is_property: bool) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if is_property else text


class FieldChange(PolicyModel):
    """One key whose value differs; ``old`` or ``new`` is None when the key was added or removed."""

    path: str
    old: Any = None
    new: Any = None


class PolicyDiff(PolicyModel):
    """Changes between two policies and, when scores were given, their effect on instances."""

    changes: list[FieldChange] = Field(default_factory=list)
    instances_scored: int = 0
    band_changes: int = 0
    action_changes: int = 0
    transitions: dict[str, int] = Field(default_factory=dict, description="e.g. 'band low -> moderate': 3")

    def render(self) -> str:
        """A plain-text report for a terminal or a pull-request comment."""
        lines = [f"{c.path}: {c.old!r} -> {c.new!r}" for c in self.changes] or ["no changes"]
        if self.instances_scored:
            lines.append(
                f"on {self.instances_scored} scored instances: {self.band_changes} change band, "
                f"{self.action_changes} change action"
            )
            lines += [f"  {name}: {count}" for name, count in sorted(self.transitions.items())]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()

    def __rich__(self) -> Any:
        from rich.text import Text  # plain text: rule names in [brackets] are not markup

        return Text(self.render())


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list) and all(isinstance(v, dict) and "name" in v for v in value) and value:
        for position, item in enumerate(value):
            _flatten({**item, "position": position}, f"{prefix}[{item['name']}]", out)
    else:
        out[prefix] = value


def _flat(policy: Policy) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _flatten(policy.model_dump(mode="json", by_alias=True), "", out)
    return out


def _outcome(policy: Policy, probability: float) -> tuple[Band, ActionType]:
    band = band_for(probability, policy.bands)
    instance = Instance(instance_id="diff")
    for rule in policy.rules:
        if matches(rule.match, band, instance, [], True):
            return band, ActionType(rule.action.type)
    return band, ActionType.NONE


def diff_policies(old: Policy, new: Policy, *, scores_frame: pd.DataFrame | None = None) -> PolicyDiff:
    """What changed from ``old`` to ``new``, key by key, and how recent scores would be treated.

    Args:
        old: the policy in force.
        new: the proposed policy.
        scores_frame: recent scores with columns ``instance_id`` and ``probability`` (the last row of each
            instance counts). Bands are taken without history (enter thresholds) and rules are matched on
            band alone (tags, groups and workloads are not in the frame).

    Raises:
        PolicyError: the frame lacks a column or holds a probability outside [0, 1].
    """
    before, after = _flat(old), _flat(new)
    changes = [
        FieldChange(path=key, old=before.get(key), new=after.get(key))
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    ]
    diff = PolicyDiff(changes=changes)
    if scores_frame is None:
        return diff
    missing = [c for c in ("instance_id", "probability") if c not in scores_frame.columns]
    if missing:
        raise PolicyError(f"scores frame lacks column(s) {', '.join(missing)}", field=missing[0])
    latest = scores_frame.groupby("instance_id", sort=False)["probability"].last()
    transitions: Counter[str] = Counter()
    for instance_id, probability in latest.items():
        p = float(probability)
        if not 0.0 <= p <= 1.0:
            raise PolicyError(f"probability {p} of {instance_id} is outside [0, 1]", field="probability")
        band_old, action_old = _outcome(old, p)
        band_new, action_new = _outcome(new, p)
        if band_old != band_new:
            diff.band_changes += 1
            transitions[f"band {band_old.value} -> {band_new.value}"] += 1
        if action_old != action_new:
            diff.action_changes += 1
            transitions[f"action {action_old.value} -> {action_new.value}"] += 1
    diff.instances_scored = len(latest)
    diff.transitions = dict(transitions)
    return diff
