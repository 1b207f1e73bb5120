"""What a failure detector reports: the shared types of :mod:`adapters.failures` and the per-cloud detectors."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import pandas as pd

LOOKBACK = timedelta(days=1)
"""How far before a pull's ``since`` the detectors look for events the cloud keeps (activities, actions)."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Failure:
    """One failure as a cloud reports it; ``recovery_minutes`` is NaN while the instance is down."""

    instance_id: str
    timestamp: datetime
    type: str
    root_cause: str
    recovery_minutes: float = math.nan


@dataclass
class Observed:
    """What a detector saw at one pull.

    Attributes:
        failures: failures the cloud reports (present ones and those it still keeps a record of).
        healthy: instances up now, each with the time it came back if the cloud tells (else None).
        present: every instance the cloud still reports, healthy or not.
    """

    failures: list[Failure] = field(default_factory=list)
    healthy: dict[str, datetime | None] = field(default_factory=dict)
    present: set[str] = field(default_factory=set)


class Detector(Protocol):
    def observe(self, since: datetime | None, until: datetime) -> Observed: ...


class FailureHistory(Protocol):
    """The failures already stored: open ones, and all those at or after ``since`` (see HistoryStore)."""

    def open_failures(self, since: datetime | None = None) -> pd.DataFrame: ...
