"""Failure events learned from what the cloud says: the ``cloud`` source of the ingest flow.

A *detector* (one per cloud: :mod:`adapters.aws_failures`, :mod:`adapters.openstack_failures`,
:mod:`adapters.simulated_failures`) reads the cloud's present state and the history it still keeps, and says
which instances are failed (with the failure's time, type and cause), which are healthy, and which it still
knows. :class:`CloudFailureSource` turns that into a :class:`~forewarn.telemetry.sources.Pulled`:

* a failure is emitted with ``recovery_minutes`` NaN while the instance is down (or with its duration when
  the cloud reports a failure that is already over);
* when a later pull sees the instance healthy again, the open failure comes back in ``Pulled.recoveries``
  with the minutes from the failure to the recovery (the cloud's time of recovery where it tells, else the
  pull's ``until``); an instance the cloud no longer reports (replaced, deleted) closes its failure the same way;
* each failure is emitted once: what is already stored is read back through a :class:`FailureHistory` (the
  history database: :meth:`forewarn.store.history.HistoryStore.open_failures`), and a failure that falls inside
  a down period already stored is the same failure, not a new one. The store drops repeats of one
  (instance, time) too, so a pull cut short before its commit is simply pulled again.

A pull is thus stateless between processes: what is open comes from the database, what is down from the cloud.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pandas as pd

from adapters.cloud_failures import EPOCH, LOOKBACK, Detector, Failure, FailureHistory, Observed
from forewarn.cloud import CloudAdapter
from forewarn.errors import ConfigError
from forewarn.telemetry.sources import Pulled, Source

FAILURE_COLUMNS = ["instance_id", "timestamp", "type", "root_cause", "recovery_minutes"]
RECOVERY_COLUMNS = ["instance_id", "timestamp", "recovery_minutes"]


class CloudFailureSource:
    """The ``cloud`` source: failures and recoveries from a detector, each reported once (module docstring).

    Args:
        detector: the cloud's detector.
        history: the stored failures; default: the history database of the settings, opened at the first pull.
        name: the source name, which keys its watermark.
    """

    def __init__(self, detector: Detector, history: FailureHistory | None = None, *, name: str = "cloud") -> None:
        self.detector = detector
        self.history = history
        self.name = name

    def pull(self, since: datetime | None, until: datetime) -> Pulled:
        seen = self.detector.observe(since, until)
        after = (since - LOOKBACK - LOOKBACK) if since is not None else EPOCH
        known = self._history().open_failures(after)
        known = known.assign(timestamp=pd.to_datetime(known["timestamp"], utc=True))
        failures = _new_failures(seen.failures, known, until)
        recoveries = _recoveries(known, seen, until)
        notes = [f"{len(failures)} failure(s) and {len(recoveries)} recovery(ies) from {self.name}"]
        return Pulled(
            until=until,
            failures=_frame([f.__dict__ for f in failures], FAILURE_COLUMNS),
            recoveries=_frame(recoveries, RECOVERY_COLUMNS),
            notes=notes if failures or recoveries else [],
        )

    def _history(self) -> FailureHistory:
        if self.history is None:
            from forewarn.store.repository import Repository

            self.history = Repository()
        return self.history


def _covered(failure: Failure, spans: Iterable[tuple[pd.Timestamp, float]]) -> bool:
    """Whether ``failure`` falls in a known down period ``[t0, t0 + recovery]`` (open: to the end of time)."""
    at = pd.Timestamp(failure.timestamp)
    for start, minutes in spans:
        if start <= at and (math.isnan(minutes) or at <= start + pd.Timedelta(minutes=minutes)):
            return True
    return False


def _new_failures(found: list[Failure], known: pd.DataFrame, until: datetime) -> list[Failure]:
    """Failures up to ``until`` not already stored nor inside a stored (or an earlier new) down period."""
    spans: dict[str, list[tuple[pd.Timestamp, float]]] = {}
    for row in known.itertuples(index=False):
        spans.setdefault(str(row.instance_id), []).append((pd.Timestamp(row.timestamp), float(row.recovery_minutes)))
    out: list[Failure] = []
    for failure in sorted(found, key=lambda f: (f.instance_id, f.timestamp)):
        if failure.timestamp > until or _covered(failure, spans.get(failure.instance_id, [])):
            continue
        out.append(failure)
        spans.setdefault(failure.instance_id, []).append(
            (pd.Timestamp(failure.timestamp), float(failure.recovery_minutes))
        )
    return out


def _recoveries(known: pd.DataFrame, seen: Observed, until: datetime) -> list[dict[str, Any]]:
    """Open failures of instances now healthy (or gone), with the minutes to their recovery."""
    out = []
    for row in known[known["recovery_minutes"].isna()].itertuples(index=False):
        instance_id, started = str(row.instance_id), pd.Timestamp(row.timestamp).to_pydatetime()
        if instance_id in seen.healthy:
            back = seen.healthy[instance_id]
            back = back if back is not None and started < back <= until else until
        elif instance_id not in seen.present:
            back = until
        else:
            continue
        if back >= started:
            minutes = (back - started).total_seconds() / 60.0
            out.append({"instance_id": instance_id, "timestamp": started, "recovery_minutes": minutes})
    return out


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["recovery_minutes"] = frame["recovery_minutes"].astype(float)
    return frame


def failure_source(adapter: CloudAdapter, history: FailureHistory | None = None) -> Source:
    """The failure source for ``adapter``'s cloud, named ``cloud``.

    Args:
        adapter: a simulated (also persistent), AWS or OpenStack adapter.
        history: what is already stored (a Repository); default: the settings' history database.
    """
    detector: Detector
    if adapter.name == "aws":
        from adapters.aws_failures import AwsFailures

        detector = AwsFailures(adapter)
    elif adapter.name == "openstack":
        from adapters.openstack_failures import NovaFailures

        detector = NovaFailures(adapter)
    elif adapter.name == "simulated":
        from adapters.simulated_failures import SimulatedFailures

        detector = SimulatedFailures(adapter)
    else:
        raise ConfigError(
            f"no failure detection for the cloud {adapter.name!r}", field="FOREWARN_CLOUD", allowed=CLOUDS
        )
    return CloudFailureSource(detector, history)


CLOUDS = ("simulated", "aws", "openstack")
