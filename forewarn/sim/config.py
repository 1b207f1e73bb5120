"""The simulator's knobs. Every field has a default that gives a useful small fleet."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

FAILURE_MODES = ("memory_leak", "disk_errors", "latency_degradation", "error_burst", "sudden")
"""Failure modes, the ``type`` column of failures.csv. All but ``sudden`` have a precursor."""


class SimConfig(BaseModel):
    """How big a fleet to simulate, for how long, and how it fails.

    Attributes:
        instances: number of virtual machines.
        days: simulated span in days.
        seed: seed of the one ``numpy`` PCG64 generator; the same seed gives the same dataset.
        step_minutes: telemetry sampling step.
        start: first timestamp (time-zone aware; converted to UTC).
        failure_rate_per_day: mean failures per instance per day. The default 0.1 (a mean interval of 10 days)
            runs about 7x faster than the LANL records (72 days), so 200 instances x 3 days show 40-80.
        sudden_fraction: share of failures with no precursor at all.
        noisy_fraction: share of healthy instances that show precursor-like spikes that lead to nothing.
        tasks_per_instance: mean number of tasks placed on each instance over the run.
        max_recovery_minutes: cap on a repair time drawn from LANL (whose tail runs to months).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    instances: int = Field(default=200, ge=1, le=100_000)
    days: float = Field(default=3.0, gt=0, le=366)
    seed: int = Field(default=0, ge=0)
    step_minutes: int = Field(default=5, ge=1, le=1440)
    start: datetime = datetime(2024, 3, 1, tzinfo=UTC)
    failure_rate_per_day: float = Field(default=0.1, ge=0, le=24)
    sudden_fraction: float = Field(default=0.3, ge=0, le=1)
    noisy_fraction: float = Field(default=0.15, ge=0, le=1)
    tasks_per_instance: float = Field(default=3.0, ge=0, le=1000)
    max_recovery_minutes: float = Field(default=720.0, gt=0)

    @field_validator("start")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("start must carry a time zone, such as 2024-03-01T00:00:00Z")
        return value.astimezone(UTC)

    @property
    def steps(self) -> int:
        """Number of telemetry steps per instance (before downtime gaps)."""
        return max(1, int(self.days * 1440 // self.step_minutes))
