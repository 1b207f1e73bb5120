"""A Prometheus scrape of node_exporter through the history loop under metric names of its own.

A fleet service (``forewarn fleet serve``) runs a small fleet with many failures. Its ``/metrics?at=`` is sampled
every five minutes over its two days of history and backfilled into a real Prometheus with ``promtool tsdb
create-blocks-from openmetrics``, as one gives a new Prometheus its past. The ingest flow then pulls the
``prometheus`` source (PromQL of a queries file naming ``node_cpu_busy``, ``node_mem_used``, ...; the shipped
metrics switched off) and the fleet's failures only (``frames: [failures, instances]``) into the history
database; materialize, train and score-and-allocate run from history at the fleet's present.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from adapters.simulated_remote import RemoteSimulatedAdapter
from forewarn.fleet_service.client import FleetApi
from forewarn.settings import PROJECT_ROOT
from tests.servers import free_port, require_binary, start, stop, wait_for_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
STEP = timedelta(minutes=5)
HISTORY_DAYS = 2
FLEET = ["--size", "24", "--seed", "7", "--failure-rate", "3", "--history-days", str(HISTORY_DAYS)]
# Ranges span three 5-minute samples: rate() needs two in its range, and the backfill has one per step.
QUERIES = {
    **{name: None for name in ("cpu", "memory", "disk_read", "disk_write", "net_latency_ms", "error_count")},
    "node_cpu_busy": '1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[15m]))',
    "node_mem_used": "1 - avg by (instance) (node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)",
    "node_disk_read_mbps": "sum by (instance) (rate(node_disk_read_bytes_total[15m])) / 1e6",
    "node_disk_write_mbps": "sum by (instance) (rate(node_disk_written_bytes_total[15m])) / 1e6",
    "node_rtt_ms": 'avg by (instance) (probe_icmp_duration_seconds{phase="rtt"}) * 1000',
    "node_net_errs_per_min": "sum by (instance) (rate(node_network_receive_errs_total[15m])) * 60",
}
NAMES = sorted(name for name, query in QUERIES.items() if query)


@dataclass(frozen=True)
class Fleet:
    url: str
    start: datetime  # the fleet's present when it was started: the cycles' time and the backfill's end


def _fleet_start() -> datetime:
    """Four hours before now, on the hour: backfilled blocks stay clear of the Prometheus head block."""
    return datetime.fromtimestamp((int(time.time()) - 4 * 3600) // 3600 * 3600, UTC)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    where = tmp_path_factory.mktemp("fleet")
    port, at = free_port(), _fleet_start()
    argv = [sys.executable, "-c", "from forewarn.cli import main; main()", "fleet", "serve", "--port", str(port)]
    argv += ["--state-dir", str(where / "state"), "--start", at.isoformat(), *FLEET]
    process = start(argv, log=where / "serve.log", env={"PYTHONPATH": str(PROJECT_ROOT)})
    try:
        wait_for_port(port, timeout=90, process=process)
        yield Fleet(f"http://127.0.0.1:{port}", at)
    except (RuntimeError, TimeoutError):
        raise AssertionError((where / "serve.log").read_text()) from None
    finally:
        stop(process, sig=signal.SIGTERM)


def openmetrics(fleet: Fleet) -> str:
    """The fleet's exposition every STEP over its history, each sample stamped, one series after another."""
    api = FleetApi(fleet.url)
    series: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    at = fleet.start - timedelta(days=HISTORY_DAYS)
    while at <= fleet.start:
        for family in text_string_to_metric_families(api.get("/metrics", at=at.isoformat())):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                key = f"{sample.name}{{{labels}}}"
                series[sample.name][key].append(f"{key} {sample.value!r} {at.timestamp():.0f}")
        at += STEP
    lines = [line for family in series.values() for samples in family.values() for line in samples]
    return "\n".join([*lines, "# EOF", ""])


