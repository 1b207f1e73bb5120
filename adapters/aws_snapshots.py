"""Snapshot, restore and replace for the AWS adapter.

A snapshot pins each group's launch template in a new version (``ClientToken`` from the key, so a retry makes
no second version), optionally images every instance (an AMI tagged ``forewarn:snapshot``), and records the
groups' sizes and every instance's Forewarn tags (task placement, cordons, buffers, soft capacity) in
``state_dir/snapshots/<id>.json`` (in memory without a state directory). Its id derives from the key.

Restore puts the launch-template version back on each group, rewrites the Forewarn tags (new records first,
then deletions, so no task is ever unrecorded), sets cordons as they were, terminates the instances added since
that hold no task, and brings desired capacity back up where instances were lost. It refuses, changing
nothing, when it would put tasks back on an instance that has failed or gone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import WaiterError

from adapters.aws_calls import call, client_token, pages
from adapters.aws_tags import CORDONED, KEY, PREFIX, SNAPSHOT, TASK
from adapters.aws_view import FleetView, Member
from adapters.fleet import FleetState
from forewarn.errors import AdapterError, NotFoundError, TransientAdapterError
from forewarn.schemas import Task


class AwsAdapter(Protocol):
    """What these functions use of :class:`adapters.aws.AwsAdapter` (a protocol, so that the adapter can
    import this module without this module importing the adapter)."""

    ec2: Any
    autoscaling: Any
    view: FleetView
    state_dir: Path | None
    snapshots: dict[str, dict[str, Any]]
    snapshot_images: bool

    def _member(self, instance_id: str, members: dict[str, Member] | None = None) -> Member: ...

    def _tag(self, instance_id: str, put: dict[str, str], drop: Sequence[str] = ()) -> None: ...

    def _set_cordon(self, member: Member, cordoned: bool) -> None: ...

    def _write_tasks(self, before: dict[str, Task], fleet: FleetState) -> None: ...


def _save(adapter: AwsAdapter, record: dict[str, Any]) -> None:
    if adapter.state_dir is None:
        adapter.snapshots[record["id"]] = record
        return
    path = adapter.state_dir / "snapshots" / f"{record['id']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, default=str))


def _load(adapter: AwsAdapter, snapshot_id: str) -> dict[str, Any]:
    if adapter.state_dir is None:
        record = adapter.snapshots.get(snapshot_id)
    else:
        path = adapter.state_dir / "snapshots" / f"{snapshot_id}.json"
        record = json.loads(path.read_text()) if path.is_file() else None
    if record is None:
        raise NotFoundError(f"no snapshot {snapshot_id!r}")
    return record


def _own_tags(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if k.startswith(PREFIX) and k not in (KEY, SNAPSHOT)}


def take_snapshot(adapter: AwsAdapter, key: str) -> str:
    snapshot_id = "fw-snap-" + hashlib.sha256(key.encode()).hexdigest()[:12]
    groups: dict[str, Any] = {}
    for group in pages(
        adapter.autoscaling,
        "describe_auto_scaling_groups",
        "AutoScalingGroups",
        AutoScalingGroupNames=adapter.view.groups,
    ):
        name, template = group["AutoScalingGroupName"], group.get("LaunchTemplate")
        pinned = None
        if template:
            ref = {"LaunchTemplateId": template["LaunchTemplateId"]}
            versions = call(
                adapter.ec2,
                "describe_launch_template_versions",
                **ref,
                Versions=[str(template.get("Version", "$Default"))],
            )["LaunchTemplateVersions"]
            made = call(
                adapter.ec2,
                "create_launch_template_version",
                **ref,
                LaunchTemplateData=versions[0]["LaunchTemplateData"],
                VersionDescription=f"forewarn {snapshot_id}",
                ClientToken=client_token(key, f"lt:{name}"),
            )["LaunchTemplateVersion"]
            pinned = {"LaunchTemplateId": template["LaunchTemplateId"], "Version": str(made["VersionNumber"])}
        groups[name] = {"desired": group["DesiredCapacity"], "template": pinned}
    members = adapter.view.members()
    if adapter.snapshot_images:
        for member in members.values():
            _image(adapter, member.instance_id, snapshot_id)
    _save(
        adapter,
        {"id": snapshot_id, "groups": groups, "instances": {iid: _own_tags(m.tags) for iid, m in members.items()}},
    )
    return snapshot_id


def _image(adapter: AwsAdapter, instance_id: str, snapshot_id: str) -> None:
    name = f"forewarn-{snapshot_id}-{instance_id}"
    if call(adapter.ec2, "describe_images", Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])["Images"]:
        return
    call(
        adapter.ec2,
        "create_image",
        InstanceId=instance_id,
        Name=name,
        NoReboot=True,
        TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": SNAPSHOT, "Value": snapshot_id}]}],
    )


def restore_snapshot(adapter: AwsAdapter, snapshot_id: str) -> None:
    record = _load(adapter, snapshot_id)
    members = adapter.view.members()
    saved: dict[str, dict[str, str]] = record["instances"]
    lost = sorted(
        iid
        for iid, tags in saved.items()
        if any(k.startswith(TASK) for k in tags) and (iid not in members or members[iid].failed)
    )
    if lost:
        raise AdapterError(f"restore: it would put tasks back on failed or gone {', '.join(lost)}")
    for name, group in record["groups"].items():
        if group["template"]:
            call(
                adapter.autoscaling,
                "update_auto_scaling_group",
                AutoScalingGroupName=name,
                LaunchTemplate=group["template"],
            )
    wanted = {iid: saved.get(iid, {}) for iid in members}
    for iid, tags in wanted.items():
        current = _own_tags(members[iid].tags)
        adapter._tag(iid, {k: v for k, v in tags.items() if current.get(k) != v})
    for iid, tags in wanted.items():
        adapter._tag(iid, {}, [k for k in _own_tags(members[iid].tags) if k not in tags])
        if members[iid].cordoned != (CORDONED in tags):
            adapter._set_cordon(members[iid], CORDONED in tags)
    added = [m for iid, m in members.items() if iid not in saved]
    for member in added:
        call(
            adapter.autoscaling,
            "terminate_instance_in_auto_scaling_group",
            InstanceId=member.instance_id,
            ShouldDecrementDesiredCapacity=member.lifecycle == "InService",
        )
    for name, group in record["groups"].items():
        now = adapter.view.group(name)
        if now is not None and int(now["DesiredCapacity"]) < int(group["desired"]):
            call(
                adapter.autoscaling,
                "set_desired_capacity",
                AutoScalingGroupName=name,
                DesiredCapacity=int(group["desired"]),
                HonorCooldown=False,
            )


def replace_instance(adapter: AwsAdapter, instance_id: str, key: str) -> str:
    member = adapter._member(instance_id)
    group = adapter.view.group(member.group) or {}
    template = group.get("LaunchTemplate")
    if not template:
        raise AdapterError(f"replace: group {member.group} has no launch template to launch a replacement from")
    found = [
        i["InstanceId"]
        for r in pages(
            adapter.ec2,
            "describe_instances",
            "Reservations",
            Filters=[
                {"Name": f"tag:{KEY}", "Values": [key]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ],
        )
        for i in r["Instances"]
    ]
    if found:
        new_id = found[0]
    else:
        subnets = [s for s in str(group.get("VPCZoneIdentifier") or "").split(",") if s]
        launched = call(
            adapter.ec2,
            "run_instances",
            MinCount=1,
            MaxCount=1,
            ClientToken=client_token(key, "run"),
            LaunchTemplate={
                "LaunchTemplateId": template["LaunchTemplateId"],
                "Version": str(template.get("Version", "$Default")),
            },
            **({"SubnetId": subnets[0]} if subnets else {}),
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": KEY, "Value": key}]}],
        )
        new_id = launched["Instances"][0]["InstanceId"]
    try:
        adapter.ec2.get_waiter("instance_running").wait(
            InstanceIds=[new_id], WaiterConfig={"Delay": 2, "MaxAttempts": 90}
        )
    except WaiterError as error:
        raise TransientAdapterError(f"replace: {new_id} did not reach running: {error.last_response}") from None
    if new_id not in adapter.view.members():
        call(adapter.autoscaling, "attach_instances", AutoScalingGroupName=member.group, InstanceIds=[new_id])
    members = adapter.view.members()
    fleet = adapter.view.fleet(members)
    before = {tid: t.model_copy() for tid, t in fleet.tasks.items()}
    moving = [tid for tid, t in fleet.tasks.items() if t.instance_id == instance_id]
    if moving:
        fleet.migrate(moving, instance_id, new_id, None)
        adapter._write_tasks(before, fleet)
    source = members[instance_id]
    call(
        adapter.autoscaling,
        "terminate_instance_in_auto_scaling_group",
        InstanceId=instance_id,
        ShouldDecrementDesiredCapacity=source.lifecycle == "InService",
    )
    return new_id
