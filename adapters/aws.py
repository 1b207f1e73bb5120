"""The AWS cloud: EC2 instances in Auto Scaling groups, through boto3.

Mapping of the CloudAdapter calls:
    cordon: enter Standby (desired capacity decremented, so no replacement is launched), protect from scale-in,
        tag ``forewarn:cordoned``; uncordon undoes all three (leaving Standby increments desired capacity again,
        so a cordon and its release leave the group's size as it was). A group already at its MinSize cannot
        decrement: its instance stays InService, cordoned by the tag and the protection only. An instance
        removed while in Standby no longer counts in desired capacity, so removing it decrements nothing.
    migrate: moves task records (EC2 tags, see :mod:`adapters.aws_tags`) under the simulated cloud's rules.
    replace: the full migration of one instance: launch a replacement from the group's launch template
        (``ClientToken`` + a ``forewarn:key`` tag), attach it, move every task, drain, terminate.
    scale: a group's desired capacity (scale-in terminates empty instances only); an instance's soft capacity.
    snapshot, restore: see :mod:`adapters.aws_snapshots` (launch-template versions, optional AMIs).

Credentials come only from boto3's standard chain (environment, profiles, instance role) or an injected
session; nothing here logs them. Dry-run is the default.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pandas as pd
from botocore.config import Config

from adapters.aws_calls import KeyLedger, call
from adapters.aws_tags import CORDONED, FACTOR, RESERVED, record_changes, unit_float
from adapters.aws_view import FleetView, Member
from adapters.cloudwatch import CloudWatchSource
from adapters.fleet import FleetState
from forewarn.capacity import fits
from forewarn.errors import AdapterError, NotFoundError
from forewarn.schemas import Instance, Task

log = logging.getLogger(__name__)
T = TypeVar("T")
LAST_SCALE = "forewarn:last-scale"


class AwsAdapter:
    """Forewarn's CloudAdapter over the Auto Scaling groups ``groups``.

    Args:
        groups: names of the Auto Scaling groups Forewarn manages.
        session: a boto3 session (default: the standard credential chain and region).
        endpoint_url: another endpoint for every client (moto_server in tests, a VPC endpoint in production).
        dry_run: log mutating calls instead of sending them.
        state_dir: where the record of used keys and snapshots is kept; in memory when ``None``.
        telemetry_step_minutes: the period of CloudWatch reads in ``read_telemetry``.
        snapshot_images: also image every instance (an AMI, without reboot) when taking a snapshot.
    """

    name = "aws"

    def __init__(
        self,
        groups: Sequence[str],
        *,
        session: boto3.Session | None = None,
        endpoint_url: str | None = None,
        dry_run: bool = True,
        state_dir: Path | None = None,
        telemetry_step_minutes: int = 5,
        snapshot_images: bool = False,
    ) -> None:
        session = session or boto3.Session()
        config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=10, read_timeout=30)
        self.ec2: Any = session.client("ec2", endpoint_url=endpoint_url, config=config)
        self.autoscaling: Any = session.client("autoscaling", endpoint_url=endpoint_url, config=config)
        self.cloudwatch: Any = session.client("cloudwatch", endpoint_url=endpoint_url, config=config)
        self.dry_run = dry_run
        self.view = FleetView(self.ec2, self.autoscaling, groups)
        self.ledger = KeyLedger(state_dir / "aws-keys.json" if state_dir else None)
        self.state_dir = state_dir
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.snapshot_images = snapshot_images
        self.telemetry = CloudWatchSource(self.cloudwatch)
        self.telemetry_step_minutes = telemetry_step_minutes

    # -- reads ---------------------------------------------------------------------------------------------
    def list_instances(self) -> list[Instance]:
        return [self.view.instance(m) for m in self.view.members().values()]

    def list_tasks(self) -> list[Task]:
        tasks, _ = self.view.tasks(self.view.members())
        return list(tasks.values())

    def read_telemetry(self, instance_ids: Sequence[str], start: datetime, end: datetime) -> pd.DataFrame:
        return self.telemetry.read(start, end, step_minutes=self.telemetry_step_minutes, instance_ids=instance_ids)

    def health(self, instance_id: str) -> bool:
        member = self._member(instance_id)
        if member.failed:
            return False
        statuses = call(self.ec2, "describe_instance_status", InstanceIds=[instance_id]).get("InstanceStatuses", [])
        bad = {"impaired", "insufficient-data"}
        return not any(s.get(k, {}).get("Status") in bad for s in statuses for k in ("InstanceStatus", "SystemStatus"))

    # -- mutating calls ------------------------------------------------------------------------------------
    def cordon(self, instance_id: str, *, key: str) -> None:
        self._act("cordon", key, f"cordon {instance_id}", lambda: self._set_cordon(self._member(instance_id), True))

    def uncordon(self, instance_id: str, *, key: str) -> None:
        self._act(
            "uncordon", key, f"uncordon {instance_id}", lambda: self._set_cordon(self._member(instance_id), False)
        )

    def migrate(
        self,
        task_ids: Sequence[str],
        source: str,
        target: str,
        *,
        key: str,
        fractions: Sequence[float] | None = None,
    ) -> None:
        what = f"migrate {list(task_ids)} {source} -> {target}" + (f" in shares {list(fractions)}" if fractions else "")

        def effect() -> None:
            fleet = self.view.fleet(self.view.members())
            before = {tid: t.model_copy() for tid, t in fleet.tasks.items()}
            fleet.migrate(list(task_ids), source, target, fractions)
            self._write_tasks(before, fleet)

        self._act("migrate", key, what, effect)

    def scale(
        self,
        instance_id_or_group: str,
        *,
        factor: float | None = None,
        delta: int | None = None,
        key: str,
    ) -> float | None:
        """A group's desired capacity, or an instance's soft capacity; returns the instance's previous factor."""
        if (factor is None) == (delta is None):
            raise AdapterError("scale: give exactly one of factor and delta")
        if factor is not None and factor <= 0:
            raise AdapterError(f"scale: factor must be positive, got {factor}")
        what = f"scale {instance_id_or_group} (factor {factor}, delta {delta})"
        return self._act("scale", key, what, lambda: self._scale(instance_id_or_group, factor, delta, key))

    def reserve(self, instance_id: str, fraction: float, *, key: str) -> None:
        def effect() -> None:
            members = self.view.members()
            self.view.fleet(members).reserve(instance_id, fraction)  # checks, raises before any change
            self._tag(
                instance_id, {RESERVED: f"{fraction:.6g}"} if fraction > 0 else {}, [] if fraction > 0 else [RESERVED]
            )

        self._act("reserve", key, f"reserve {fraction:.0%} of {instance_id}", effect)

    def snapshot(self, *, key: str) -> str:
        from adapters.aws_snapshots import take_snapshot

        result = self._act("snapshot", key, "snapshot the groups", lambda: take_snapshot(self, key))
        return result if result is not None else "snapshot-dry-run"

    def restore(self, snapshot_id: str, *, key: str) -> None:
        from adapters.aws_snapshots import restore_snapshot

        self._act("restore", key, f"restore {snapshot_id}", lambda: restore_snapshot(self, snapshot_id))

    def replace(self, instance_id: str, *, key: str) -> str | None:
        """Move all of an instance's work to a new instance of its group, then terminate it; the new id."""
        from adapters.aws_snapshots import replace_instance

        return self._act("replace", key, f"replace {instance_id}", lambda: replace_instance(self, instance_id, key))

    # -- internals -----------------------------------------------------------------------------------------
    def _act(self, method: str, key: str, what: str, effect: Callable[[], T]) -> T | None:
        return self.ledger.act(method, key, what, effect, dry_run=self.dry_run)

    def _member(self, instance_id: str, members: dict[str, Member] | None = None) -> Member:
        members = self.view.members() if members is None else members
        if instance_id not in members:
            raise NotFoundError(f"no instance {instance_id!r} in groups {', '.join(self.view.groups)}")
        return members[instance_id]

    def _tag(self, instance_id: str, put: dict[str, str], drop: Sequence[str] = ()) -> None:
        if put:
            tags = [{"Key": k, "Value": v} for k, v in put.items()]
            call(self.ec2, "create_tags", Resources=[instance_id], Tags=tags)
        if drop:
            call(self.ec2, "delete_tags", Resources=[instance_id], Tags=[{"Key": k} for k in drop])

    def _set_cordon(self, member: Member, cordoned: bool) -> None:
        group, ids = member.group, [member.instance_id]
        if cordoned and member.lifecycle == "InService" and self._can_decrement(group):
            call(
                self.autoscaling,
                "enter_standby",
                AutoScalingGroupName=group,
                InstanceIds=ids,
                ShouldDecrementDesiredCapacity=True,
            )
        elif not cordoned and member.lifecycle == "Standby":
            call(self.autoscaling, "exit_standby", AutoScalingGroupName=group, InstanceIds=ids)
        call(
            self.autoscaling,
            "set_instance_protection",
            AutoScalingGroupName=group,
            InstanceIds=ids,
            ProtectedFromScaleIn=cordoned,
        )
        self._tag(member.instance_id, {CORDONED: "true"} if cordoned else {}, [] if cordoned else [CORDONED])

    def _can_decrement(self, name: str) -> bool:
        """Whether the group's desired capacity may drop by one (AWS refuses to go below MinSize)."""
        group = self.view.group(name)
        return group is not None and int(group["DesiredCapacity"]) - 1 >= int(group.get("MinSize", 0))

    def _write_tasks(self, before: dict[str, Task], fleet: FleetState) -> None:
        """Write the task records that changed: new ones first, then the deletions (see aws_tags)."""
        put, drop = record_changes(before, fleet)
        for instance_id, tags in put.items():
            self._tag(instance_id, tags)
        for instance_id, keys in drop.items():
            self._tag(instance_id, {}, keys)

    def _scale(self, name: str, factor: float | None, delta: int | None, key: str) -> float | None:
        members = self.view.members()
        if name in members:
            if factor is None:
                raise AdapterError(f"scale: {name} is an instance; resize it with factor, not delta")
            return self._scale_instance(members, name, factor)
        group = self.view.group(name) if name in self.view.groups else None
        if group is None:
            raise NotFoundError(f"no instance or group {name!r} among groups {', '.join(self.view.groups)}")
        if any(t["Key"] == LAST_SCALE and t["Value"] == key for t in group.get("Tags", [])):
            return None  # this key already scaled the group (another process, or a lost reply)
        mine = [m for m in members.values() if m.group == name]
        change = delta if delta is not None else round(len(mine) * (factor or 1.0)) - len(mine)
        if change > 0:
            desired = int(group["DesiredCapacity"]) + change
            if desired > int(group["MaxSize"]):
                raise AdapterError(f"scale: {name} would need {desired} instances, above MaxSize {group['MaxSize']}")
            call(
                self.autoscaling,
                "set_desired_capacity",
                AutoScalingGroupName=name,
                DesiredCapacity=desired,
                HonorCooldown=False,
            )
        elif change < 0:
            self._remove_empty(mine, -change)
        call(
            self.autoscaling,
            "create_or_update_tags",
            Tags=[
                {
                    "ResourceId": name,
                    "ResourceType": "auto-scaling-group",
                    "Key": LAST_SCALE,
                    "Value": key,
                    "PropagateAtLaunch": False,
                }
            ],
        )
        return None

    def _scale_instance(self, members: dict[str, Member], name: str, factor: float) -> float:
        """Set the soft capacity; refuse a shrink below what the instance's tasks use. The previous factor."""
        before = unit_float(members[name].tags, FACTOR, 1.0)
        cpu, memory = self.view.capacity(str(members[name].ec2.get("InstanceType", "")))
        used_cpu, used_memory = self.view.fleet(members).used(name)
        if factor < before and not (fits(used_cpu, cpu * factor) and fits(used_memory, memory * factor)):
            raise AdapterError(
                f"scale: {name} at {factor:.0%} would hold cpu {cpu * factor:.3g} and memory "
                f"{memory * factor:.3g}, but its tasks use {used_cpu:.3g} and {used_memory:.3g}; "
                "move work off it first"
            )
        self._tag(name, {FACTOR: f"{factor:.6g}"} if factor != 1.0 else {}, [] if factor != 1.0 else [FACTOR])
        return before

    def _remove_empty(self, members: list[Member], count: int) -> None:
        busy = {t.instance_id for t in self.view.tasks({m.instance_id: m for m in members})[0].values()}
        idle = [m for m in members if m.instance_id not in busy]
        # In service before standby (a cordoned instance is held for its release), then newest first; launch
        # times tie at a second, so the lifecycle decides between a new instance and a cordoned one.
        idle.sort(key=lambda m: (m.lifecycle == "InService", str(m.ec2.get("LaunchTime", ""))), reverse=True)
        if len(idle) < count:
            raise AdapterError(f"scale: cannot remove {count} instances, only {len(idle)} are empty")
        for member in idle[:count]:
            call(
                self.autoscaling,
                "terminate_instance_in_auto_scaling_group",
                InstanceId=member.instance_id,
                ShouldDecrementDesiredCapacity=member.lifecycle == "InService",
            )  # Standby counts already out
