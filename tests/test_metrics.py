"""Forewarn's Prometheus metrics: what a cycle records, counters carried between cycles, and a real scrape.

The scrape test starts the exporter and a real Prometheus (Debian ``prometheus``) on 127.0.0.1; it skips
when the binary is absent and fails under CI=true.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from forewarn import metrics
from forewarn.errors import ConfigError
from forewarn.schemas import Action, ActionState, ActionType, Band, Plan, PlanState, PolicyMode, RiskScore
from tests.servers import free_port, require_binary, start, stop, wait_for_port

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def score(instance: str, p: float) -> RiskScore:
    return RiskScore(instance_id=instance, timestamp=NOW, probability=p, horizon_minutes=60, model_version="v1")


def plan(state: PlanState, *actions: tuple[ActionType, ActionState]) -> Plan:
    return Plan(
        policy="default",
        mode=PolicyMode.AUTO,
        state=state,
        actions=[Action(type=t, instance_id="i-1", state=s) for t, s in actions],
    )


def record(path: Path, cycle_plan: Plan, *, scores: list[RiskScore] | None = None) -> metrics.CycleMetrics:
    return metrics.record_to_snapshot(
        scores if scores is not None else [score("i-1", 0.91), score("i-2", 0.02)],
        {"i-1": Band.HIGH, "i-2": Band.LOW},
        cycle_plan,
        model_version="v1",
        horizon_minutes=60,
        duration_seconds=3.0,
        feature_age_seconds=120.0,
        path=path,
    )


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }


def test_a_cycle_writes_probability_band_actions_model_duration_and_freshness(tmp_path: Path) -> None:
    path = tmp_path / "metrics.prom"
    record(path, plan(PlanState.SUCCEEDED, (ActionType.MIGRATE, ActionState.SUCCEEDED)))
    got = samples(path)
    assert got[("forewarn_failure_probability", (("instance_id", "i-1"),))] == pytest.approx(0.91)
    assert got[("forewarn_risk_band", (("instance_id", "i-1"),))] == 2
    assert got[("forewarn_risk_band", (("instance_id", "i-2"),))] == 0
    assert got[("forewarn_instances", (("band", "high"),))] == 1
    assert got[("forewarn_actions_total", (("outcome", "succeeded"), ("type", "migrate")))] == 1
    assert got[("forewarn_model_info", (("horizon_minutes", "60"), ("version", "v1")))] == 1
    assert got[("forewarn_cycle_duration_seconds_count", ())] == 1
    assert got[("forewarn_cycle_duration_seconds_bucket", (("le", "5.0"),))] == 1
    assert got[("forewarn_cycle_duration_seconds_bucket", (("le", "2.0"),))] == 0
    assert got[("forewarn_feature_age_seconds", ())] == 120.0


def test_counters_carry_on_between_cycles_and_gauges_follow_the_fleet(tmp_path: Path) -> None:
    path = tmp_path / "metrics.prom"
    record(path, plan(PlanState.SUCCEEDED, (ActionType.MIGRATE, ActionState.SUCCEEDED)))
    record(path, plan(PlanState.ROLLED_BACK, (ActionType.MIGRATE, ActionState.REVERTED)))
    record(path, plan(PlanState.SUCCEEDED, (ActionType.MIGRATE, ActionState.SUCCEEDED)), scores=[score("i-3", 0.5)])
    got = samples(path)
    assert got[("forewarn_actions_total", (("outcome", "succeeded"), ("type", "migrate")))] == 2
    assert got[("forewarn_actions_total", (("outcome", "reverted"), ("type", "migrate")))] == 1
    assert got[("forewarn_rollbacks_total", ())] == 1
    assert got[("forewarn_plans_total", (("state", "SUCCEEDED"),))] == 2
    assert got[("forewarn_cycle_duration_seconds_count", ())] == 3
    assert got[("forewarn_cycle_duration_seconds_sum", ())] == pytest.approx(9.0)
    probabilities = {k for k in got if k[0] == "forewarn_failure_probability"}
    assert probabilities == {("forewarn_failure_probability", (("instance_id", "i-3"),))}


def test_the_snapshot_is_what_prometheus_client_writes(tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    odd = ['vm-"quoted"', "vm-back\\slash", "vm-new\nline", "vm-ünï", "vm-0"]
    values = [0.91, 1e-7, 12345678.0, float("nan"), 0.0]
    cycle = record(tmp_path / "metrics.prom", plan(PlanState.SUCCEEDED), scores=[*map(score, odd, [0.5] * 5)])
    cycle.probability = dict(zip(odd, values, strict=True))
    cycle.band = {i: n % 3 for n, i in enumerate(odd)}
    assert cycle.text() == generate_latest(cycle.registry).decode("utf-8")
    cycle.write(tmp_path / "metrics.prom")
    assert samples(tmp_path / "metrics.prom")[("forewarn_risk_band", (("instance_id", 'vm-"quoted"'),))] == 0


def test_metrics_port_is_read_from_the_environment_and_checked() -> None:
    assert metrics.metrics_port({}) is None
    assert metrics.metrics_port({"FOREWARN_METRICS_PORT": "9464"}) == 9464
    with pytest.raises(ConfigError, match="FOREWARN_METRICS_PORT"):
        metrics.metrics_port({"FOREWARN_METRICS_PORT": "http"})


def test_the_exporter_serves_the_latest_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "metrics.prom"
    server = metrics.serve(free_port(), path=path)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        assert "forewarn_failure_probability" not in urllib.request.urlopen(url, timeout=5).read().decode()
        record(path, plan(PlanState.SUCCEEDED))
        assert 'forewarn_failure_probability{instance_id="i-1"} 0.91' in urllib.request.urlopen(url).read().decode()
    finally:
        server.shutdown()


def query(base: str, promql: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.loads(response.read())
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


@pytest.fixture
def scraped(tmp_path: Path) -> Iterator[str]:
    """The exporter serving a snapshot, and a real Prometheus scraping it every second; yields its URL."""
    binary = require_binary("prometheus")
    path = tmp_path / "metrics.prom"
    record(path, plan(PlanState.SUCCEEDED, (ActionType.MIGRATE, ActionState.SUCCEEDED)))
    exporter = metrics.serve(free_port(), path=path)
    config = yaml.safe_load(Path("ops/prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["scrape_configs"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{exporter.server_port}"]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    argv = [
        binary,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    process = start(argv, log=tmp_path / "prometheus.log")
    try:
        wait_for_port(port, timeout=60, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)
        exporter.shutdown()


@pytest.mark.integration
def test_prometheus_scrapes_the_failure_probability(scraped: str) -> None:
    deadline = time.monotonic() + 60
    result: list[dict[str, Any]] = []
    while not result and time.monotonic() < deadline:
        time.sleep(0.5)
        result = query(scraped, 'forewarn_failure_probability{job="forewarn"}')
    by_instance = {r["metric"]["instance_id"]: float(r["value"][1]) for r in result}
    assert by_instance == {"i-1": pytest.approx(0.91), "i-2": pytest.approx(0.02)}
    high = query(scraped, 'forewarn_instances{band="high"}')
    assert float(high[0]["value"][1]) == 1


@pytest.mark.integration
def test_every_grafana_panel_query_is_valid_promql(scraped: str) -> None:
    dashboard = json.loads(Path("ops/grafana/forewarn.json").read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(expressions) >= 10
    for expr in expressions:
        query(scraped, expr)  # Prometheus answers 400 (HTTPError) to invalid PromQL
