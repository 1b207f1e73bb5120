"""The composition root: the one module of ``forewarn/`` that picks a cloud adapter from ``adapters/``.

``FOREWARN_CLOUD`` names it: ``simulated`` (default) is a simulated cloud whose fleet, idempotency keys and
snapshots persist under ``FOREWARN_HOME/cloud/`` (seeded once from a dataset's instances and workloads),
so what one cycle does is still in force in the next; ``aws`` and ``openstack`` are the real ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd

from forewarn.cloud import CloudAdapter, SimulatedCloud
from forewarn.dataset import Dataset, read_dataset
from forewarn.errors import ConfigError
from forewarn.execution.applier import Applier
from forewarn.schemas import Instance, Plan, Task
from forewarn.service import Context, context, instances_from, tasks_at

SIMULATED_STATE = Path("cloud") / "simulated-fleet.json"


def simulated_state_path(ctx: Context) -> Path:
    return ctx.settings.home / SIMULATED_STATE


def cloud(ctx: Context, dataset: Dataset | None = None, *, at: datetime | None = None) -> CloudAdapter:
    """The cloud adapter of the settings.

    The simulated cloud is read from its state file; the first time, it is seeded from ``dataset`` (or
    ``FOREWARN_DATASET``): its instances, and the tasks running at ``at``.
    """
    s = ctx.settings
    if s.cloud == "aws":
        from adapters.aws import AwsAdapter

        groups = [g.strip() for g in s.aws_groups.split(",") if g.strip()]
        if not groups:
            raise ConfigError("name the Auto Scaling groups to manage", field="FOREWARN_AWS_GROUPS")
        return AwsAdapter(
            groups, endpoint_url=s.aws_endpoint_url or None, dry_run=ctx.dry_run, state_dir=s.home / "aws"
        )
    if s.cloud == "openstack":
        from adapters.openstack import OpenStackAdapter

        return OpenStackAdapter(cloud=s.openstack_cloud or None, dry_run=ctx.dry_run, state_dir=s.home / "openstack")
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


def simulated_fleet(instances: Sequence[Instance], tasks: Sequence[Task]) -> SimulatedCloud:
    """An in-memory simulated cloud that acts (no dry run), for replay: its driver fails, repairs and loads
    instances while the cycle acts on it."""
    from adapters.simulated import SimulatedAdapter

    return SimulatedAdapter(instances, tasks, dry_run=False)


def approve_and_run(plan_id: str, *, dry_run: bool) -> Plan:
    """Approve a RECOMMENDED plan and run it through the configured cloud."""
    ctx = context(dry_run=dry_run)
    ctx.journal.approve(plan_id)
    plan = ctx.journal.get(plan_id)
    return Applier(cloud(ctx), ctx.journal, dry_run=dry_run).run(plan)
