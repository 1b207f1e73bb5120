"""The read side of the AWS adapter: the managed Auto Scaling groups and their EC2 instances, as Forewarn sees them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from adapters.aws_calls import call, pages
from adapters.aws_tags import CORDONED, FACTOR, PREFIX, RESERVED, tags_of, tasks_from, unit_float
from adapters.fleet import FleetState
from forewarn.errors import AdapterError
from forewarn.schemas import Instance, InstanceState, Task, utcnow

RUNNING_STATES = frozenset({"pending", "running"})
FAILED_LIFECYCLE = frozenset({"Terminating", "Terminating:Wait", "Terminating:Proceed", "Terminated", "Detaching"})


@dataclass
class Member:
    """One instance of a managed group: its EC2 and Auto Scaling descriptions, and its tags."""

    instance_id: str
    group: str
    lifecycle: str
    health: str
    protected: bool
    ec2: dict[str, Any]
    tags: dict[str, str]

    @property
    def failed(self) -> bool:
        state = self.ec2.get("State", {}).get("Name", "unknown")
        return state not in RUNNING_STATES or self.health != "Healthy" or self.lifecycle in FAILED_LIFECYCLE

    @property
    def cordoned(self) -> bool:
        return CORDONED in self.tags or self.lifecycle.startswith("Standby")


class FleetView:
    """Reads the groups named at construction; every read goes to AWS (nothing is cached but instance types)."""

    def __init__(self, ec2: Any, autoscaling: Any, groups: Sequence[str]) -> None:
        if not groups:
            raise AdapterError("the AWS adapter needs at least one Auto Scaling group name")
        self.ec2, self.autoscaling, self.groups = ec2, autoscaling, list(groups)
        self._types: dict[str, tuple[float, float]] = {}

    def group(self, name: str) -> dict[str, Any] | None:
        found = call(self.autoscaling, "describe_auto_scaling_groups", AutoScalingGroupNames=[name])
        return found["AutoScalingGroups"][0] if found.get("AutoScalingGroups") else None

    def members(self) -> dict[str, Member]:
        groups = list(
            pages(
                self.autoscaling, "describe_auto_scaling_groups", "AutoScalingGroups", AutoScalingGroupNames=self.groups
            )
        )
        asg = {i["InstanceId"]: (g["AutoScalingGroupName"], i) for g in groups for i in g.get("Instances", [])}
        if not asg:
            return {}
        described = {
            inst["InstanceId"]: inst
            for reservation in pages(self.ec2, "describe_instances", "Reservations", InstanceIds=sorted(asg))
            for inst in reservation.get("Instances", [])
        }
        return {
            iid: Member(
                iid,
                group,
                str(info.get("LifecycleState", "")),
                str(info.get("HealthStatus", "Healthy")),
                bool(info.get("ProtectedFromScaleIn", False)),
                described[iid],
                tags_of(described[iid]),
            )
            for iid, (group, info) in asg.items()
            if iid in described
        }

    def capacity(self, instance_type: str) -> tuple[float, float]:
        """vCPUs and memory (GiB) of an instance type."""
        if instance_type not in self._types:
            found = call(self.ec2, "describe_instance_types", InstanceTypes=[instance_type])["InstanceTypes"]
            if not found:
                raise AdapterError(f"describe_instance_types: unknown instance type {instance_type!r}")
            info = found[0]
            self._types[instance_type] = (
                float(info["VCpuInfo"]["DefaultVCpus"]),
                float(info["MemoryInfo"]["SizeInMiB"]) / 1024.0,
            )
        return self._types[instance_type]

    def instance(self, member: Member) -> Instance:
        cpu, memory = self.capacity(str(member.ec2.get("InstanceType", "")))
        factor = unit_float(member.tags, FACTOR, 1.0)
        factor = factor if factor > 0 else 1.0
        reserved = unit_float(member.tags, RESERVED, 0.0)
        reserved = reserved if 0.0 <= reserved < 1.0 else 0.0
        state = InstanceState.RUNNING
        if member.ec2.get("State", {}).get("Name") in {"terminated", "shutting-down"}:
            state = InstanceState.TERMINATED
        elif member.failed:
            state = InstanceState.FAILED
        elif member.cordoned:
            state = InstanceState.CORDONED
        return Instance(
            instance_id=member.instance_id,
            cpu_capacity=cpu * factor,
            memory_capacity=memory * factor,
            group=member.group,
            zone=str(member.ec2.get("Placement", {}).get("AvailabilityZone", "unknown")),
            tags={k: v for k, v in member.tags.items() if not k.startswith(PREFIX)},
            state=state,
            boot_time=member.ec2.get("LaunchTime"),
            capacity_factor=factor,
            reserved=reserved,
        )

    def tasks(self, members: dict[str, Member]) -> tuple[dict[str, Task], dict[str, str]]:
        return tasks_from({iid: m.tags for iid, m in members.items()})

    def fleet(self, members: dict[str, Member]) -> FleetState:
        """The fleet as :class:`FleetState`, so AWS moves follow the same rules as the simulated cloud."""
        tasks, left = self.tasks(members)
        now = utcnow()
        return FleetState(
            instances={iid: self.instance(m) for iid, m in members.items()},
            tasks=tasks,
            cordoned={iid for iid, m in members.items() if m.cordoned},
            reserved={iid: unit_float(m.tags, RESERVED, 0.0) for iid, m in members.items() if RESERVED in m.tags},
            failed={iid: now for iid, m in members.items() if m.failed},
            left=left,
        )
