"""The domain's records, as pydantic models shared by every stage of the loop.

Terms:
    instance: a virtual machine that runs tasks and may fail.
    task: a unit of work placed on an instance; it has a demand (cpu, memory) and a value.
    risk score: the calibrated probability that an instance fails within a horizon.
    band: low, moderate or high, assigned from a score by the policy, never by the model.
    decision: what a policy rule wants done to one instance (before allocation picks targets).
    action: one concrete step a plan carries out through a cloud adapter.
    plan: the ordered actions of one cycle, persisted before anything runs.

Every model forbids unknown fields, so a typo in a file or a call is an error, not a silent default.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator


def _aware_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a time zone (UTC, RFC 3339 such as 2024-01-01T00:00:00Z)")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_aware_utc)]
"""A timestamp that must be time-zone aware; it is converted to UTC."""

NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


def utcnow() -> datetime:
    """The current time, time-zone aware, in UTC."""
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """A short unique identifier with a readable prefix, such as ``plan-1f3a9c0e2b``."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Model(BaseModel):
    """Base for every Forewarn record: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)


class InstanceState(StrEnum):
    RUNNING = "running"
    CORDONED = "cordoned"
    FAILED = "failed"
    TERMINATED = "terminated"


class Instance(Model):
    """A virtual machine of the fleet, with its capacity and static attributes."""

    instance_id: str = Field(min_length=1)
    cpu_capacity: NonNegative = 1.0
    memory_capacity: NonNegative = 1.0
    group: str = "default"
    zone: str = "zone-a"
    tags: dict[str, str] = Field(default_factory=dict)
    state: InstanceState = InstanceState.RUNNING
    boot_time: UtcDatetime | None = None
    capacity_factor: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] = 1.0
    """Share of its nominal capacity the instance runs at now (a scale-back lowers it); the capacities above
    are the current ones."""
    reserved: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    """Share of its capacity held back as a buffer for work moved off riskier instances."""


class TelemetrySample(Model):
    """Metrics of one instance at one time. Metric names are free; values must be finite."""

    instance_id: str = Field(min_length=1)
    timestamp: UtcDatetime
    metrics: dict[str, float]
    source: str = "unknown"

    @field_validator("metrics")
    @classmethod
    def _finite(cls, metrics: dict[str, float]) -> dict[str, float]:
        bad = sorted(name for name, value in metrics.items() if not math.isfinite(value))
        if bad:
            raise ValueError(f"metrics must be finite numbers; not finite: {', '.join(bad)}")
        return metrics


class Severity(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class ErrorEvent(Model):
    """One error-log line, parsed: when, where, how bad and of which category."""

    instance_id: str = Field(min_length=1)
    timestamp: UtcDatetime
    severity: Severity = Severity.ERROR
    category: str = "other"
    message: str = ""


class FailureEvent(Model):
    """An instance failure: when it started, its type and root cause, and how long recovery took."""

    instance_id: str = Field(min_length=1)
    timestamp: UtcDatetime
    type: str = "unknown"
    root_cause: str = "undetermined"
    recovery_minutes: NonNegative | None = None


class Task(Model):
    """A unit of work with its demand and characteristics.

    ``value`` weighs the cost of interrupting the task; ``splittable`` tasks may be cut into chunks of at
    least ``min_chunk`` of their demand (a fraction of the whole).
    """

    task_id: str = Field(min_length=1)
    instance_id: str | None = None
    kind: str = "batch"
    cpu: NonNegative = 0.1
    memory: NonNegative = 0.1
    data_size: NonNegative = 0.0
    expected_duration_minutes: NonNegative = 60.0
    value: NonNegative = 1.0
    splittable: bool = False
    min_chunk: Annotated[float, Field(gt=0.0, le=1.0)] = 0.25
    start: UtcDatetime | None = None
    end: UtcDatetime | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class VelocityLimits(Model):
    """How fast Forewarn may change the fleet: the concurrency limits every plan stays within."""

    max_actions_per_cycle: int = Field(default=20, ge=0)
    max_concurrent_migrations: int = Field(default=10, ge=0)
    max_migrations_per_target: int = Field(default=2, ge=0)
    max_fleet_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1


class FeatureContribution(Model):
    """How much one feature pushed a score up (positive) or down (negative), in log-odds."""

    feature: str
    value: float | None = None
    contribution: float


class RiskScore(Model):
    """P(failure within ``horizon_minutes`` | features at ``timestamp``), calibrated."""

    instance_id: str
    timestamp: UtcDatetime
    probability: Probability
    horizon_minutes: int = Field(gt=0)
    model_version: str
    top_features: list[FeatureContribution] = Field(default_factory=list)


class Band(StrEnum):
    LOW = "low"
    MODERATE = "moderate"
    HIGH = "high"


class ActionType(StrEnum):
    MIGRATE = "migrate"
    SCALE_BACK = "scale-back"
    RESERVE_BUFFER = "reserve-buffer"
    AUTOSCALE = "autoscale"
    CORDON = "cordon"
    RESTORE_SNAPSHOT = "restore-snapshot"
    NOTIFY = "notify"
    RELEASE = "release"
    NONE = "none"

    @classmethod
    def _missing_(cls, value: object) -> ActionType | None:
        """``rollback`` was the name of ``restore-snapshot`` before the glossary; journals and policies keep it."""
        return cls.RESTORE_SNAPSHOT if value == LEGACY_RESTORE_SNAPSHOT else None


LEGACY_RESTORE_SNAPSHOT = "rollback"
"""The older name of the ``restore-snapshot`` action (docs/glossary.md: "rollback" is a plan's or a model's)."""


OPT_OUT_RULE = "opt-out"
"""The rule of the ``none`` decision an opted-out instance gets: nothing moves off it or onto it."""


class Decision(Model):
    """What a policy rule wants for one instance, before allocation chooses targets."""

    instance_id: str
    band: Band
    action: ActionType
    rule: str
    probability: Probability | None = None
    top_features: list[FeatureContribution] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)


class ActionReason(Model):
    """Why an action is in a plan: the score, its top features, the rule, and the budget it used."""

    probability: Probability | None = None
    band: Band | None = None
    top_features: list[FeatureContribution] = Field(default_factory=list)
    rule: str = ""
    budget_used: dict[str, float] = Field(default_factory=dict)
    note: str = ""


class ActionState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"
    FAILED = "failed"
    REVERTED = "reverted"


class Action(Model):
    """One concrete step: what to do, to which instance, with which tasks and parameters."""

    action_id: str = Field(default_factory=lambda: new_id("act"))
    type: ActionType
    instance_id: str
    target_instance_id: str | None = None
    task_ids: list[str] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    reason: ActionReason = Field(default_factory=ActionReason)
    state: ActionState = ActionState.PENDING
    error: str | None = None

    @property
    def idempotency_key(self) -> str:
        """Stable key of this action: the same action retried never runs twice."""
        return self.action_id


class PolicyMode(StrEnum):
    SHADOW = "shadow"
    RECOMMEND = "recommend"
    AUTO = "auto"


class PlanState(StrEnum):
    RECOMMENDED = "RECOMMENDED"
    APPROVED = "APPROVED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    ROLLED_BACK = "ROLLED_BACK"
    CANCELLED = "CANCELLED"
    SHADOW = "SHADOW"


class Plan(Model):
    """The actions of one cycle, with the policy and mode that produced them."""

    plan_id: str = Field(default_factory=lambda: new_id("plan"))
    created_at: UtcDatetime = Field(default_factory=utcnow)
    policy: str
    mode: PolicyMode
    state: PlanState = PlanState.RECOMMENDED
    model_version: str | None = None
    actions: list[Action] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
