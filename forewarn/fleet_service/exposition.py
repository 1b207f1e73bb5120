"""The fleet's metrics in the Prometheus text exposition format, named as node_exporter and blackbox_exporter
name theirs, one ``instance`` label per instance, so the shipped PromQL (``forewarn/telemetry/queries.yaml``)
gives back the fleet's own values.

At fleet time ``t`` every instance up at ``t`` (it has a sample at the last step at or before ``t``) shows:

* counters that grow by each sample's value over its step: ``node_cpu_seconds_total`` (``mode="idle"`` by
  ``(1 - cpu) * step`` on each of its vCPUs, ``mode="user"`` by ``cpu * step``), ``node_disk_read_bytes_total`` and
  ``node_disk_written_bytes_total`` (MB/s * 1e6 * step), ``node_network_receive_errs_total`` (``error_count`` x
  step minutes, so the shipped "per minute" query gives back ``error_count``; ``transmit`` stays 0);
* gauges of the last sample: ``node_memory_MemTotal_bytes``, ``node_memory_MemAvailable_bytes`` (``1 - memory``
  of it) and ``probe_icmp_duration_seconds{phase="rtt"}`` (``net_latency_ms / 1000``).

An instance that is down is absent, as a node_exporter that does not answer is.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from forewarn.fleet_service.chunks import Chunk, increments

GIB_PER_MEMORY_UNIT = 8
VCPUS_PER_CPU_UNIT = 4


def _value(number: float) -> str:
    return repr(float(number))


def render(chunk: Chunk, instances: pd.DataFrame, at: datetime, step_minutes: int, fleet_seconds: float) -> str:
    """The exposition text at fleet time ``at`` (which falls in ``chunk``)."""
    stamp = pd.Timestamp(at)
    telemetry = chunk.telemetry[chunk.telemetry["timestamp"] <= stamp]
    added = increments(telemetry, step_minutes).groupby(telemetry["instance_id"]).sum()
    totals = chunk.before.add(added.reindex(chunk.before.index, fill_value=0.0), fill_value=0.0)
    last_step = chunk.start + ((stamp - chunk.start) // pd.Timedelta(minutes=step_minutes)) * pd.Timedelta(
        minutes=step_minutes
    )
    latest = telemetry[telemetry["timestamp"] == last_step].set_index("instance_id")
    static = instances.set_index("instance_id")
    lines: dict[str, list[str]] = {name: [] for name in _HELP}
    for iid in sorted(latest.index):
        row, total = latest.loc[iid], totals.loc[iid]
        cpus = max(1, round(float(static.at[iid, "cpu_capacity"]) * VCPUS_PER_CPU_UNIT))
        memory_total = float(static.at[iid, "memory_capacity"]) * GIB_PER_MEMORY_UNIT * 2**30
        for cpu in range(cpus):
            lines["node_cpu_seconds_total"] += [
                f'node_cpu_seconds_total{{cpu="{cpu}",instance="{iid}",mode="idle"}} {_value(total.idle_seconds)}',
                f'node_cpu_seconds_total{{cpu="{cpu}",instance="{iid}",mode="user"}} {_value(total.busy_seconds)}',
            ]
        lines["node_memory_MemTotal_bytes"].append(
            f'node_memory_MemTotal_bytes{{instance="{iid}"}} {_value(memory_total)}'
        )
        available = (1.0 - float(row["memory"])) * memory_total
        lines["node_memory_MemAvailable_bytes"].append(
            f'node_memory_MemAvailable_bytes{{instance="{iid}"}} {_value(available)}'
        )
        disk = f'device="vda",instance="{iid}"'
        lines["node_disk_read_bytes_total"].append(f"node_disk_read_bytes_total{{{disk}}} {_value(total.read_bytes)}")
        lines["node_disk_written_bytes_total"].append(
            f"node_disk_written_bytes_total{{{disk}}} {_value(total.written_bytes)}"
        )
        net = f'device="eth0",instance="{iid}"'
        lines["node_network_receive_errs_total"].append(
            f"node_network_receive_errs_total{{{net}}} {_value(total.net_errors)}"
        )
        lines["node_network_transmit_errs_total"].append(f"node_network_transmit_errs_total{{{net}}} 0.0")
        rtt = float(row["net_latency_ms"]) / 1000.0
        lines["probe_icmp_duration_seconds"].append(
            f'probe_icmp_duration_seconds{{instance="{iid}",phase="rtt"}} {_value(rtt)}'
        )
    lines["forewarn_fleet_time_seconds"].append(f"forewarn_fleet_time_seconds {_value(fleet_seconds)}")
    out: list[str] = []
    for name, (kind, text) in _HELP.items():
        out += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", *lines[name]]
    return "\n".join(out) + "\n"


_HELP: dict[str, tuple[str, str]] = {
    "node_cpu_seconds_total": ("counter", "Seconds the CPUs spent in each mode."),
    "node_memory_MemTotal_bytes": ("gauge", "Memory information field MemTotal_bytes."),
    "node_memory_MemAvailable_bytes": ("gauge", "Memory information field MemAvailable_bytes."),
    "node_disk_read_bytes_total": ("counter", "The total number of bytes read successfully."),
    "node_disk_written_bytes_total": ("counter", "The total number of bytes written successfully."),
    "node_network_receive_errs_total": ("counter", "Network device statistic receive_errs."),
    "node_network_transmit_errs_total": ("counter", "Network device statistic transmit_errs."),
    "probe_icmp_duration_seconds": ("gauge", "Duration of ICMP request by phase."),
    "forewarn_fleet_time_seconds": ("gauge", "The simulated fleet's clock, Unix seconds."),
}
