"""A real moto_server on 127.0.0.1 for the AWS tests: started once per session, reset before every test."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from pathlib import Path

import boto3
import pytest
import requests

from adapters.aws import AwsAdapter
from adapters.aws_tags import encode_task
from forewarn.schemas import Task
from tests.servers import free_port, require_binary, start, stop, wait_for_port

VENV_BIN = str(Path(__file__).resolve().parent.parent / ".venv" / "bin")
REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = require_binary("moto_server", VENV_BIN)
    port = free_port()
    process = start(
        [binary, "-H", "127.0.0.1", "-p", str(port)],
        log=tmp_path_factory.mktemp("moto") / "moto.log",
        env={"MOTO_EC2_LOAD_DEFAULT_AMIS": "false"},
    )  # loading them takes ~3 s after every reset
    try:
        wait_for_port(port, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


@pytest.fixture
def endpoint(moto_endpoint: str) -> str:
    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    return moto_endpoint


@functools.cache
def session() -> boto3.Session:
    """Fixed fake credentials: the test never reads the developer's own (one session: it caches the models)."""
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)


def make_group(endpoint: str, name: str = "web", size: int = 3, max_size: int = 6) -> list[str]:
    """A launch template and an Auto Scaling group of ``size`` t3.medium instances (2 vCPU, 4 GiB)."""
    ec2 = session().client("ec2", endpoint_url=endpoint)
    template = ec2.create_launch_template(
        LaunchTemplateName=f"{name}-template",
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.medium"},
    )["LaunchTemplate"]
    autoscaling = session().client("autoscaling", endpoint_url=endpoint)
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=name,
        MinSize=0,
        MaxSize=max_size,
        DesiredCapacity=size,
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": "$Latest"},
        AvailabilityZones=[f"{REGION}a"],
    )
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    return sorted(i["InstanceId"] for i in group["Instances"])


def place(endpoint: str, tasks: Sequence[Task]) -> None:
    """Record tasks on their instances, as the workload's scheduler would."""
    ec2 = session().client("ec2", endpoint_url=endpoint)
    for task in tasks:
        key, value = encode_task(task, came_from=None)
        ec2.create_tags(Resources=[str(task.instance_id)], Tags=[{"Key": key, "Value": value}])


def adapter(endpoint: str, *, dry_run: bool = False, state_dir: Path | None = None, **kwargs: object) -> AwsAdapter:
    return AwsAdapter(["web"], session=session(), endpoint_url=endpoint, dry_run=dry_run, state_dir=state_dir, **kwargs)  # type: ignore[arg-type]


def lifecycle(endpoint: str, name: str = "web") -> dict[str, str]:
    autoscaling = session().client("autoscaling", endpoint_url=endpoint)
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    return {i["InstanceId"]: i["LifecycleState"] for i in group["Instances"]}


def desired(endpoint: str, name: str = "web") -> int:
    autoscaling = session().client("autoscaling", endpoint_url=endpoint)
    return int(
        autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0][
            "DesiredCapacity"
        ]
    )
