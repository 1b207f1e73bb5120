"""PrometheusSource against a real Prometheus backfilled with promtool, plus the query file loader.

The server test skips when prometheus/promtool are absent (Debian package ``prometheus``) and fails under
CI=true. Backfilled samples end four hours ago: promtool blocks must not overlap the head block, which
covers roughly the last two to three hours.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import requests

from forewarn.errors import InputError, TransientAdapterError
from forewarn.telemetry.prometheus import PrometheusSource, default_queries, load_queries
from tests.servers import free_port, require_binary, start, stop, wait_for_port

STEP = 60
HOURS = 3
# instance -> (idle rate per cpu, available/total memory, read B/s, written B/s, receive errors per s)
PLANTED = {
    "10.0.0.5:9100": (0.75, 0.3, 2e6, 5e5, 1 / 60),
    "10.0.0.6:9100": (0.40, 0.5, 1e6, 0.0, 0.0),
}
EXPECTED = {  # what the default queries should return for each instance
    "10.0.0.5:9100": {"cpu": 0.25, "memory": 0.7, "disk_read": 2.0, "disk_write": 0.5, "error_count": 1.0},
    "10.0.0.6:9100": {"cpu": 0.60, "memory": 0.5, "disk_read": 1.0, "disk_write": 0.0, "error_count": 0.0},
}


def _openmetrics(end: int) -> str:
    times = range(end - HOURS * 3600, end + 1, STEP)
    families: dict[str, list[str]] = {}
    t0 = times[0]

    def add(name: str, labels: str, value_at: object) -> None:
        family = families.setdefault(name, [])
        family.extend(f"{name}{{{labels}}} {value_at(t)} {t}" for t in times)  # type: ignore[operator]

    for instance, (idle, available, read, written, errs) in PLANTED.items():
        base = f'instance="{instance}",job="node"'
        for cpu in ("0", "1"):
            add("node_cpu_seconds_total", f'{base},cpu="{cpu}",mode="idle"', lambda t, r=idle: 1000 + r * (t - t0))
            add("node_cpu_seconds_total", f'{base},cpu="{cpu}",mode="user"', lambda t, r=idle: 5 + (1 - r) * (t - t0))
        add("node_memory_MemTotal_bytes", base, lambda t: 1e10)
        add("node_memory_MemAvailable_bytes", base, lambda t, a=available: a * 1e10)
        add("node_disk_read_bytes_total", f'{base},device="sda"', lambda t, r=read: r * (t - t0))
        add("node_disk_written_bytes_total", f'{base},device="sda"', lambda t, w=written: w * (t - t0))
        add("node_network_receive_errs_total", f'{base},device="eth0"', lambda t, e=errs: e * (t - t0))
        add("node_network_transmit_errs_total", f'{base},device="eth0"', lambda t: 0)
    lines = [line for family in families.values() for line in family]
    return "\n".join([*lines, "# EOF", ""])


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A Prometheus on 127.0.0.1 serving three hours of planted data ending four hours ago."""
    binary = require_binary("prometheus")
    promtool = require_binary("promtool")
    root = tmp_path_factory.mktemp("prometheus")
    end = (int(time.time()) - 4 * 3600) // 300 * 300
    (root / "samples.om").write_text(_openmetrics(end))
    env = {**os.environ, "DO_NOT_TRACK": "1"}
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(root / "samples.om"), str(root / "data")],
        check=True,
        capture_output=True,
        env=env,
        timeout=120,
    )
    (root / "prometheus.yml").write_text("global:\n  scrape_interval: 1h\nscrape_configs: []\n")
    port = free_port()
    process = start(
        [
            binary,
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=30d",
        ],
        log=root / "prometheus.log",
        env={"DO_NOT_TRACK": "1"},
    )
    try:
        wait_for_port(port, timeout=60, process=process)
        deadline = time.monotonic() + 60
        while requests.get(f"http://127.0.0.1:{port}/-/ready", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, (root / "prometheus.log").read_text()[-2000:]
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", end
    finally:
        stop(process)


@pytest.mark.integration
def test_reads_planted_node_exporter_values(prometheus: tuple[str, int]) -> None:
    url, end = prometheus
    source = PrometheusSource(url)
    stop_at = datetime.fromtimestamp(end, UTC)
    begin = stop_at - timedelta(hours=1)
    frame = source.read(begin, stop_at, step_minutes=5)
    assert sorted(frame["instance_id"].unique()) == sorted(PLANTED)
    assert len(frame) == 2 * 12  # [begin, end) at 5 minutes; end itself excluded
    assert frame["timestamp"].min() == begin and frame["timestamp"].max() == stop_at - timedelta(minutes=5)
    assert source.missing_metrics == ["net_latency_ms"]  # no blackbox_exporter series planted
    for instance, expected in EXPECTED.items():
        rows = frame[frame["instance_id"] == instance]
        for metric, value in expected.items():
            assert rows[metric].to_numpy() == pytest.approx(value, abs=1e-6), (instance, metric)


@pytest.mark.integration
def test_filters_instances_and_overrides_queries(prometheus: tuple[str, int]) -> None:
    url, end = prometheus
    idle = 'avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m]))'
    source = PrometheusSource(url, queries={"disk_write": None, "net_latency_ms": None, "idle": idle})
    stop_at = datetime.fromtimestamp(end, UTC)
    frame = source.read(stop_at - timedelta(minutes=30), stop_at, step_minutes=10, instance_ids=["10.0.0.6:9100"])
    assert set(frame["instance_id"]) == {"10.0.0.6:9100"}
    assert "disk_write" not in frame.columns
    assert frame["idle"].to_numpy() == pytest.approx(0.4)


@pytest.mark.integration
def test_rejected_query_names_the_metric(prometheus: tuple[str, int]) -> None:
    url, end = prometheus
    source = PrometheusSource(url, queries={"cpu": "rate(node_cpu_seconds_total[5m"})
    stop_at = datetime.fromtimestamp(end, UTC)
    with pytest.raises(InputError, match="field 'cpu': Prometheus rejected the query"):
        source.read(stop_at - timedelta(minutes=30), stop_at, step_minutes=5)


def test_unreachable_server_is_transient_after_retries() -> None:
    source = PrometheusSource(f"http://127.0.0.1:{free_port()}", timeout=1, attempts=2)
    now = datetime.now(UTC)
    with pytest.raises(TransientAdapterError, match="failed 2 times"):
        source.read(now - timedelta(minutes=10), now, step_minutes=5)


def test_default_queries_cover_the_node_exporter_metrics() -> None:
    assert set(default_queries()) == {"cpu", "memory", "disk_read", "disk_write", "net_latency_ms", "error_count"}


def test_load_queries_reads_overrides_and_nulls(tmp_path: Path) -> None:
    path = tmp_path / "q.yaml"
    path.write_text("cpu: avg by (instance) (up)\ndisk_write: null\n")
    assert load_queries(path) == {"cpu": "avg by (instance) (up)", "disk_write": None}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cpu: up\n\tmemory: x\n", r"q.yaml:2: not valid YAML: found character"),
        ("- cpu\n", r"q.yaml:1: must be a mapping"),
        ("cpu: up\nmemory: 3\n", r"q.yaml:2, field 'memory': must be a PromQL query string or null"),
        ("cpu: up\n\nbad-name: up\n", r"q.yaml:3, field 'bad-name': metric names"),
    ],
)
def test_load_queries_errors_name_file_line_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "q.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        load_queries(path)


