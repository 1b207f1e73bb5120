"""Policy actions: one small registered class per :class:`~forewarn.schemas.ActionType`.

Each action has a YAML name (its ``type``), a params model (``extra="forbid"``, kebab-case keys) and two
verbs: ``validate`` (semantic checks beyond the schema) and ``process`` (the parameters a
:class:`~forewarn.schemas.Decision` carries, with snake_case keys). Register a new one with
``@register(ActionType.X)``.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from forewarn.policy.numbers import MAX_COUNT, within
from forewarn.schemas import LEGACY_RESTORE_SNAPSHOT, ActionType


def kebab(name: str) -> str:
    """The YAML spelling of a Python field name: ``min_dwell_minutes`` -> ``min-dwell-minutes``."""
    return name.replace("_", "-")


class PolicyModel(BaseModel):
    """Base of every policy element: kebab-case keys in YAML, snake_case in Python, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", alias_generator=kebab, populate_by_name=True)


class Split(PolicyModel):
    """Whether a splittable task may be cut into chunks of at least ``min_chunk`` of its demand."""

    enabled: bool = False
    min_chunk: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False), within(0.0, 1.0, lo_open=True)] = 0.25


class MigrateParams(PolicyModel):
    """Move the instance's tasks to healthier instances."""

    type: Literal["migrate"] = "migrate"
    split: Split = Field(default_factory=Split)


class ScaleBackParams(PolicyModel):
    """Shrink the load placed on the instance to ``factor`` of its capacity, keeping ``reserve_buffer`` free."""

    type: Literal["scale-back"] = "scale-back"
    factor: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False), within(0.0, 1.0, lo_open=True)] = 0.7
    reserve_buffer: Annotated[float, Field(ge=0.0, lt=1.0, allow_inf_nan=False), within(0.0, 1.0, hi_open=True)] = 0.0


class ReserveBufferParams(PolicyModel):
    """Keep ``fraction`` of the instance's capacity free as a buffer."""

    type: Literal["reserve-buffer"] = "reserve-buffer"
    fraction: Annotated[float, Field(ge=0.0, lt=1.0, allow_inf_nan=False), within(0.0, 1.0, hi_open=True)] = 0.1


class AutoscaleParams(PolicyModel):
    """Let the instance's group scale between ``min`` and ``max`` instances: down (empty low-risk instances
    released) while its utilisation is below ``low_utilisation``, up while it is above ``high_utilisation``,
    each time toward the midpoint of the two."""

    type: Literal["autoscale"] = "autoscale"
    min: Annotated[int, Field(ge=0, le=MAX_COUNT), within(0, MAX_COUNT)] = 1
    max: Annotated[int, Field(ge=1, le=MAX_COUNT), within(1, MAX_COUNT)] = 10
    low_utilisation: Annotated[
        float, Field(gt=0.0, lt=1.0, allow_inf_nan=False), within(0.0, 1.0, lo_open=True, hi_open=True)
    ] = 0.30
    high_utilisation: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False), within(0.0, 1.0, lo_open=True)] = (
        0.85
    )


class CordonParams(PolicyModel):
    """Stop placing new work on the instance; ``drain`` also moves its running tasks away."""

    type: Literal["cordon"] = "cordon"
    drain: bool = False


class RestoreSnapshotParams(PolicyModel):
    """Restore the instance from a snapshot (``latest`` or a snapshot id); ``rollback`` is its older name."""

    type: Literal["restore-snapshot"] = "restore-snapshot"
    snapshot: str = Field(default="latest", min_length=1)


class NotifyParams(PolicyModel):
    """Tell a person: write to ``channel`` (``log`` by default) with an optional message."""

    type: Literal["notify"] = "notify"
    channel: str = Field(default="log", min_length=1)
    message: str = ""


class ReleaseParams(PolicyModel):
    """Undo what Forewarn holds on the instance: lift its cordon, restore its full capacity, free its buffer."""

    type: Literal["release"] = "release"
    uncordon: bool = True
    restore_scale: bool = True
    free_buffer: bool = True


class NoneParams(PolicyModel):
    """Do nothing on purpose (useful to stop later rules from matching)."""

    type: Literal["none"] = "none"


