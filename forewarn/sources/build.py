"""Sources from their specs, for every kind that needs no cloud adapter (compose builds the others)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from forewarn.errors import ConfigError
from forewarn.ingest import parse_duration, step_minutes_of
from forewarn.sources.drop import DropDirectorySource
from forewarn.sources.logs import LogFileSource
from forewarn.sources.prometheus import PrometheusPull
from forewarn.sources.replay import DatasetReplaySource
from forewarn.sources.specs import DropSpec, FleetSpec, LogsSpec, PrometheusSpec, SimulatedSpec
from forewarn.telemetry.prometheus import load_queries
from forewarn.telemetry.sources import Source


def _duration(value: str | None, name: str) -> timedelta | None:
    return parse_duration(value, field=name) if value else None


def build(spec: Any) -> Source:
    """The source of a prometheus, logs, drop, simulated or fleet spec."""
    if isinstance(spec, PrometheusSpec):
        return PrometheusPull(
            spec.url,
            name=spec.source_name,
            queries=load_queries(spec.queries) if spec.queries else None,
            step_minutes=step_minutes_of(spec.step),
            id_map=spec.instances,
            lookback=parse_duration(spec.lookback, field="lookback"),
            overlap=parse_duration(spec.overlap, field="overlap"),
            max_window=parse_duration(spec.max_window, field="max_window"),
            lag=_duration(spec.lag, "lag") or timedelta(0),
            timeout=spec.timeout,
            attempts=spec.attempts,
        )
    if isinstance(spec, LogsSpec):
        return LogFileSource(
            spec.paths,
            name=spec.source_name,
            format=spec.format,
            year=spec.year,
            timezone=spec.timezone,
            instance=spec.instance,
            min_severity=spec.min_severity,
            overlap=parse_duration(spec.overlap, field="overlap"),
        )
    if isinstance(spec, DropSpec):
        return DropDirectorySource(spec.directory, name=spec.source_name, max_files=spec.max_files)
    if isinstance(spec, SimulatedSpec):
        return DatasetReplaySource(
            spec.dataset,
            name=spec.source_name,
            lookback=_duration(spec.lookback, "lookback"),
            max_window=parse_duration(spec.max_window, field="max_window"),
        )
    if isinstance(spec, FleetSpec):
        from forewarn.fleet_service.client import FleetSource

        return FleetSource(
            spec.url,
            name=spec.source_name,
            max_window=parse_duration(spec.max_window, field="max_window"),
            timeout=spec.timeout,
            attempts=spec.attempts,
            frames=spec.frames,
        )
    raise ConfigError(f"no builder for source kind '{getattr(spec, 'kind', '?')}'", field="kind")
