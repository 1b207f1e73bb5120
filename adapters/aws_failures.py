"""Failures of the AWS cloud, from what EC2 and Auto Scaling say about the managed groups.

Read at every pull (all read-only calls):
    status checks: ``DescribeInstanceStatus`` of the running members; an ``impaired`` system or instance status
        is a failure of type ``status-check`` (cause ``system status impaired``, with the failed check names),
        dated by the check's ``ImpairedSince``.
    state changes: an instance of a group (a member, or one still tagged ``aws:autoscaling:groupName`` with it)
        whose EC2 state is stopping, stopped, shutting-down or terminated is a ``state-change``, its cause EC2's
        ``StateReason`` message, dated by the time in ``StateTransitionReason``; unless it was terminated on
        request: Forewarn's own scale-in, replace and restore go through ``TerminateInstanceInAutoScalingGroup``,
        which puts the instance in a ``Terminating`` lifecycle and records an activity "in response to a user
        request" (moto detaches it and drops the group tag instead), and such instances are left out.
    health: a member Auto Scaling marks ``Unhealthy`` (its health check, or ``SetInstanceHealth``) is a
        ``health-check`` failure.
    activities: ``DescribeScalingActivities`` of each group back to a day before the pull's ``since``; a
        termination whose cause mentions unhealthy or a health check is an ``asg-replacement``, dated by the
        activity's start, its cause the activity's reason.
An instance is healthy when it is running, Healthy, InService or Standby and no status check is impaired.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from adapters.aws_calls import pages
from adapters.aws_view import RUNNING_STATES, Member
from adapters.cloud_failures import LOOKBACK, Failure, Observed

DOWN_STATES = frozenset({"stopping", "stopped", "shutting-down", "terminated"})
REPLACED = re.compile(r"unhealthy|health[- ]check", re.IGNORECASE)
TERMINATING = re.compile(r"Terminating EC2 instance:\s*(i-[0-9a-zA-Z]+)")
REASON_TIME = re.compile(r"\((\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) (?:GMT|UTC)\)")
STATUS_BATCH = 100


class AwsFailures:
    """The failure detector of an :class:`adapters.aws.AwsAdapter` (its clients and groups)."""

    def __init__(self, adapter: Any) -> None:
        self.ec2, self.autoscaling, self.view = adapter.ec2, adapter.autoscaling, adapter.view

    def observe(self, since: datetime | None, until: datetime) -> Observed:
        members = self.view.members()
        seen = Observed(present=set(members))
        for member in members.values():
            failure = self._member_failure(member, until)
            if failure is not None:
                seen.failures.append(failure)
        running = sorted(i for i, m in members.items() if m.ec2.get("State", {}).get("Name") in RUNNING_STATES)
        impaired = list(self._impaired(running, until))
        seen.failures += impaired
        replaced, deliberate = self._activities(since, until)
        seen.failures += replaced
        seen.failures += self._departed(set(members) | deliberate, until)
        bad = {f.instance_id for f in seen.failures} | {f.instance_id for f in impaired}
        for iid in running:
            member = members[iid]
            if iid not in bad and member.health == "Healthy" and not member.lifecycle.startswith("Terminating"):
                seen.healthy[iid] = _aware(member.ec2.get("LaunchTime"))  # EC2 moves it on every start
        return seen

    def _member_failure(self, member: Member, until: datetime) -> Failure | None:
        state = str(member.ec2.get("State", {}).get("Name", ""))
        if state in DOWN_STATES and not member.lifecycle.startswith("Terminating"):
            return state_failure(member.ec2, until)
        if state in RUNNING_STATES and member.health != "Healthy":
            cause = f"Auto Scaling health status {member.health}"
            return Failure(member.instance_id, until, "health-check", cause)
        return None

    def _impaired(self, instance_ids: list[str], until: datetime) -> Iterator[Failure]:
        for start in range(0, len(instance_ids), STATUS_BATCH):
            batch = instance_ids[start : start + STATUS_BATCH]
            for status in pages(self.ec2, "describe_instance_status", "InstanceStatuses", InstanceIds=batch):
                failure = status_failure(status, until)
                if failure is not None:
                    yield failure

    def _activities(self, since: datetime | None, until: datetime) -> tuple[list[Failure], set[str]]:
        """Replacements of unhealthy instances, and the instances terminated on request (scale-in, Forewarn)."""
        after = since - LOOKBACK if since is not None else None
        found, deliberate = [], set()
        for group in self.view.groups:
            params = {"AutoScalingGroupName": group}
            for activity in pages(self.autoscaling, "describe_scaling_activities", "Activities", **params):
                started = _aware(activity.get("StartTime")) or until
                if after is not None and started < after:
                    break  # newest first: the rest is older
                failure = activity_failure(activity, started)
                if failure is not None:
                    found.append(failure)
                terminated = TERMINATING.search(str(activity.get("Description", "")))
                if terminated and "user request" in str(activity.get("Cause", "")):
                    deliberate.add(terminated.group(1))
        return found, deliberate

    def _departed(self, known: set[str], until: datetime) -> list[Failure]:
        """Instances of the groups stopped or terminated outside Auto Scaling, which has already dropped them."""
        filters = [
            {"Name": "tag:aws:autoscaling:groupName", "Values": list(self.view.groups)},
            {"Name": "instance-state-name", "Values": sorted(DOWN_STATES)},
        ]
        found = []
        for reservation in pages(self.ec2, "describe_instances", "Reservations", Filters=filters):
            for description in reservation.get("Instances", []):
                if description["InstanceId"] not in known:
                    found.append(state_failure(description, until))
        return found


def status_failure(status: dict[str, Any], until: datetime) -> Failure | None:
    """The failure an ``InstanceStatuses`` entry reports, if a system or instance check is impaired."""
    for key, kind in (("SystemStatus", "system"), ("InstanceStatus", "instance")):
        summary = status.get(key, {}) or {}
        if summary.get("Status") != "impaired":
            continue
        details = [d for d in summary.get("Details", []) if d.get("Status") == "failed"]
        names = ", ".join(str(d.get("Name")) for d in details)
        since = [t for t in (_aware(d.get("ImpairedSince")) for d in details) if t is not None]
        cause = f"{kind} status impaired" + (f" ({names} failed)" if names else "")
        return Failure(str(status["InstanceId"]), min(since) if since else until, "status-check", cause)
    return None


def state_failure(description: dict[str, Any], until: datetime) -> Failure:
    """A stopped or terminated instance as a ``state-change``: EC2's reason, dated by its transition."""
    reason = description.get("StateReason", {}) or {}
    state = description.get("State", {}).get("Name", "")
    cause = str(reason.get("Message") or reason.get("Code") or f"instance {state}")
    return Failure(str(description["InstanceId"]), _reason_time(description) or until, "state-change", cause)


def activity_failure(activity: dict[str, Any], started: datetime) -> Failure | None:
    """The failure a scaling activity reports: the termination of an instance found unhealthy."""
    found = TERMINATING.search(str(activity.get("Description", "")))
    cause = str(activity.get("Cause", ""))
    if found is None or not REPLACED.search(cause):
        return None
    reason = cause.split("in response to", 1)[-1].strip(" .") if "in response to" in cause else cause
    return Failure(found.group(1), started, "asg-replacement", reason)


def _reason_time(description: dict[str, Any]) -> datetime | None:
    found = REASON_TIME.search(str(description.get("StateTransitionReason", "")))
    return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC) if found else None


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