def _current_name(value: Any) -> Any:
    """A rule written with the older ``type: rollback`` reads as ``restore-snapshot``."""
    if isinstance(value, dict) and value.get("type") == LEGACY_RESTORE_SNAPSHOT:
        return {**value, "type": ActionType.RESTORE_SNAPSHOT.value}
    return value


ActionSpec = Annotated[
    MigrateParams
    | ScaleBackParams
    | ReserveBufferParams
    | AutoscaleParams
    | CordonParams
    | RestoreSnapshotParams
    | NotifyParams
    | ReleaseParams
    | NoneParams,
    BeforeValidator(_current_name),
    Field(discriminator="type"),
]
"""The ``action:`` of a rule: one of the registered params models, chosen by its ``type``."""


class PolicyAction:
    """A registered action: its YAML name, params model and the two verbs."""

    name: ClassVar[ActionType]
    params_model: ClassVar[type[PolicyModel]]

    def validate(self, params: PolicyModel) -> list[tuple[tuple[str, ...], str]]:
        """Semantic problems of ``params`` as (path inside the action, message); none by default."""
        return []

    def process(self, params: PolicyModel) -> dict[str, Any]:
        """The parameters a decision carries: snake_case keys, without ``type``."""
        return params.model_dump(mode="json", exclude={"type"})


ACTIONS: dict[str, type[PolicyAction]] = {}


def register(name: ActionType) -> Any:
    """Class decorator: register a :class:`PolicyAction` under its YAML name."""

    def decorate(cls: type[PolicyAction]) -> type[PolicyAction]:
        if name.value in ACTIONS:
            raise ValueError(f"action '{name.value}' is registered twice")
        cls.name = name
        ACTIONS[name.value] = cls
        return cls

    return decorate


def get_action(name: str) -> PolicyAction:
    """The registered action called ``name``; KeyError lists the valid names."""
    try:
        return ACTIONS[name]()
    except KeyError:
        raise KeyError(f"unknown action type '{name}'; valid: {', '.join(sorted(ACTIONS))}") from None


def default_params(name: str) -> PolicyModel:
    """The params of action ``name`` with every default (used by the fallback policy)."""
    return ACTIONS[name].params_model()


@register(ActionType.MIGRATE)
class Migrate(PolicyAction):
    params_model = MigrateParams


@register(ActionType.SCALE_BACK)
class ScaleBack(PolicyAction):
    params_model = ScaleBackParams

    def validate(self, params: PolicyModel) -> list[tuple[tuple[str, ...], str]]:
        assert isinstance(params, ScaleBackParams)
        if params.reserve_buffer >= params.factor:
            return [(("reserve-buffer",), f"must be below factor ({params.factor}), or nothing is left to run")]
        return []


@register(ActionType.RESERVE_BUFFER)
class ReserveBuffer(PolicyAction):
    params_model = ReserveBufferParams


@register(ActionType.AUTOSCALE)
class Autoscale(PolicyAction):
    params_model = AutoscaleParams

    def validate(self, params: PolicyModel) -> list[tuple[tuple[str, ...], str]]:
        assert isinstance(params, AutoscaleParams)
        problems: list[tuple[tuple[str, ...], str]] = []
        if params.min > params.max:
            problems.append((("min",), f"min ({params.min}) must not exceed max ({params.max})"))
        if params.low_utilisation >= params.high_utilisation:
            problems.append(
                (("low-utilisation",), f"must be below high-utilisation ({params.high_utilisation}), or it flaps")
            )
        return problems


@register(ActionType.CORDON)
class Cordon(PolicyAction):
    params_model = CordonParams


@register(ActionType.RESTORE_SNAPSHOT)
class RestoreSnapshot(PolicyAction):
    params_model = RestoreSnapshotParams


@register(ActionType.NOTIFY)
class Notify(PolicyAction):
    params_model = NotifyParams


@register(ActionType.RELEASE)
class Release(PolicyAction):
    params_model = ReleaseParams


@register(ActionType.NONE)
class DoNothing(PolicyAction):
    params_model = NoneParams