@pytest.fixture(scope="module")
def prometheus(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prometheus on 127.0.0.1 holding the fleet's history, backfilled with promtool; stopped by its PID."""
    binary, promtool = require_binary("prometheus"), require_binary("promtool")
    root = tmp_path_factory.mktemp("prometheus")
    (root / "history.om").write_text(openmetrics(fleet))
    env = {**os.environ, "DO_NOT_TRACK": "1"}
    command = [promtool, "tsdb", "create-blocks-from", "openmetrics", str(root / "history.om"), str(root / "data")]
    subprocess.run(command, check=True, capture_output=True, env=env, timeout=300)
    (root / "prometheus.yml").write_text("global:\n  scrape_interval: 1h\nscrape_configs: []\n")
    port = free_port()
    argv = [binary, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'data'}"]
    argv += [f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=3650d"]
    process = start(argv, log=root / "prometheus.log", env={"DO_NOT_TRACK": "1"})
    try:
        wait_for_port(port, timeout=60, process=process)
        deadline = time.monotonic() + 60
        while requests.get(f"http://127.0.0.1:{port}/-/ready", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, (root / "prometheus.log").read_text()[-2000:]
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def _configure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fleet: Fleet, prometheus: str) -> str:
    queries = tmp_path / "queries.yaml"
    queries.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in QUERIES.items()) + "\n")
    window = f"{HISTORY_DAYS + 1}d"
    sources = [
        {"kind": "prometheus", "url": prometheus, "name": "node", "queries": str(queries), "step": "5m"}
        | {"lookback": window, "max_window": window},
        {"kind": "fleet", "url": fleet.url, "name": "fleet-failures", "frames": ["failures", "instances"]}
        | {"max_window": window},
    ]
    database = f"sqlite:///{tmp_path / 'history.db'}"
    for name, value in {
        "FOREWARN_HOME": str(tmp_path / "home"),
        "FOREWARN_DATABASE_URL": database,
        "FOREWARN_DATASET": str(tmp_path / "no-such-dataset"),
        "FOREWARN_FEAST_REDIS_URL": "",
        "FOREWARN_SOURCES": json.dumps(sources),
        "FOREWARN_FLEET_URL": fleet.url,
        "FOREWARN_TRAIN_DAYS": str(HISTORY_DAYS),
    }.items():
        monkeypatch.setenv(name, value)
    return database


def test_a_prometheus_scrape_goes_through_history_with_its_own_names(
    prefect_harness: None, fleet: Fleet, prometheus: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.ingest import ingest
    from flows.materialize import materialize
    from flows.score_and_allocate import score_and_allocate
    from flows.train import train
    from forewarn.features.windows import metrics_of
    from forewarn.pipeline import metric_of
    from forewarn.service import Context
    from forewarn.settings import Settings
    from forewarn.store.repository import Repository

    database = _configure(monkeypatch, tmp_path, fleet, prometheus)
    at = fleet.start.isoformat()
    landed = ingest(at=at, return_state=True)
    assert landed.is_completed(), landed.message
    repo = Repository(database)
    telemetry = repo.load_telemetry()
    assert sorted(metrics_of(telemetry)) == NAMES  # the queries file's names, none of the shipped ones
    assert telemetry["instance_id"].nunique() == 24
    assert telemetry["timestamp"].min() >= pd.Timestamp(fleet.start - timedelta(days=HISTORY_DAYS))
    assert telemetry["node_cpu_busy"].between(0, 1).mean() > 0.99
    failures = repo.load_failures()
    assert len(failures) > 24  # the fleet's failures over its history, not only those open now

    print(materialize(at=at))
    settings = Settings()
    glue = Context(settings=settings).glue
    assert sorted(glue.metrics) == NAMES and sorted(glue.registered_metrics()) == NAMES

    print(train(at=at))
    model = Context(settings=settings).registry.current()
    assert model is not None, "the train flow registered no champion"
    card = Context(settings=settings).registry.card(model.version)
    assert sorted(card.telemetry_metrics) == NAMES
    learnt = {metric_of(n) for n in model.feature_names} - {None}
    assert learnt and learnt <= set(NAMES), model.feature_names  # window features of our names only

    outcome = score_and_allocate(at=(fleet.start + timedelta(minutes=1)).isoformat(), return_state=True)
    assert outcome.is_completed(), outcome.message
    plans = Context(settings=settings).journal.list()
    assert len(plans) == 1 and plans[0].model_version == model.version
    snapshot = (settings.home / "metrics.prom").read_text()
    probability = {
        s.labels["instance_id"]: s.value
        for f in text_string_to_metric_families(snapshot)
        for s in f.samples
        if s.name == "forewarn_failure_probability"
    }
    up = set(telemetry.loc[telemetry["timestamp"] >= pd.Timestamp(fleet.start) - STEP * 2, "instance_id"])
    down = set(RemoteSimulatedAdapter(fleet.url).state.failed)  # failed in the fleet's cloud: not scored
    assert set(probability) <= up and up - set(probability) <= down, (sorted(up - set(probability)), sorted(down))
    assert len(probability) > 12 and all(0 <= p <= 1 for p in probability.values())
