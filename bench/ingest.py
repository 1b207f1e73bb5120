"""Benchmark: ingestion throughput in samples per second, from files and from Prometheus, beside floors.

A sample is one metric value of one row. The simulator writes ``rows`` telemetry rows (6 metrics, 5-minute
step, one day per instance) and they are ingested into a fresh SQLite repository:

* files: ``ingest_files`` (read, screen, Great Expectations, store) against the floor of the raw file
  read alone, ``pandas.read_csv`` of the same telemetry.csv;
* Prometheus (when ``prometheus`` and ``promtool`` are installed): the same telemetry backfilled with
  promtool, then ``ingest_prometheus`` against the floor of the raw HTTP ``query_range`` of each default
  query plus its JSON parse alone.

Great Expectations is imported and warmed before timing (its first import takes seconds, once per
process). Run: ``.venv/bin/python -m bench.ingest [ROWS]`` prints one JSON object.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from forewarn.ingest import ingest_files, ingest_prometheus, open_repository
from forewarn.sim import SimConfig, simulate
from forewarn.telemetry.openmetrics import to_openmetrics
from forewarn.telemetry.prometheus import default_queries
from forewarn.validation import validate_telemetry

METRICS = 6


def _rate(samples: int, seconds: float) -> dict[str, float]:
    return {"seconds": round(seconds, 3), "samples_per_second": round(samples / seconds) if seconds else 0.0}


def _warm() -> None:
    frame = pd.DataFrame({"instance_id": ["a"], "timestamp": [pd.Timestamp("2024-01-01", tz="UTC")], "cpu": [0.5]})
    validate_telemetry(frame, metrics=["cpu"])


def _files(telemetry: pd.DataFrame, root: Path) -> dict[str, Any]:
    data = root / "files"
    data.mkdir()
    out = telemetry.copy()
    out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    out.to_csv(data / "telemetry.csv", index=False, float_format="%.6g")
    (data / "failures.csv").write_text("instance_id,timestamp\n")
    samples = len(telemetry) * METRICS
    began = time.perf_counter()
    pd.read_csv(data / "telemetry.csv")
    floor = time.perf_counter() - began
    repository = open_repository(f"sqlite:///{root / 'files.db'}")
    began = time.perf_counter()
    summary = ingest_files(data, repository=repository)
    took = time.perf_counter() - began
    assert summary.stored == len(telemetry), summary
    return {"ingest": _rate(samples, took), "floor_read_csv": _rate(samples, floor), "ratio": round(took / floor, 1)}


def _serve(telemetry: pd.DataFrame, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    (root / "sim.om").write_text(to_openmetrics(telemetry, step_minutes=5))
    promtool, binary = shutil.which("promtool"), shutil.which("prometheus")
    assert promtool and binary
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(root / "sim.om"), str(root / "tsdb")],
        check=True,
        capture_output=True,
    )
    (root / "prometheus.yml").write_text("global:\n  scrape_interval: 1h\nscrape_configs: []\n")
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=30d",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/-/ready", timeout=2).status_code == 200:
                return process, url
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError("prometheus did not become ready")


def _prometheus(telemetry: pd.DataFrame, root: Path) -> dict[str, Any]:
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        return {"skipped": "prometheus/promtool not installed (Debian package prometheus)"}
    process, url = _serve(telemetry, root)
    try:
        start, end = telemetry["timestamp"].min(), telemetry["timestamp"].max() + pd.Timedelta(minutes=5)
        samples = len(telemetry) * METRICS
        began = time.perf_counter()
        for query in default_queries().values():
            params = {
                "query": query,
                "start": str(start.timestamp()),
                "end": str(end.timestamp() - 1e-3),
                "step": "300s",
            }
            requests.get(f"{url}/api/v1/query_range", params=params, timeout=120).json()
        floor = time.perf_counter() - began
        repository = open_repository(f"sqlite:///{root / 'prometheus.db'}")
        hours = math.ceil((end - start) / pd.Timedelta(hours=1))
        began = time.perf_counter()
        summary = ingest_prometheus(url, since=f"{hours}h", step="5m", until=end.to_pydatetime(), repository=repository)
        took = time.perf_counter() - began
        assert summary.stored >= len(telemetry) * 0.99, summary
        return {
            "ingest": _rate(samples, took),
            "floor_http_json": _rate(samples, floor),
            "ratio": round(took / floor, 1),
        }
    finally:
        process.terminate()
        process.wait(timeout=30)


def run(rows: int) -> dict[str, Any]:
    """Ingest about ``rows`` simulated telemetry rows from files and from Prometheus; print and return JSON."""
    instances = max(1, math.ceil(rows / 288))
    end = datetime.fromtimestamp((int(time.time()) - 4 * 3600) // 300 * 300, UTC)
    config = SimConfig(instances=instances, days=1.0, seed=0, start=end - timedelta(days=1), failure_rate_per_day=0)
    telemetry = simulate(config).telemetry
    _warm()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        root = Path(tmp)
        prometheus_root = root / "prometheus"
        prometheus_root.mkdir()
        result = {
            "rows": len(telemetry),
            "samples": len(telemetry) * METRICS,
            "files": _files(telemetry, root),
            "prometheus": _prometheus(telemetry, prometheus_root),
        }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000)
