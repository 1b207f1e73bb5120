"""The port every live source implements for the ingest flow: pull what is new since a watermark.

A source is anything that feeds the history database: Prometheus, CloudWatch, log files, a drop directory
of dataset files, the simulated fleet, and the cloud's own record of failures. The ingest flow asks each
configured source for what came after its watermark (:mod:`forewarn.store.watermarks`), validates and
quarantines it like ``forewarn ingest``, commits it, and only then moves the watermark to ``Pulled.until``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

import pandas as pd

from forewarn.schemas import Instance
from forewarn.store.repository import QuarantineRecord


@dataclass
class Pulled:
    """What one pull brought, in the dataset format; any frame may be None (nothing of that kind).

    Attributes:
        until: the source is complete up to this time: the watermark once these rows are committed.
        telemetry: ``instance_id``, ``timestamp``, then one float column per metric (free names).
        errors: ``instance_id``, ``timestamp``, ``severity``, ``category``, ``message``.
        failures: ``instance_id``, ``timestamp``, ``type``, ``root_cause``, ``recovery_minutes`` (NaN while the
            instance is still down).
        recoveries: ``instance_id``, ``timestamp`` (of the failure), ``recovery_minutes``: recovery times learned
            later for failures already stored.
        workloads: the workloads.csv columns.
        instances: instances seen (their static attributes).
        notes: what a person should know about this pull (skipped files, unparsed lines, ...).
        quarantined: rows the source itself refused (a dropped file's unparsable lines, with file and line);
            they are stored in the quarantine with the batch.
    """

    until: datetime
    telemetry: pd.DataFrame | None = None
    errors: pd.DataFrame | None = None
    failures: pd.DataFrame | None = None
    recoveries: pd.DataFrame | None = None
    workloads: pd.DataFrame | None = None
    instances: list[Instance] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    quarantined: list[QuarantineRecord] = field(default_factory=list)


@runtime_checkable
class Source(Protocol):
    """A live source of history.

    ``name`` is unique among the configured sources and keys the watermark; it never carries a credential.
    ``pull`` returns what is new in ``(since, until]`` (everything up to ``until`` when ``since`` is None, as
    far back as the source keeps); it may return rows at or before ``since`` (late samples): the stores keep
    the first copy of each (instance, time) and drop repeats. It raises ``TransientAdapterError`` (or any
    ``ForewarnError``) when the source cannot be reached; the flow retries with backoff and reports it.
    """

    name: str

    def pull(self, since: datetime | None, until: datetime) -> Pulled: ...


@runtime_checkable
class Acknowledging(Protocol):
    """A source that must hear when its pull is committed (the drop directory moves its files to ``done/``).

    The ingest step calls ``committed`` after the rows are stored and the watermark moved; a crash before
    that makes the next pull return the same rows again, which the stores drop as already held.
    """

    def committed(self, pulled: Pulled) -> None: ...
