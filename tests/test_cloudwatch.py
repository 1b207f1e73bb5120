"""CloudWatch as a telemetry source, against a real moto_server: GetMetricData into the dataset format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from adapters.cloudwatch import CloudWatchSource, MetricSpec
from forewarn.errors import InputError, TransientAdapterError
from forewarn.telemetry.base import TelemetrySource
from tests.aws_support import endpoint, moto_endpoint, session
from tests.servers import free_port

__all__ = ["endpoint", "moto_endpoint"]  # fixtures
pytestmark = pytest.mark.integration
START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)


def put(url: str, instance_id: str, metric: str, values: list[float], *, namespace: str = "AWS/EC2") -> None:
    """One point a minute from START."""
    session().client("cloudwatch", endpoint_url=url).put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": metric,
                "Dimensions": [{"Name": "InstanceId", "Value": instance_id}],
                "Timestamp": START + timedelta(minutes=n),
                "Value": value,
            }
            for n, value in enumerate(values)
        ],
    )


def source(url: str) -> CloudWatchSource:
    return CloudWatchSource(session().client("cloudwatch", endpoint_url=url))


def test_reads_metrics_per_instance_and_step_in_the_dataset_format(endpoint: str) -> None:
    put(endpoint, "i-1", "CPUUtilization", [10, 20, 30, 40, 50, 60, 70, 80, 90, 100])
    put(endpoint, "i-1", "mem_used_percent", [50] * 10, namespace="CWAgent")
    put(endpoint, "i-2", "CPUUtilization", [5] * 10)
    cw = source(endpoint)
    assert isinstance(cw, TelemetrySource)
    frame = cw.read(START, START + timedelta(minutes=10), step_minutes=5, instance_ids=["i-1", "i-2", "i-3"])
    assert list(frame.columns[:2]) == ["instance_id", "timestamp"]
    assert str(frame["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert set(frame.columns) >= {"cpu_util", "mem_util", "net_in_bytes"}
    one = frame[frame["instance_id"] == "i-1"].set_index("timestamp")
    assert one["cpu_util"].tolist() == [30.0, 80.0]  # averages of each 5-minute period
    assert one["mem_util"].tolist() == [50.0, 50.0]
    assert one["net_in_bytes"].isna().all()
    assert sorted(frame["instance_id"].unique()) == ["i-1", "i-2"]  # i-3 has no data
    assert frame["timestamp"].min() == pd.Timestamp(START)


def test_more_queries_than_one_request_holds(endpoint: str) -> None:
    ids = [f"i-{n:03d}" for n in range(90)]  # 90 instances x 6 metrics = 540 queries: two requests
    for instance_id in (ids[0], ids[-1]):
        put(endpoint, instance_id, "CPUUtilization", [42.0])
    frame = source(endpoint).read(START, START + timedelta(minutes=5), step_minutes=5, instance_ids=ids)
    assert dict(zip(frame["instance_id"], frame["cpu_util"], strict=True)) == {ids[0]: 42.0, ids[-1]: 42.0}


def test_mistakes_are_one_line_errors(endpoint: str) -> None:
    cw = source(endpoint)
    with pytest.raises(InputError, match="time zone"):
        cw.read(datetime(2024, 1, 1), datetime(2024, 1, 2), step_minutes=5, instance_ids=["i-1"])
    with pytest.raises(InputError, match="not after start"):
        cw.read(START, START, step_minutes=5, instance_ids=["i-1"])
    with pytest.raises(InputError, match="metric name"):
        CloudWatchSource(session().client("cloudwatch", endpoint_url=endpoint), {"cpu util": MetricSpec(metric="X")})
    empty = cw.read(START, START + timedelta(minutes=5), step_minutes=5, instance_ids=[])
    assert empty.empty and "cpu_util" in empty.columns


def test_an_unreachable_endpoint_is_transient() -> None:
    cw = source(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientAdapterError):
        cw.read(START, START + timedelta(minutes=5), step_minutes=5, instance_ids=["i-1"])
