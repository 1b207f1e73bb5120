"""``FOREWARN_SOURCES``: the sources the ingest flow pulls from, as pydantic models discriminated by ``kind``.

The setting is a JSON list of specs, or the path of a YAML file holding that list. A spec that does not fit
is one :class:`ConfigError` naming the variable or file (and line), the entry, the field and the allowed
values. Each source is named by its spec's ``name`` or by a default made of its kind and where it reads
(``prometheus:host:9090``): never of a credential, since the name keys the watermark and is printed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from forewarn.errors import ConfigError
from forewarn.sources.prometheus import safe_name
from forewarn.telemetry.logformats import PARSERS, SEVERITIES

VARIABLE = "FOREWARN_SOURCES"
DURATION_FIELDS = ("step", "lookback", "overlap", "max_window", "lag")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, description="Key of the watermark; default: kind and where it reads.")
    retries: int = Field(2, ge=0, le=10, description="Pulls tried again on a transient error.")
    backoff: float = Field(1.0, ge=0, le=300, description="Seconds before the first retry; doubles each time.")

    def default_name(self) -> str:
        raise NotImplementedError

    @property
    def source_name(self) -> str:
        return self.name or self.default_name()


class PrometheusSpec(_Spec):
    """node_exporter series through ``/api/v1/query_range``."""

    kind: Literal["prometheus"]
    url: str = Field(description="Base URL; user:password@ is sent as basic auth and never printed.")
    queries: Path | None = Field(None, description="YAML of metric name to PromQL overriding the defaults.")
    step: str = "1m"
    lookback: str = "1h"
    overlap: str = "5m"
    max_window: str = "6h"
    lag: str | None = None
    instances: dict[str, str] = Field(default_factory=dict, description="instance label -> fleet instance id")
    timeout: float = Field(10, gt=0, le=600, description="Seconds per HTTP request.")
    attempts: int = Field(3, ge=1, le=20, description="Tries per HTTP request.")

    def default_name(self) -> str:
        return f"prometheus:{safe_name(self.url)}"


class CloudWatchMetric(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = "AWS/EC2"
    metric: str
    stat: str = "Average"
    dimension: str = "InstanceId"


class CloudWatchSpec(_Spec):
    """Amazon CloudWatch ``GetMetricData``; instances named, or found with ``ListMetrics``."""

    kind: Literal["cloudwatch"]
    region: str = "us-east-1"
    endpoint: str = Field("", description="Endpoint URL; empty for AWS itself.")
    namespace: str = Field("AWS/EC2", description="Where instances are found when none are named.")
    instances: list[str] = Field(default_factory=list)
    metrics: dict[str, CloudWatchMetric] | None = None
    step: str = "5m"
    lookback: str = "1h"
    overlap: str = "10m"
    max_window: str = "6h"

    def default_name(self) -> str:
        return f"cloudwatch:{self.region}" + (f":{safe_name(self.endpoint)}" if self.endpoint else "")


class LogsSpec(_Spec):
    """Error events from log files (syslog, journald exports, loghub formats)."""

    kind: Literal["logs"]
    paths: list[str] = Field(min_length=1, description="Files or glob patterns.")
    format: Literal[tuple([*PARSERS, "auto"])] = "auto"  # type: ignore[valid-type]
    year: int | None = Field(None, description="Year of RFC 3164 timestamps; default the pull's year.")
    timezone: str = "UTC"
    instance: str | None = Field(None, description="Instance of formats that name no host; default file stem.")
    min_severity: Literal[SEVERITIES] = "warning"  # type: ignore[valid-type]
    overlap: str = "10m"

    def default_name(self) -> str:
        return f"logs:{self.paths[0]}" + (f"+{len(self.paths) - 1}" if len(self.paths) > 1 else "")


class DropSpec(_Spec):
    """A directory where dataset directories or telemetry files are dropped, each taken in once."""

    kind: Literal["drop"]
    directory: Path
    max_files: int = Field(20, ge=1, description="Entries taken per pull.")

    def default_name(self) -> str:
        return f"drop:{self.directory}"


class SimulatedSpec(_Spec):
    """A dataset directory revealed up to the cycle's time: the replay and demo's live fleet."""

    kind: Literal["simulated"]
    dataset: Path
    lookback: str | None = Field(None, description="How far back the first pull reads; default all.")
    max_window: str = "1d"

    def default_name(self) -> str:
        return f"simulated:{self.dataset}"


FleetFrame = Literal["telemetry", "errors", "failures", "workloads", "instances"]
FLEET_FRAMES: tuple[FleetFrame, ...] = get_args(FleetFrame)


class FleetSpec(_Spec):
    """A fleet service (``forewarn fleet serve``): what it emitted, through its ``/api/pull``."""

    kind: Literal["fleet"]
    url: str = Field("http://127.0.0.1:9108", description="The fleet service's base URL.")
    frames: list[FleetFrame] = Field(
        default_factory=lambda: list(FLEET_FRAMES),
        min_length=1,
        description="What it lands; [failures, instances] when a Prometheus scraping its /metrics gives the telemetry.",
    )
    max_window: str = "1d"
    timeout: float = Field(30, gt=0, description="Seconds per HTTP request.")
    attempts: int = Field(3, ge=1, description="Tries per HTTP request when the service cannot be reached.")

    def default_name(self) -> str:
        return f"fleet:{safe_name(self.url)}"


class CloudSpec(_Spec):
    """The configured cloud's failure events (FOREWARN_CLOUD)."""

    kind: Literal["cloud"]

    def default_name(self) -> str:
        return "cloud"


