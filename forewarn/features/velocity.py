"""Velocity parameters as features: the concurrency limits in force for each instance at each time.

The limits come from the policy (``Policy.velocity_limits()``, its guardrails: the one place they are
set; the history database keeps no copy that could disagree); without them the defaults of
:class:`forewarn.schemas.VelocityLimits` are in force. Forewarn keeps one set of limits for the whole
fleet, so every row gets the same values; they are features so a model trained under one set of limits
is served through a service that names them.
"""

from __future__ import annotations

import pandas as pd

from forewarn.schemas import VelocityLimits

VELOCITY_FIELDS = tuple(VelocityLimits.model_fields)
VELOCITY_FEATURES = tuple(f"velocity_{name}" for name in VELOCITY_FIELDS)
"""Feature names, in output order: ``velocity_<field of VelocityLimits>``."""


def velocity_features(keys: pd.DataFrame, limits: VelocityLimits | None = None) -> pd.DataFrame:
    """:data:`VELOCITY_FEATURES` for each key row, aligned with ``keys``."""
    chosen = limits or VelocityLimits()
    return pd.DataFrame(
        {f"velocity_{name}": float(getattr(chosen, name)) for name in VELOCITY_FIELDS}, index=keys.index
    )[list(VELOCITY_FEATURES)]