# -- simulator history backfilled with promtool, and node_exporter scraped live ---------------------------

SIM_METRICS = ["cpu", "memory", "disk_read", "disk_write", "net_latency_ms", "error_count"]


@pytest.fixture(scope="module")
def fleet_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """Prometheus with three hours of simulator history (ending four hours ago) and a live node_exporter."""
    from forewarn.sim import SimConfig, simulate
    from forewarn.telemetry.openmetrics import to_openmetrics

    binary, promtool = require_binary("prometheus"), require_binary("promtool")
    exporter = require_binary("prometheus-node-exporter")
    root = tmp_path_factory.mktemp("fleet-prometheus")
    end = datetime.fromtimestamp((int(time.time()) - 4 * 3600) // 300 * 300, UTC)
    config = SimConfig(instances=4, days=3 / 24, seed=5, start=end - timedelta(hours=3), failure_rate_per_day=0)
    telemetry = simulate(config).telemetry
    (root / "sim.om").write_text(to_openmetrics(telemetry, step_minutes=config.step_minutes))
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(root / "sim.om"), str(root / "data")],
        check=True,
        capture_output=True,
        timeout=120,
    )
    exporter_port, port = free_port(), free_port()
    node = start([exporter, f"--web.listen-address=127.0.0.1:{exporter_port}"], log=root / "node_exporter.log")
    (root / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1h\nscrape_configs:\n"
        f"  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n"
    )
    server = start(
        [
            binary,
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=30d",
        ],
        log=root / "prometheus.log",
    )
    try:
        wait_for_port(exporter_port, timeout=30, process=node)
        wait_for_port(port, timeout=60, process=server)
        deadline = time.monotonic() + 60
        while requests.get(f"http://127.0.0.1:{port}/-/ready", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, (root / "prometheus.log").read_text()[-2000:]
            time.sleep(0.2)
        yield {
            "url": f"http://127.0.0.1:{port}",
            "end": end,
            "telemetry": telemetry,
            "node": f"127.0.0.1:{exporter_port}",
        }
    finally:
        stop(server)
        stop(node)


@pytest.mark.integration
@pytest.mark.slow
def test_backfilled_simulator_history_is_ingested_value_for_value(
    fleet_prometheus: dict[str, object], tmp_path: Path
) -> None:
    from forewarn.ingest import ingest_prometheus, open_repository

    telemetry = fleet_prometheus["telemetry"]
    assert isinstance(telemetry, pd.DataFrame)
    until = telemetry["timestamp"].max().to_pydatetime() + timedelta(minutes=5)  # the last step's end
    repository = open_repository(f"sqlite:///{tmp_path / 'history.db'}")
    summary = ingest_prometheus(str(fleet_prometheus["url"]), since="3h", step="5m", until=until, repository=repository)
    assert summary.quarantined == 0, summary.reasons
    assert summary.validation is not None and summary.validation.success
    assert summary.stored == len(telemetry) and summary.samples == len(telemetry) * 6, summary
    assert summary.missing_metrics == []
    stored = repository.load_telemetry()
    assert sorted(stored["instance_id"].unique()) == sorted(telemetry["instance_id"].unique())
    merged = telemetry.merge(stored, on=["instance_id", "timestamp"], suffixes=("", "_stored"), validate="1:1")
    assert len(merged) == len(telemetry)
    for metric in SIM_METRICS:
        assert merged[f"{metric}_stored"].to_numpy() == pytest.approx(merged[metric].to_numpy(), rel=1e-6, abs=1e-9)
    again = ingest_prometheus(str(fleet_prometheus["url"]), since="3h", step="5m", until=until, repository=repository)
    assert again.stored == 0 and again.already_stored == len(telemetry)


def _wait_for_live_minute(url: str, timeout: float = 150.0) -> None:
    """Until node_exporter was scraped twice before a whole minute that has passed (rate needs two samples)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = requests.get(f"{url}/api/v1/query", params={"query": "count_over_time(up[10m])"}, timeout=5).json()
        result = answer["data"]["result"]
        if result and float(result[0]["value"][1]) >= 2:
            break
        assert time.monotonic() < deadline, "node_exporter was not scraped"
        time.sleep(0.5)
    first_minute = (int(time.time()) // 60 + 1) * 60
    time.sleep(max(0.0, first_minute + 1 - time.time()))


@pytest.mark.integration
@pytest.mark.slow
def test_live_node_exporter_through_the_cli_into_sqlite(fleet_prometheus: dict[str, object], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from forewarn.cli import app
    from forewarn.store import Repository

    url, node = str(fleet_prometheus["url"]), str(fleet_prometheus["node"])
    _wait_for_live_minute(url)
    database = f"sqlite:///{tmp_path / 'live.db'}"
    result = CliRunner().invoke(app, ["ingest", "prometheus", "--url", url, "--since", "10m", "--database", database])
    assert result.exit_code == 0, result.output
    assert "telemetry rows stored" in result.output and "passed" in result.output
    stored = Repository(database).load_telemetry()
    live = stored[stored["instance_id"] == node]
    assert len(live) >= 1
    assert live["cpu"].between(0, 1).all() and live["memory"].between(0, 1).all()
    assert (live["memory"] > 0).all()  # a running machine uses some memory
