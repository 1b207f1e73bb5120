"""Telemetry: where metrics and error logs come from, and how they are made uniform.

Terms:
    source: anything with ``read(start, end, *, step_minutes, instance_ids)`` returning telemetry in the
        dataset format (``instance_id``, ``timestamp`` UTC, then float metric columns).
    step: the fixed sampling interval (minutes) that sources and :func:`normalise` align samples to; a step
        is labelled by its start, aligned to the Unix epoch.
    normalise: unit conversion, clock alignment, one identity per instance, resampling to the step.
    error event: one parsed log line (``instance_id``, ``timestamp``, ``severity``, ``category``, ``message``).
    importer: turns a public failure data set into a dataset directory (see forewarn.dataset).
"""

from forewarn.telemetry.base import TelemetrySource
from forewarn.telemetry.files import FileSource
from forewarn.telemetry.simulated import SimulatorSource

__all__ = ["FileSource", "SimulatorSource", "TelemetrySource"]
