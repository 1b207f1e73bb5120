"""Prometheus metrics of the score-and-allocate cycle, and the exporter that serves them.

Each cycle updates a :class:`CycleMetrics` (its own registry) and writes it atomically to
``FOREWARN_HOME/metrics.prom`` in the text exposition format. A Prefect process worker runs every flow in a
short-lived process, so the long-running exporter (``python -m forewarn.metrics``, started by ``make serve``
when ``FOREWARN_METRICS_PORT`` is set) serves the last snapshot on 127.0.0.1 and Prometheus scrapes it.
Counters survive between cycles: each cycle starts from the totals of the last snapshot.

Metrics (all prefixed ``forewarn_``):
    failure_probability{instance_id}: calibrated P(failure within the horizon), per instance.
    risk_band{instance_id}: the policy's band, 0 low, 1 moderate, 2 high.
    instances{band}: instances per band.
    actions_total{type,outcome}: actions by type and final state (succeeded, failed, skipped, reverted...).
    plans_total{state}: plans by final state.
    rollbacks_total: plans rolled back.
    model_info{version,horizon_minutes}: the model that scored (``none`` without one).
    cycle_duration_seconds: how long a cycle took (histogram).
    feature_age_seconds: time from the newest materialized feature to the cycle's time.
    last_cycle_timestamp_seconds: when the last cycle finished (Unix time).
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import accumulate
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from forewarn.errors import ConfigError
from forewarn.schemas import Band, Plan, PlanState, RiskScore
from forewarn.settings import get_settings

PORT_VARIABLE = "FOREWARN_METRICS_PORT"
SNAPSHOT = "metrics.prom"
PROBABILITY, BAND = "forewarn_failure_probability", "forewarn_risk_band"
BAND_VALUE = {Band.LOW: 0, Band.MODERATE: 1, Band.HIGH: 2}
DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)


class CycleMetrics(Collector):
    """The metrics of the cycles so far, as plain values served by a collector on ``registry``.

    Plain values rather than prometheus-client metric objects: Feast switches prometheus-client to
    multi-process storage when imported, which would share values between instances of this class.
    """

    def __init__(self) -> None:
        self.probability: dict[str, float] = {}
        self.band: dict[str, int] = {}
        self.actions: defaultdict[tuple[str, str], float] = defaultdict(float)
        self.plans: defaultdict[str, float] = defaultdict(float)
        self.rollbacks = 0.0
        self.model: dict[str, str] = {"version": "none", "horizon_minutes": ""}
        self.buckets = [0.0] * (len(DURATION_BUCKETS) + 1)
        self.duration_sum = 0.0
        self.feature_age: float | None = None
        self.last_cycle: float | None = None
        self.breaker_open: bool | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def record_cycle(
        self,
        scores: Sequence[RiskScore],
        bands: Mapping[str, Band],
        plan: Plan,
        *,
        model_version: str | None,
        horizon_minutes: int,
        duration_seconds: float,
        feature_age_seconds: float | None,
        breaker_open: bool | None = None,
    ) -> None:
        """Set the gauges to this cycle's fleet and add its plan to the counters."""
        self.breaker_open = breaker_open
        self.probability = {s.instance_id: s.probability for s in scores}
        self.band = {instance_id: BAND_VALUE[band] for instance_id, band in bands.items()}
        for action in plan.actions:
            self.actions[(action.type.value, action.state.value)] += 1
        self.plans[plan.state.value] += 1
        self.rollbacks += 1.0 if plan.state == PlanState.ROLLED_BACK else 0.0
        self.model = {"version": model_version or "none", "horizon_minutes": str(horizon_minutes)}
        self.buckets[bisect_left(DURATION_BUCKETS, duration_seconds)] += 1
        self.duration_sum += duration_seconds
        self.feature_age = feature_age_seconds if feature_age_seconds is not None else self.feature_age
        self.last_cycle = time.time()

    def per_instance(self) -> list[tuple[str, str, Mapping[str, float]]]:
        """The gauges with one sample per instance: name, help and values by instance id."""
        return [
            (PROBABILITY, "Calibrated probability of failure within the horizon", self.probability),
            (BAND, "Risk band from the policy: 0 low, 1 moderate, 2 high", self.band),
        ]

    def collect(self) -> Iterator[Metric]:
        for name, documentation, values in self.per_instance():
            family = GaugeMetricFamily(name, documentation, labels=["instance_id"])
            for instance_id, value in sorted(values.items()):
                family.add_metric([instance_id], value)
            yield family
        yield from self.fleet_metrics()

    def fleet_metrics(self) -> Iterator[Metric]:
        """Every metric but the per-instance gauges."""
        per_band = GaugeMetricFamily("forewarn_instances", "Instances per risk band", labels=["band"])
        for name, code in BAND_VALUE.items():
            per_band.add_metric([name.value], sum(1 for b in self.band.values() if b == code))
        actions = CounterMetricFamily("forewarn_actions", "Actions by type and outcome", labels=["type", "outcome"])
        for (kind, outcome), count in sorted(self.actions.items()):
            actions.add_metric([kind, outcome], count)
        plans = CounterMetricFamily("forewarn_plans", "Plans by final state", labels=["state"])
        for state, count in sorted(self.plans.items()):
            plans.add_metric([state], count)
        yield from (per_band, actions, plans)
        yield CounterMetricFamily("forewarn_rollbacks", "Plans rolled back", value=self.rollbacks)
        yield InfoMetricFamily("forewarn_model", "The model that scored the last cycle", value=self.model)
        cumulative = list(accumulate(self.buckets))
        bounds = [*(str(float(b)) for b in DURATION_BUCKETS), "+Inf"]
        yield HistogramMetricFamily(
            "forewarn_cycle_duration_seconds",
            "Duration of a score-and-allocate cycle",
            buckets=list(zip(bounds, cumulative, strict=True)),
            sum_value=self.duration_sum,
        )
        if self.feature_age is not None:
            yield GaugeMetricFamily(
                "forewarn_feature_age_seconds",
                "Seconds from the newest materialized feature to the cycle time",
                value=self.feature_age,
            )
        if self.breaker_open is not None:
            yield GaugeMetricFamily(
                "forewarn_circuit_breaker_open",
                "1 while the circuit breaker holds plans as shadow plans (see `forewarn policy breaker`)",
                value=float(self.breaker_open),
            )
        if self.last_cycle is not None:
            yield GaugeMetricFamily(
                "forewarn_last_cycle_timestamp_seconds", "When the last cycle finished", value=self.last_cycle
            )

    def restore(self, path: Path) -> None:
        """Carry the counters and the duration histogram on from a snapshot a previous cycle wrote."""
        if not path.exists():
            return
        cumulative: dict[float, float] = {}
        for family in text_string_to_metric_families(_without_per_instance(path.read_text())):
            for sample in family.samples:
                name, labels, value = sample.name, sample.labels, sample.value
                if name == "forewarn_actions_total":
                    self.actions[(labels["type"], labels["outcome"])] += value
                elif name == "forewarn_plans_total":
                    self.plans[labels["state"]] += value
                elif name == "forewarn_rollbacks_total":
                    self.rollbacks += value
                elif name == "forewarn_cycle_duration_seconds_sum":
                    self.duration_sum += value
                elif name == "forewarn_cycle_duration_seconds_bucket":
                    cumulative[float(labels["le"])] = value
        bounds = [*(float(b) for b in DURATION_BUCKETS), float("inf")]
        if set(bounds) <= set(cumulative):
            counts = [cumulative[b] for b in bounds]
            for index, count in enumerate(counts):
                self.buckets[index] += count - (counts[index - 1] if index else 0.0)

    def text(self) -> str:
        """The snapshot in the Prometheus text format: what ``generate_latest`` of the registry gives, with the
        per-instance gauges (two samples per instance, 200,000 at 100,000 instances) formatted in one pass
        rather than one sample object each."""
        out = []
        for name, documentation, values in self.per_instance():
            out += [f"# HELP {name} {documentation}\n", f"# TYPE {name} gauge\n"]
            out += [f'{name}{{instance_id="{_escape(i)}"}} {floatToGoString(v)}\n' for i, v in sorted(values.items())]
        return "".join(out) + generate_latest(_Collected(self.fleet_metrics)).decode("utf-8")

    def write(self, path: Path) -> Path:
        """Write the snapshot atomically (Prometheus text format): a temporary file, then renamed."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        temporary.write_text(self.text(), encoding="utf-8")
        os.replace(temporary, path)
        return path


class _Collected(Collector):
    def __init__(self, metrics: Callable[[], Iterator[Metric]]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self.metrics()


def _without_per_instance(text: str) -> str:
    """The snapshot less the per-instance gauges, which restoring does not read (100,000s of lines to parse)."""
    skip = tuple(f"{prefix}{name}{end}" for name in (PROBABILITY, BAND) for prefix, end in (
        ("", "{"), ("# HELP ", " "), ("# TYPE ", " ")))  # fmt: skip
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith(skip))


def _escape(label: str) -> str:
    """A label value as the text format escapes it (backslash, newline, double quote)."""
    return label.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def snapshot_path() -> Path:
    """Where cycles write their metrics: ``FOREWARN_HOME/metrics.prom``."""
    return get_settings().home / SNAPSHOT


def record_to_snapshot(
    scores: Sequence[RiskScore],
    bands: Mapping[str, Band],
    plan: Plan,
    *,
    model_version: str | None,
    horizon_minutes: int,
    duration_seconds: float,
    feature_age_seconds: float | None,
    path: Path | None = None,
    breaker_open: bool | None = None,
) -> CycleMetrics:
    """Restore the counters from the snapshot, record one cycle and write the snapshot back."""
    target = path or snapshot_path()
    metrics = CycleMetrics()
    metrics.restore(target)
    metrics.record_cycle(
        scores,
        bands,
        plan,
        model_version=model_version,
        horizon_minutes=horizon_minutes,
        duration_seconds=duration_seconds,
        feature_age_seconds=feature_age_seconds,
        breaker_open=breaker_open,
    )
    metrics.write(target)
    return metrics


class SnapshotCollector(Collector):
    """Serves the metrics of the last snapshot file, read again on every scrape (nothing when absent)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def collect(self) -> Iterator[Metric]:
        if not self.path.exists():
            return iter(())
        return iter(list(text_string_to_metric_families(self.path.read_text())))


def metrics_port(environ: Mapping[str, str] | None = None) -> int | None:
    """The exporter's port from ``FOREWARN_METRICS_PORT``, or None when it is not set."""
    value = (environ if environ is not None else os.environ).get(PORT_VARIABLE, "").strip()
    if not value:
        return None
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ConfigError(f"'{value}' is not a port number (1-65535)", field=PORT_VARIABLE)
    return int(value)


def serve(port: int, *, path: Path | None = None, addr: str = "127.0.0.1") -> WSGIServer:
    """Start the exporter thread on ``addr:port`` serving the snapshot at ``path``; ``shutdown()`` stops it."""
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(path or snapshot_path()))
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server


def main() -> None:
    """``python -m forewarn.metrics``: serve the snapshot on 127.0.0.1:FOREWARN_METRICS_PORT until stopped."""
    port = metrics_port()
    if port is None:
        raise SystemExit(f"set {PORT_VARIABLE} to the port the exporter should listen on (127.0.0.1)")
    path = snapshot_path()
    serve(port, path=path)
    print(f"forewarn metrics on http://127.0.0.1:{port}/metrics from {path.resolve()}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
