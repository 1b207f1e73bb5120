"""Telemetry from Amazon CloudWatch through ``GetMetricData``: one query per (instance, metric), batched.

Each Forewarn metric maps to one CloudWatch metric with a statistic (``DEFAULT_METRICS``; the EC2 basic
metrics by default, the CloudWatch agent's ``mem_used_percent`` when installed). Rows are the period starts
CloudWatch returns (the period is ``step_minutes``), pivoted to the dataset format. Up to 500 queries go in one
request, as the API allows; ``NextToken`` pages are followed. Throttling and 5xx raise
:class:`TransientAdapterError`; a missing metric is simply absent (CloudWatch returns no points).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict

from adapters.aws_calls import call
from forewarn.errors import AdapterError, InputError
from forewarn.sources.prometheus import window
from forewarn.telemetry.base import check_step, utc
from forewarn.telemetry.sources import Pulled

MAX_QUERIES = 500
"""Queries per GetMetricData request (the API's limit)."""


class MetricSpec(BaseModel):
    """Where one Forewarn metric lives in CloudWatch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = "AWS/EC2"
    metric: str
    stat: str = "Average"
    dimension: str = "InstanceId"


DEFAULT_METRICS: dict[str, MetricSpec] = {
    "cpu_util": MetricSpec(metric="CPUUtilization"),
    "net_in_bytes": MetricSpec(metric="NetworkIn", stat="Sum"),
    "net_out_bytes": MetricSpec(metric="NetworkOut", stat="Sum"),
    "disk_read_ops": MetricSpec(metric="EBSReadOps", stat="Sum"),
    "status_check_failed": MetricSpec(metric="StatusCheckFailed", stat="Maximum"),
    "mem_util": MetricSpec(namespace="CWAgent", metric="mem_used_percent"),
}


class CloudWatchSource:
    """A TelemetrySource over a boto3 CloudWatch client (inject one with ``endpoint_url`` for tests).

    Args:
        client: ``boto3.client("cloudwatch")`` or a session's.
        metrics: Forewarn metric name -> :class:`MetricSpec`.
    """

    def __init__(self, client: Any, metrics: Mapping[str, MetricSpec] | None = None) -> None:
        self.client = client
        self.metrics = dict(DEFAULT_METRICS if metrics is None else metrics)
        for name in self.metrics:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise InputError(f"{name!r} is not a valid metric name (letters, digits, _)", field="metrics")

    def read(
        self,
        start: datetime,
        end: datetime,
        *,
        step_minutes: int,
        instance_ids: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Telemetry in ``[start, end)``; CloudWatch needs the instances named, so ``None`` reads none."""
        check_step(step_minutes)
        lo, hi = utc(start, name="start"), utc(end, name="end")
        if hi <= lo:
            raise InputError(f"end {hi.isoformat()} is not after start {lo.isoformat()}", field="end")
        queries, names = self._queries(list(instance_ids or []), step_minutes * 60)
        rows: list[tuple[str, pd.Timestamp, str, float]] = []
        for first in range(0, len(queries), MAX_QUERIES):
            for result in self._fetch(queries[first : first + MAX_QUERIES], lo, hi):
                instance_id, metric = names[result["Id"]]
                for stamp, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
                    rows.append((instance_id, pd.Timestamp(stamp).tz_convert("UTC"), metric, float(value)))
        return self._frame(rows, lo, hi)

    def _queries(self, instance_ids: list[str], period: int) -> tuple[list[dict[str, Any]], dict[str, tuple[str, str]]]:
        queries: list[dict[str, Any]] = []
        names: dict[str, tuple[str, str]] = {}
        for i, instance_id in enumerate(instance_ids):
            for j, (metric, spec) in enumerate(self.metrics.items()):
                query_id = f"q{i}_{j}"
                names[query_id] = (instance_id, metric)
                queries.append(
                    {
                        "Id": query_id,
                        "MetricStat": {
                            "Metric": {
                                "Namespace": spec.namespace,
                                "MetricName": spec.metric,
                                "Dimensions": [{"Name": spec.dimension, "Value": instance_id}],
                            },
                            "Period": period,
                            "Stat": spec.stat,
                        },
                        "ReturnData": True,
                    }
                )
        return queries, names

    def _fetch(self, queries: list[dict[str, Any]], lo: pd.Timestamp, hi: pd.Timestamp) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        params: dict[str, Any] = {
            "MetricDataQueries": queries,
            "StartTime": lo.to_pydatetime(),
            "EndTime": hi.to_pydatetime(),
            "ScanBy": "TimestampAscending",
        }
        while True:
            page = call(self.client, "get_metric_data", **params)
            for message in page.get("Messages", []):
                if message.get("Code") not in (None, "", "PartialData"):
                    raise AdapterError(f"get_metric_data: {message.get('Code')}: {message.get('Value', '')}")
            results.extend(page.get("MetricDataResults", []))
            token = page.get("NextToken")
            if not token:
                return results
            params["NextToken"] = token

    def _frame(
        self, rows: list[tuple[str, pd.Timestamp, str, float]], lo: pd.Timestamp, hi: pd.Timestamp
    ) -> pd.DataFrame:
        metrics = list(self.metrics)
        if not rows:
            return pd.DataFrame(
                {"instance_id": pd.Series(dtype=str), "timestamp": pd.Series(dtype="datetime64[ns, UTC]")}
                | {m: pd.Series(dtype=float) for m in metrics}
            )
        long = pd.DataFrame(rows, columns=["instance_id", "timestamp", "metric", "value"])
        long = long[(long["timestamp"] >= lo) & (long["timestamp"] < hi)]
        wide = long.pivot_table(index=["instance_id", "timestamp"], columns="metric", values="value", aggfunc="mean")
        wide = wide.reindex(columns=metrics).reset_index()
        wide.columns.name = None
        wide["timestamp"] = pd.to_datetime(wide["timestamp"], utc=True).astype("datetime64[ns, UTC]")
        return wide.sort_values(["instance_id", "timestamp"], kind="stable").reset_index(drop=True)


class CloudWatchPull:
    """The ingest flow's ``cloudwatch`` source: :class:`CloudWatchSource` since the watermark.

    Each pull reads whole periods in ``[since - overlap, until)`` (``until - lookback`` the first time), at most
    ``max_window``, both ends floored to the step so a period still filling is read on a later pull. The
    instances are the ones named, or every ``dimension`` value CloudWatch lists metrics for in ``namespace``.

    Args:
        client: a boto3 CloudWatch client.
        name: the watermark's key (no credentials).
    """

    kind = "cloudwatch"

    def __init__(
        self,
        client: Any,
        *,
        name: str,
        metrics: Mapping[str, MetricSpec] | None = None,
        instances: Sequence[str] = (),
        namespace: str = "AWS/EC2",
        step_minutes: int = 5,
        lookback: timedelta = timedelta(hours=1),
        overlap: timedelta = timedelta(minutes=10),
        max_window: timedelta = timedelta(hours=6),
    ) -> None:
        self.reader = CloudWatchSource(client, metrics)
        self.name = name
        self.instances, self.namespace, self.step_minutes = list(instances), namespace, step_minutes
        self.lookback, self.overlap, self.max_window = lookback, overlap, max_window

    def instance_ids(self) -> list[str]:
        """The instances named, or those CloudWatch has metrics for (``ListMetrics``)."""
        if self.instances:
            return self.instances
        found: set[str] = set()
        params: dict[str, Any] = {"Namespace": self.namespace, "Dimensions": [{"Name": "InstanceId"}]}
        while True:
            page = call(self.reader.client, "list_metrics", **params)
            for metric in page.get("Metrics", []):
                found.update(d["Value"] for d in metric.get("Dimensions", []) if d.get("Name") == "InstanceId")
            if not page.get("NextToken"):
                return sorted(found)
            params["NextToken"] = page["NextToken"]

    def pull(self, since: datetime | None, until: datetime) -> Pulled:
        step = pd.Timedelta(minutes=self.step_minutes)
        start, end = window(since, until, lookback=self.lookback, overlap=self.overlap, max_window=self.max_window)
        lo, hi = pd.Timestamp(start).floor(step), pd.Timestamp(end).floor(step)
        if hi <= lo:
            return Pulled(until=since or hi.to_pydatetime())
        ids = self.instance_ids()
        if not ids:
            return Pulled(until=hi.to_pydatetime(), notes=[f"no instance has metrics in {self.namespace}"])
        frame = self.reader.read(
            lo.to_pydatetime(), hi.to_pydatetime(), step_minutes=self.step_minutes, instance_ids=ids
        )
        return Pulled(until=hi.to_pydatetime(), telemetry=frame)
