"""The policy engine: YAML policies that turn risk scores into decisions, within guardrails.

Terms are defined in :mod:`forewarn.policy.schema`. Entry points: :func:`load_policy`,
:class:`PolicyEngine`, :func:`enforce`, :func:`validate_paths`, :func:`diff_policies`. They are imported
lazily so ``python -m forewarn.policy.schema`` runs cleanly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forewarn.policy.engine import BandTracker, PolicyEngine, band_for
    from forewarn.policy.guardrails import GuardrailState, enforce
    from forewarn.policy.loader import load_policy, load_policy_text
    from forewarn.policy.review import PolicyDiff, diff_policies, validate_paths
    from forewarn.policy.schema import Policy

_WHERE = {
    "BandTracker": "engine",
    "PolicyEngine": "engine",
    "band_for": "engine",
    "GuardrailState": "guardrails",
    "enforce": "guardrails",
    "load_policy": "loader",
    "load_policy_text": "loader",
    "PolicyDiff": "review",
    "diff_policies": "review",
    "validate_paths": "review",
    "Policy": "schema",
}

__all__ = [
    "BandTracker",
    "GuardrailState",
    "Policy",
    "PolicyDiff",
    "PolicyEngine",
    "band_for",
    "diff_policies",
    "enforce",
    "load_policy",
    "load_policy_text",
    "validate_paths",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'forewarn.policy' has no attribute {name!r}")
    return getattr(importlib.import_module(f"forewarn.policy.{_WHERE[name]}"), name)
