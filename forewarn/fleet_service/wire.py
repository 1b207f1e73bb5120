"""JSON both ways: frames in the dataset format, Pulled, and errors mapped back to Forewarn's exception types."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pandas as pd

from forewarn import errors
from forewarn.schemas import Instance
from forewarn.telemetry.sources import Pulled

TIME_COLUMNS = ("timestamp", "start", "end", "boot_time")
PULLED_FRAMES = ("telemetry", "errors", "failures", "recoveries", "workloads")
ERROR_TYPES: dict[str, type[errors.ForewarnError]] = {
    cls.__name__: cls
    for cls in (
        errors.AdapterError,
        errors.TransientAdapterError,
        errors.NotFoundError,
        errors.InputError,
        errors.ConfigError,
    )
}
STATUS = {"NotFoundError": 404, "TransientAdapterError": 503, "InputError": 400, "ConfigError": 400}


def frame_to_json(frame: pd.DataFrame | None) -> dict[str, Any] | None:
    """``{"columns": [...], "rows": [[...], ...]}`` with times as RFC 3339 and NaN as null."""
    if frame is None:
        return None
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[column]):
            out[column] = out[column].map(lambda t: None if pd.isna(t) else t.isoformat())
    rows = [[_plain(v) for v in row] for row in out.itertuples(index=False, name=None)]
    return {"columns": [str(c) for c in out.columns], "rows": rows}


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def frame_from_json(data: dict[str, Any] | None) -> pd.DataFrame | None:
    if data is None:
        return None
    frame = pd.DataFrame(data["rows"], columns=data["columns"])
    for column in TIME_COLUMNS:
        if column in frame.columns:
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    for column in ("recovery_minutes",):
        if column in frame.columns:
            frame[column] = frame[column].astype(float)
    return frame


def pulled_to_json(pulled: Pulled) -> dict[str, Any]:
    data: dict[str, Any] = {"until": pulled.until.isoformat(), "notes": pulled.notes}
    for name in PULLED_FRAMES:
        data[name] = frame_to_json(getattr(pulled, name))
    data["instances"] = [i.model_dump(mode="json") for i in pulled.instances]
    return data


def pulled_from_json(data: dict[str, Any]) -> Pulled:
    frames = {name: frame_from_json(data.get(name)) for name in PULLED_FRAMES}
    return Pulled(
        until=datetime.fromisoformat(data["until"]),
        telemetry=frames["telemetry"],
        errors=frames["errors"],
        failures=frames["failures"],
        recoveries=frames["recoveries"],
        workloads=frames["workloads"],
        instances=[Instance.model_validate(i) for i in data.get("instances", [])],
        notes=list(data.get("notes", [])),
    )


def error_to_json(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The status and body of an error: its type (one of ERROR_TYPES, else AdapterError) and message."""
    kind = type(exc).__name__ if type(exc).__name__ in ERROR_TYPES else "AdapterError"
    if not isinstance(exc, errors.ForewarnError):
        kind = "AdapterError"
    return STATUS.get(kind, 409 if isinstance(exc, errors.ForewarnError) else 500), {
        "error": {"type": kind, "message": str(exc)}
    }


def error_from_json(data: Any, status: int) -> errors.ForewarnError:
    """The exception a server's error body names (AdapterError when it names none we know)."""
    detail = data.get("error", {}) if isinstance(data, dict) else {}
    message = str(detail.get("message") or f"fleet service answered {status}")
    cls = ERROR_TYPES.get(str(detail.get("type")), errors.AdapterError)
    if issubclass(cls, errors.InputError):
        return cls(message)
    if cls is errors.AdapterError and status >= 500:
        return errors.TransientAdapterError(message)
    return cls(message)