SourceSpec = Annotated[
    PrometheusSpec | CloudWatchSpec | LogsSpec | DropSpec | SimulatedSpec | FleetSpec | CloudSpec,
    Field(discriminator="kind"),
]
KINDS = ("prometheus", "cloudwatch", "logs", "drop", "simulated", "fleet", "cloud")
_LIST: TypeAdapter[list[SourceSpec]] = TypeAdapter(list[SourceSpec])
_MODELS: dict[str, type[_Spec]] = {
    "prometheus": PrometheusSpec,
    "cloudwatch": CloudWatchSpec,
    "logs": LogsSpec,
    "drop": DropSpec,
    "simulated": SimulatedSpec,
    "fleet": FleetSpec,
    "cloud": CloudSpec,
}


def _entry_lines(text: str) -> list[int | None]:
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return []
    if isinstance(node, yaml.MappingNode):
        node = next((v for k, v in node.value if k.value == "sources"), None)
    if not isinstance(node, yaml.SequenceNode):
        return []
    return [item.start_mark.line + 1 for item in node.value]


def _parse(setting: str) -> tuple[Any, str, list[int | None]]:
    """The raw list, where it came from (the variable or the file) and each entry's line in that file."""
    text = setting.strip()
    if text.startswith(("[", "{")):
        try:
            return json.loads(text), VARIABLE, []
        except json.JSONDecodeError as exc:
            raise ConfigError(f"not valid JSON: {exc.msg} at character {exc.pos}", field=VARIABLE) from None
    path = Path(text)
    try:
        body = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"is neither a JSON list nor a readable YAML file: {exc.strerror}", file=path, field=VARIABLE
        ) from None
    try:
        data = yaml.safe_load(body)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(
            f"not valid YAML: {getattr(exc, 'problem', exc)}", file=path, row=mark.line + 1 if mark else None
        ) from None
    if isinstance(data, dict) and set(data) == {"sources"}:
        data = data["sources"]
    return data, str(path), _entry_lines(body)


def _explain(error: ValidationError, raw: list[Any], origin: str, lines: list[int | None]) -> ConfigError:
    first = error.errors()[0]
    loc = list(first["loc"])
    index = int(loc[0]) if loc and isinstance(loc[0], int) else 0
    entry = raw[index] if index < len(raw) else None
    kind = entry.get("kind") if isinstance(entry, dict) else None
    where = f"entry {index + 1}" + (f" ({kind})" if kind in _MODELS else "")
    field = ".".join(str(part) for part in loc[2:]) or "kind"
    allowed: list[str] | None = None
    reason = str(first["msg"])
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        reason, allowed = ("unknown kind" if kind is not None else "has no kind"), list(KINDS)
    elif first["type"] == "extra_forbidden":
        reason, allowed = "unknown field", sorted(_MODELS[str(kind)].model_fields)
    elif first["type"] == "literal_error":
        info = _MODELS[str(kind)].model_fields.get(str(loc[2])) if kind in _MODELS and len(loc) > 2 else None
        args = get_args(info.annotation) if info is not None else ()
        args = get_args(args[0]) if len(args) == 1 and get_args(args[0]) else args  # list[Literal[...]]
        allowed = [str(a) for a in args] if info is not None else None
        reason = f"{first['input']!r} is not allowed"
    elif first["type"] == "model_type":
        reason = "must be a mapping of field to value"
    file, row = (None, None) if origin == VARIABLE else (origin, lines[index] if index < len(lines) else None)
    name = field if origin != VARIABLE else f"{VARIABLE}[{index}].{field}"
    return ConfigError(f"{where}: {reason}", file=file, row=row, field=name, allowed=allowed)


def _check(spec: _Spec, index: int, origin: str, lines: list[int | None]) -> None:
    from forewarn.ingest import parse_duration, step_minutes_of

    file, row = (None, None) if origin == VARIABLE else (origin, lines[index] if index < len(lines) else None)
    for field in DURATION_FIELDS:
        value = getattr(spec, field, None)
        if value is None:
            continue
        try:
            step_minutes_of(value) if field == "step" else parse_duration(value, field=field)
        except ConfigError as exc:
            name = field if origin != VARIABLE else f"{VARIABLE}[{index}].{field}"
            raise ConfigError(
                f"entry {index + 1} ({getattr(spec, 'kind', '?')}): {exc.reason}", file=file, row=row, field=name
            ) from None
    if "@" in spec.source_name or "://" in spec.source_name:
        raise ConfigError(
            f"entry {index + 1}: a source name must not hold a URL or credentials", file=file, row=row, field="name"
        )


def load_specs(setting: str) -> list[_Spec]:
    """The specs of ``FOREWARN_SOURCES`` (JSON list or YAML path); empty when the setting is empty.

    Raises:
        ConfigError: naming the variable or file, the entry, the field and what is allowed.
    """
    if not setting.strip():
        return []
    raw, origin, lines = _parse(setting)
    if not isinstance(raw, list):
        raise ConfigError("must be a list of source specs, each with a kind", file=origin, allowed=list(KINDS))
    try:
        specs: list[_Spec] = list(_LIST.validate_python(raw))
    except ValidationError as exc:
        raise _explain(exc, raw, origin, lines) from None
    seen: dict[str, int] = {}
    for index, spec in enumerate(specs):
        _check(spec, index, origin, lines)
        if spec.source_name in seen:
            raise ConfigError(
                f"entry {index + 1}: the name '{spec.source_name}' is already used by entry "
                f"{seen[spec.source_name] + 1}; give one of them a name",
                file=None if origin == VARIABLE else origin,
                field="name" if origin != VARIABLE else VARIABLE,
            )
        seen[spec.source_name] = index
    return specs
