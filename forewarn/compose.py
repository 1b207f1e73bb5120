"""The composition root: the one module of ``forewarn/`` that picks a cloud adapter from ``adapters/``.

``FOREWARN_CLOUD`` names it: ``simulated`` (default) is a simulated cloud whose fleet, idempotency keys and
snapshots persist under ``FOREWARN_HOME/cloud/`` (seeded once from a dataset's instances and workloads),
so what one cycle does is still in force in the next; ``aws`` and ``openstack`` are the real ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from forewarn.cloud import CloudAdapter, SimulatedCloud
from forewarn.dataset import Dataset, read_dataset
from forewarn.dataset_fleet import instances_from, tasks_at
from forewarn.errors import ConfigError
from forewarn.schemas import Instance, Plan, Task, utcnow
from forewarn.service import Context, context
from forewarn.telemetry.sources import Source

if TYPE_CHECKING:
    from forewarn.sources.specs import CloudWatchSpec

SIMULATED_STATE = Path("cloud") / "simulated-fleet.json"


def simulated_state_path(ctx: Context) -> Path:
    return ctx.settings.home / SIMULATED_STATE


def cloud(ctx: Context, dataset: Dataset | None = None, *, at: datetime | None = None) -> CloudAdapter:
    """The cloud adapter of the settings.

    With ``FOREWARN_FLEET_URL`` the simulated cloud is the fleet service's (``forewarn fleet serve``), acted on over
    its API. Otherwise it is read from its state file; the first time, it is seeded from ``dataset`` (or
    ``FOREWARN_DATASET``): its instances, and the tasks running at ``at``.
    """
    s = ctx.settings
    if s.cloud == "aws":
        from adapters.aws import AwsAdapter

        groups = [g.strip() for g in s.aws_groups.split(",") if g.strip()]
        if not groups:
            raise ConfigError("name the Auto Scaling groups to manage", field="FOREWARN_AWS_GROUPS")
        from botocore.exceptions import NoRegionError

        try:
            return AwsAdapter(
                groups, endpoint_url=s.aws_endpoint_url or None, dry_run=ctx.dry_run, state_dir=s.home / "aws"
            )
        except NoRegionError:
            raise ConfigError(
                "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or region in the AWS profile)",
                field="AWS_REGION",
            ) from None
    if s.cloud == "openstack":
        from adapters.openstack import OpenStackAdapter

        return OpenStackAdapter(cloud=s.openstack_cloud or None, dry_run=ctx.dry_run, state_dir=s.home / "openstack")
    if s.fleet_url:
        from adapters.simulated_remote import RemoteSimulatedAdapter

        return RemoteSimulatedAdapter(s.fleet_url, dry_run=ctx.dry_run)
    from adapters.persistent import PersistentSimulatedAdapter

    path = simulated_state_path(ctx)
    if path.exists():
        return PersistentSimulatedAdapter(path, [], [], dry_run=ctx.dry_run)
    if dataset is None:
        if not s.dataset.is_dir():
            raise ConfigError(
                f"the simulated cloud has no state yet ({path}) and no dataset to seed it from ({s.dataset} is "
                "not a directory): run `forewarn simulate --out DIR` and set FOREWARN_DATASET=DIR",
                field="FOREWARN_DATASET",
            )
        dataset = read_dataset(s.dataset)
    when = pd.Timestamp(at) if at is not None else dataset.end
    return PersistentSimulatedAdapter(path, instances_from(dataset), tasks_at(dataset, when), dry_run=ctx.dry_run)


def fleet_cloud(path: Path, instances: Sequence[Instance]) -> SimulatedCloud:
    """The fleet service's own simulated cloud: persistent in ``path`` (new, with ``instances`` and no tasks,
    when the file is not there yet), acting for real (the client sides hold the dry-run)."""
    from adapters.persistent import PersistentSimulatedAdapter

    return PersistentSimulatedAdapter(path, instances, [], dry_run=False)


def simulated_fleet(instances: Sequence[Instance], tasks: Sequence[Task]) -> SimulatedCloud:
    """An in-memory simulated cloud that acts (no dry run), for replay: its driver fails, repairs and loads
    instances while the cycle acts on it."""
    from adapters.simulated import SimulatedAdapter

    return SimulatedAdapter(instances, tasks, dry_run=False)


def approve_and_run(plan_id: str, *, dry_run: bool, now: datetime | None = None) -> Plan:
    """Approve a RECOMMENDED plan and run it through the configured cloud, or refuse with one line and leave it
    as it was (too old, over a guardrail as they stand now, or its instances claimed): see forewarn.approval."""
    from forewarn import approval

    ctx = context(dry_run=dry_run)
    return approval.approve_and_run(ctx, cloud(ctx), plan_id, now=now or utcnow())


def sources(ctx: Context, *, at: datetime | None = None) -> list[tuple[Source, int, float]]:
    """The ingest flow's sources of ``FOREWARN_SOURCES``, each with its retries and backoff (seconds).

    ``cloud`` is the configured cloud's failure events (``adapters.failures``), built with the cloud adapter
    at ``at``; ``cloudwatch`` gets a boto3 client for its region and endpoint.
    """
    from forewarn.sources.build import build
    from forewarn.sources.specs import CloudSpec, CloudWatchSpec, load_specs

    built: list[tuple[Source, int, float]] = []
    for spec in load_specs(ctx.settings.sources):
        if isinstance(spec, CloudSpec):
            from adapters.failures import failure_source

            source: Source = failure_source(cloud(ctx, at=at), ctx.repo)
            if spec.name:
                source.name = spec.name
        elif isinstance(spec, CloudWatchSpec):
            source = _cloudwatch(spec)
        else:
            source = build(spec)
        built.append((source, spec.retries, spec.backoff))
    return built


def _cloudwatch(spec: CloudWatchSpec) -> Source:
    import boto3

    from adapters.cloudwatch import CloudWatchPull, MetricSpec
    from forewarn.ingest import parse_duration, step_minutes_of

    client = boto3.session.Session(region_name=spec.region).client("cloudwatch", endpoint_url=spec.endpoint or None)
    metrics = {k: MetricSpec(**m.model_dump()) for k, m in spec.metrics.items()} if spec.metrics else None
    return CloudWatchPull(
        client,
        name=spec.source_name,
        metrics=metrics,
        instances=spec.instances,
        namespace=spec.namespace,
        step_minutes=step_minutes_of(spec.step),
        lookback=parse_duration(spec.lookback, field="lookback"),
        overlap=parse_duration(spec.overlap, field="overlap"),
        max_window=parse_duration(spec.max_window, field="max_window"),
    )


def dump_fleet_state(adapter: SimulatedCloud) -> dict[str, Any]:
    """A simulated cloud's fleet state as JSON data (what the persistent simulated cloud writes)."""
    from adapters.persistent import dump_state

    return dump_state(adapter.state)  # type: ignore[attr-defined]
