"""The ``prometheus`` source: ``query_range`` of node_exporter series since the watermark.

Each pull reads the step grid in ``[since - overlap, until - lag)`` (``until - lookback`` on the first pull),
at most ``max_window`` of it, so a source far behind catches up over several runs. Instance labels are
mapped to fleet ids (``id_map``) and samples put on the step (:func:`forewarn.telemetry.normalise.normalise`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from forewarn.telemetry.normalise import NormalisationReport, normalise
from forewarn.telemetry.prometheus import PrometheusSource
from forewarn.telemetry.sources import Pulled


def window(
    since: datetime | None, until: datetime, *, lookback: timedelta, overlap: timedelta, max_window: timedelta
) -> tuple[datetime, datetime]:
    """The span one pull reads: from the watermark (less the overlap) or the look-back, at most max_window."""
    start = until - lookback if since is None else min(since, until) - overlap
    return start, min(until, start + max_window + (overlap if since is not None else timedelta(0)))


def safe_name(url: str) -> str:
    """``host:port/path`` of a URL, without scheme, user or password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path.rstrip('/')}"


class PrometheusPull:
    """A :class:`forewarn.telemetry.sources.Source` over a Prometheus server.

    Args:
        url: the base URL; ``user:password@`` in it is sent as basic auth and never printed.
        name: the watermark's key; default ``prometheus:host:port``.
        queries: per-metric PromQL overriding the defaults (``None`` drops a metric).
        step_minutes: the evaluation step.
        id_map: ``instance`` label -> fleet instance id.
        lookback: how far back the first pull reads.
        overlap: how far before the watermark each pull reads again (late samples).
        max_window: the longest span one pull reads.
        lag: how far behind ``until`` to stop, so the last step's scrapes have arrived.
        timeout, attempts: per HTTP request.
    """

    kind = "prometheus"

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        queries: Mapping[str, str | None] | None = None,
        step_minutes: int = 1,
        id_map: Mapping[str, str] | None = None,
        lookback: timedelta = timedelta(hours=1),
        overlap: timedelta = timedelta(minutes=5),
        max_window: timedelta = timedelta(hours=6),
        lag: timedelta = timedelta(0),
        timeout: float = 10,
        attempts: int = 3,
    ) -> None:
        self.reader = PrometheusSource(url, queries=queries, timeout=timeout, attempts=attempts)
        self.name = name or f"prometheus:{safe_name(url)}"
        self.step_minutes = step_minutes
        self.id_map = dict(id_map or {})
        self.lookback, self.overlap, self.max_window, self.lag = lookback, overlap, max_window, lag
        self.normalisation: NormalisationReport | None = None

    def pull(self, since: datetime | None, until: datetime) -> Pulled:
        end = until - self.lag
        start, end = window(since, end, lookback=self.lookback, overlap=self.overlap, max_window=self.max_window)
        if end <= start:
            return Pulled(until=end)
        frame = self.reader.read(start, end, step_minutes=self.step_minutes)
        notes = [f"no series for {', '.join(self.reader.missing_metrics)}"] if self.reader.missing_metrics else []
        if frame.empty:
            return Pulled(until=end, notes=notes)
        batch = normalise(frame, step_minutes=self.step_minutes, id_map=self.id_map)
        self.normalisation = batch.report
        metrics = [c for c in batch.frame.columns if c not in ("instance_id", "timestamp")]
        return Pulled(until=end, telemetry=batch.frame.dropna(how="all", subset=metrics), notes=notes)
