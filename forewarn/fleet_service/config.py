"""The fleet's identity and clock, saved as ``fleet.json`` in the state directory at first start."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from forewarn.errors import ConfigError

CONFIG_FILE = "fleet.json"
DEFAULT_PORT = 9108


class FleetConfig(BaseModel):
    """A fleet: what it is (fixed at first start) and how its clock runs.

    Attributes:
        size: instances.
        seed: the fleet's seed; chunk ``k`` is simulated with a seed derived from it and ``k``.
        scenario: a scenario of ``forewarn simulate`` (default, bursty, sudden).
        failure_rate_per_day: mean failures per instance per day (raise it to see failures within minutes).
        step_minutes: telemetry step.
        history_days: days of history before the first start's fleet time.
        origin: where the timeline begins (step-aligned).
        anchor_wall, anchor_fleet: a wall time and the fleet time it maps to.
        speed: fleet seconds per wall second.
    """

    model_config = ConfigDict(extra="forbid")

    size: int = Field(ge=1, le=100_000)
    seed: int = Field(ge=0)
    scenario: str
    failure_rate_per_day: float = Field(ge=0, le=24)
    step_minutes: int = Field(ge=1, le=60)
    history_days: float = Field(ge=0)
    origin: datetime
    anchor_wall: datetime
    anchor_fleet: datetime
    speed: float = Field(gt=0)

    def now(self, wall: datetime | None = None) -> datetime:
        """Fleet time at ``wall`` (default: the machine's clock)."""
        wall = wall or datetime.now(UTC)
        return self.anchor_fleet + (wall - self.anchor_wall) * self.speed

    def rebased(self, speed: float, wall: datetime | None = None) -> FleetConfig:
        """The same timeline from ``wall`` on, running at ``speed``: fleet time does not jump."""
        wall = wall or datetime.now(UTC)
        return self.model_copy(update={"anchor_wall": wall, "anchor_fleet": self.now(wall), "speed": speed})


def new_config(
    *,
    size: int,
    seed: int,
    scenario: str,
    failure_rate_per_day: float,
    step_minutes: int,
    history_days: float,
    speed: float,
    start: datetime | None,
) -> FleetConfig:
    """A fleet whose first fleet time is ``start`` (default: now) with ``history_days`` of history behind it."""
    from forewarn.sim.scenarios import SCENARIOS

    if scenario not in SCENARIOS:
        raise ConfigError(f"unknown scenario '{scenario}'", field="--scenario", allowed=SCENARIOS)
    wall = datetime.now(UTC)
    first = start or wall
    step = timedelta(minutes=step_minutes)
    begin = first - timedelta(days=history_days)
    origin = datetime(2000, 1, 1, tzinfo=UTC) + ((begin - datetime(2000, 1, 1, tzinfo=UTC)) // step) * step
    return FleetConfig(
        size=size,
        seed=seed,
        scenario=scenario,
        failure_rate_per_day=failure_rate_per_day,
        step_minutes=step_minutes,
        history_days=history_days,
        origin=origin,
        anchor_wall=wall,
        anchor_fleet=first,
        speed=speed,
    )


def load_config(state_dir: Path) -> FleetConfig | None:
    """The saved fleet of ``state_dir``, or None before its first start."""
    path = state_dir / CONFIG_FILE
    if not path.exists():
        return None
    try:
        return FleetConfig.model_validate_json(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"not a fleet file ({exc}); move the state directory away to start anew", file=path) from None


def save_config(state_dir: Path, config: FleetConfig) -> None:
    """Write ``fleet.json`` atomically."""
    write_atomic(state_dir / CONFIG_FILE, config.model_dump_json(indent=2))


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)
