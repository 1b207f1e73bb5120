"""Failures of the AWS cloud against a real moto_server over HTTP, and AWS's own answers moto cannot give.

moto 5.2 (requirements.lock) reports every running instance's status checks as ``ok`` and has no call to impair
them, and its ``DescribeScalingActivities`` always answers an empty list (it neither health-checks instances nor
replaces them). Those two readers are therefore shown with botocore's Stubber serving responses in AWS's
documented shape, beside moto's real groups; stopped, terminated and Unhealthy members come from moto itself.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pandas as pd
import pytest
from botocore.stub import Stubber

from adapters.aws_failures import AwsFailures, activity_failure, status_failure
from adapters.failures import CloudFailureSource, failure_source
from forewarn.model.labels import label_column, make_labels
from forewarn.schemas import utcnow
from forewarn.store.repository import Repository
from forewarn.telemetry.sources import Pulled
from tests.aws_support import REGION, adapter, endpoint, make_group, moto_endpoint, session

__all__ = ["endpoint", "moto_endpoint"]  # fixtures
pytestmark = pytest.mark.integration


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    repository = Repository(f"sqlite:///{tmp_path / 'history.db'}")
    repository.create_all()
    return repository


def commit(repo: Repository, pulled: Pulled) -> None:
    if pulled.failures is not None:
        repo.save_failures(pulled.failures)
    if pulled.recoveries is not None:
        repo.record_recoveries(pulled.recoveries)


def later(minutes: float = 1.0) -> datetime:
    return utcnow() + timedelta(minutes=minutes)


def rows(pulled: Pulled) -> list[tuple[str, str, str]]:
    assert pulled.failures is not None
    return [(r.instance_id, r.type, r.root_cause) for r in pulled.failures.itertuples()]


def test_a_stopped_instance_is_a_state_change_and_recovers_when_running(endpoint: str, repo: Repository) -> None:
    ids = make_group(endpoint)
    source = failure_source(adapter(endpoint), repo)
    quiet = source.pull(None, later())
    assert rows(quiet) == []
    ec2 = session().client("ec2", endpoint_url=endpoint)
    ec2.stop_instances(InstanceIds=[ids[0]])
    first = source.pull(None, later())
    assert rows(first) == [(ids[0], "state-change", "Client.UserInitiatedShutdown: User initiated shutdown")]
    assert first.failures is not None and math.isnan(first.failures["recovery_minutes"].iloc[0])
    stopped_at = first.failures["timestamp"].iloc[0]
    assert abs(stopped_at - pd.Timestamp(utcnow())) < pd.Timedelta(minutes=2)  # from StateTransitionReason
    commit(repo, first)
    assert rows(source.pull(None, later())) == []  # still stopped: the same failure, not a new one

    ec2.start_instances(InstanceIds=[ids[0]])
    back = source.pull(None, later(5))
    assert back.recoveries is not None and back.recoveries["instance_id"].tolist() == [ids[0]]
    commit(repo, back)
    stored = repo.load_failures()
    assert stored["type"].tolist() == ["state-change"]
    assert 4.0 <= stored["recovery_minutes"].iloc[0] <= 6.0  # seen running by the pull at +5 min (moto keeps
    # LaunchTime on start; AWS moves it, and then it is the time of recovery)
    assert rows(source.pull(None, later(6))) == []


def test_terminated_and_unhealthy_members_fail_but_forewarn_own_terminations_do_not(
    endpoint: str, repo: Repository
) -> None:
    make_group(endpoint, size=4)
    cloud = adapter(endpoint)
    source = failure_source(cloud, repo)
    cloud.scale("web", delta=-1, key="scale-in")  # Forewarn's own scale-in terminates an empty instance
    members = sorted(i.instance_id for i in cloud.list_instances())
    new_id = cloud.replace(members[2], key="replace")  # and its own replacement terminates the old one
    assert new_id is not None
    ids = sorted(i.instance_id for i in cloud.list_instances() if i.instance_id != new_id)
    session().client("ec2", endpoint_url=endpoint).terminate_instances(InstanceIds=[ids[0]])
    autoscaling = session().client("autoscaling", endpoint_url=endpoint)
    autoscaling.set_instance_health(InstanceId=ids[1], HealthStatus="Unhealthy")
    pulled = source.pull(None, later())
    found = {iid: (kind, cause) for iid, kind, cause in rows(pulled)}
    assert found == {
        ids[0]: ("state-change", "Client.UserInitiatedShutdown: User initiated shutdown"),
        ids[1]: ("health-check", "Auto Scaling health status Unhealthy"),
    }


def stubbed(service: str) -> tuple[object, Stubber]:
    client = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name=REGION).client(service)
    return client, Stubber(client)


def test_an_impaired_status_check_and_an_asg_replacement_as_aws_reports_them(endpoint: str, repo: Repository) -> None:
    ids = make_group(endpoint, size=2)
    detector = AwsFailures(adapter(endpoint))
    impaired_since = datetime(2025, 3, 1, 11, 58, tzinfo=UTC)
    ec2, ec2_stub = stubbed("ec2")
    ec2_stub.add_response(
        "describe_instance_status",
        {
            "InstanceStatuses": [
                {
                    "InstanceId": ids[0],
                    "InstanceState": {"Code": 16, "Name": "running"},
                    "SystemStatus": {
                        "Status": "impaired",
                        "Details": [{"Name": "reachability", "Status": "failed", "ImpairedSince": impaired_since}],
                    },
                    "InstanceStatus": {"Status": "ok", "Details": [{"Name": "reachability", "Status": "passed"}]},
                },
                {
                    "InstanceId": ids[1],
                    "InstanceState": {"Code": 16, "Name": "running"},
                    "SystemStatus": {"Status": "ok"},
                    "InstanceStatus": {"Status": "ok"},
                },
            ]
        },
        {"InstanceIds": sorted(ids)},
    )
    ec2_stub.add_response("describe_instances", {"Reservations": []})  # none departed
    autoscaling, asg_stub = stubbed("autoscaling")
    replaced_at = datetime(2025, 3, 1, 12, 5, tzinfo=UTC)
    asg_stub.add_response(
        "describe_scaling_activities",
        {
            "Activities": [
                {
                    "ActivityId": "a2",
                    "AutoScalingGroupName": "web",
                    "Description": "Launching a new EC2 instance: i-0new",
                    "Cause": "At 2025-03-01T12:05:40Z an instance was started in response to a difference ...",
                    "StartTime": replaced_at,
                    "StatusCode": "Successful",
                },
                {
                    "ActivityId": "a1",
                    "AutoScalingGroupName": "web",
                    "Description": "Terminating EC2 instance: i-0gone",
                    "Cause": "At 2025-03-01T12:05:10Z an instance was taken out of service in response to an EC2 "
                    "health check indicating it has been terminated or stopped.",
                    "StartTime": replaced_at,
                    "StatusCode": "Successful",
                },
                {
                    "ActivityId": "a0",
                    "AutoScalingGroupName": "web",
                    "Description": "Terminating EC2 instance: i-0old",
                    "Cause": "At 2025-02-01T10:00:00Z an instance was taken out of service in response to an EC2 "
                    "health check indicating it has been terminated or stopped.",
                    "StartTime": datetime(2025, 2, 1, 10, tzinfo=UTC),
                    "StatusCode": "Successful",
                },
            ]
        },
        {"AutoScalingGroupName": "web"},
    )
    detector.ec2, detector.autoscaling = ec2, autoscaling
    source = CloudFailureSource(detector, repo)
    until = datetime(2025, 3, 1, 12, 10, tzinfo=UTC)
    with ec2_stub, asg_stub:
        pulled = source.pull(until - timedelta(minutes=10), until)
    assert sorted(rows(pulled)) == sorted(
        [
            (ids[0], "status-check", "system status impaired (reachability failed)"),
            ("i-0gone", "asg-replacement", "an EC2 health check indicating it has been terminated or stopped"),
        ]
    )  # the February replacement is older than the look-back
    assert pulled.failures is not None
    times = dict(zip(pulled.failures["instance_id"], pulled.failures["timestamp"], strict=True))
    assert times == {ids[0]: pd.Timestamp(impaired_since), "i-0gone": pd.Timestamp(replaced_at)}
    commit(repo, pulled)
    assert label_of(repo, ids[0], impaired_since) == 1 and label_of(repo, "i-0gone", replaced_at) == 1


def test_the_readers_of_aws_answers() -> None:
    at = datetime(2025, 3, 1, tzinfo=UTC)
    ok = {"InstanceId": "i-1", "SystemStatus": {"Status": "ok"}, "InstanceStatus": {"Status": "insufficient-data"}}
    assert status_failure(ok, at) is None
    bad = {"InstanceId": "i-1", "InstanceStatus": {"Status": "impaired", "Details": []}}
    assert status_failure(bad, at) == status_failure(bad, at)
    failure = status_failure(bad, at)
    assert failure is not None and (failure.root_cause, failure.timestamp) == ("instance status impaired", at)
    scale_in = {
        "Description": "Terminating EC2 instance: i-2",
        "Cause": "At 2025-03-01T10:00:00Z an instance was taken out of service in response to a user request.",
    }
    assert activity_failure(scale_in, at) is None


def label_of(repo: Repository, instance_id: str, failed_at: datetime) -> int:
    before = pd.Timestamp(failed_at) - pd.Timedelta(minutes=10)
    entities = pd.DataFrame({"instance_id": [instance_id], "event_timestamp": [before]})
    return int(make_labels(entities, repo.load_failures(), [60])[label_column(60)].iloc[0])


def test_a_failure_caused_on_moto_becomes_a_positive_label(endpoint: str, repo: Repository) -> None:
    ids = make_group(endpoint, size=2)
    session().client("ec2", endpoint_url=endpoint).stop_instances(InstanceIds=[ids[1]])
    commit(repo, failure_source(adapter(endpoint), repo).pull(None, later()))
    failed_at = repo.load_failures()["timestamp"].iloc[0]
    assert label_of(repo, ids[1], failed_at) == 1
    assert label_of(repo, ids[0], failed_at) == 0
