"""One clock says when a cycle is: the wall clock in production, a simulated one in replay, demo and tests,
a fixed time for ``forewarn run FLOW --at TIME`` on recorded data.

Nothing in Forewarn takes "now" from the last row of a file: every flow and the CLI ask a :class:`Clock`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

import pandas as pd

from forewarn.errors import ConfigError


@runtime_checkable
class Clock(Protocol):
    """Where a cycle takes its time from."""

    def now(self) -> datetime:
        """The current time of this clock, time-zone aware, in UTC."""
        ...


class WallClock:
    """Production: the machine's clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class FixedClock:
    """A given time, for a flow run as of a moment of recorded data (``--at``)."""

    at: datetime

    def now(self) -> datetime:
        return self.at


@dataclass
class SimulatedClock:
    """Replay, demo and tests: time moves only when the driver says so."""

    current: datetime
    ticks: int = field(default=0)

    def now(self) -> datetime:
        return self.current

    def advance(self, step: timedelta) -> datetime:
        """Move the clock forward by ``step`` and return the new time."""
        if step <= timedelta(0):
            raise ValueError(f"a simulated clock only moves forward, not by {step}")
        self.current += step
        self.ticks += 1
        return self.current

    def set(self, when: datetime) -> datetime:
        """Move the clock to ``when`` (not backwards)."""
        when = parse_time(when)
        if when < self.current:
            raise ValueError(f"a simulated clock does not go back from {self.current} to {when}")
        self.current = when
        return self.current


EARLIEST, LATEST = 1900, 2200
"""The years a cycle's time may fall in: a cycle subtracts and adds up to ten years (policy durations, training
windows) and pandas' timestamps end in 1677 and 2262."""


def parse_time(value: str | datetime | pd.Timestamp, *, field: str = "--at") -> datetime:
    """An RFC 3339 time (``2024-05-01T12:00:00Z``; no zone means UTC) as an aware UTC datetime.

    Raises:
        ConfigError: naming ``field``, when the text is not a time.
    """
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"'{value}' is not a time: {exc}", field=field, allowed=["2024-05-01T12:00:00Z", "2024-05-01 12:00"]
        ) from None
    if pd.isna(stamp):
        raise ConfigError(f"'{value}' is not a time", field=field, allowed=["2024-05-01T12:00:00Z"])
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    if not EARLIEST <= stamp.year <= LATEST:
        raise ConfigError(f"'{value}' is outside the years {EARLIEST} to {LATEST} a cycle can run in", field=field)
    return stamp.to_pydatetime()


def clock_for(at: str | datetime | None) -> Clock:
    """The clock of a flow run: fixed at ``at`` when given, else the wall clock, or the fleet service's clock
    with ``FOREWARN_CLOCK=fleet``."""
    if at is not None and at != "":
        return FixedClock(parse_time(at))
    from forewarn.settings import get_settings

    settings = get_settings()
    if settings.clock == "fleet":
        from forewarn.fleet_service.client import DEFAULT_URL, FleetClock

        return FleetClock(settings.fleet_url or DEFAULT_URL)
    return WallClock()
