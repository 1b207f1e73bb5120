"""The AWS adapter against a real moto_server over HTTP: cordon, migrate, scale, snapshot, replace, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from adapters.aws_calls import translate
from forewarn.cloud import CloudAdapter
from forewarn.errors import AdapterError, NotFoundError, TransientAdapterError
from forewarn.execution.applier import Applier
from forewarn.execution.resilience import default_retry
from forewarn.schemas import Action, ActionType, InstanceState, Plan, PlanState, PolicyMode, Task
from tests.aws_support import adapter, desired, endpoint, lifecycle, make_group, moto_endpoint, place, session
from tests.execution_support import journal
from tests.servers import free_port

__all__ = ["endpoint", "moto_endpoint"]  # fixtures
pytestmark = pytest.mark.integration


def seeded(url: str) -> tuple[list[str], list[Task]]:
    ids = make_group(url)
    tasks = [
        Task(task_id="t1", instance_id=ids[0], cpu=1.0, memory=1.0),
        Task(task_id="t2", instance_id=ids[0], cpu=0.8, memory=0.5, splittable=True, min_chunk=0.25),
        Task(task_id="t3", instance_id=ids[1], cpu=1.5, memory=2.0),
    ]
    place(url, tasks)
    return ids, tasks


def placement(url: str) -> dict[str, str | None]:
    return {t.task_id: t.instance_id for t in adapter(url).list_tasks()}


def test_lists_the_group_with_capacity_from_the_instance_type(endpoint: str) -> None:
    ids, tasks = seeded(endpoint)
    cloud = adapter(endpoint)
    assert isinstance(cloud, CloudAdapter)
    instances = {i.instance_id: i for i in cloud.list_instances()}
    assert sorted(instances) == ids
    first = instances[ids[0]]
    assert (first.cpu_capacity, first.memory_capacity, first.group) == (2.0, 4.0, "web")
    assert first.zone == "us-east-1a" and first.state == InstanceState.RUNNING
    assert all(not k.startswith("forewarn:") for k in first.tags)
    assert {t.task_id: (t.instance_id, t.cpu, t.splittable) for t in cloud.list_tasks()} == {
        t.task_id: (t.instance_id, t.cpu, t.splittable) for t in tasks
    }


def test_dry_run_is_the_default_and_changes_nothing(endpoint: str) -> None:
    ids, _ = seeded(endpoint)
    cloud = adapter(endpoint, dry_run=True)
    before = placement(endpoint)
    cloud.cordon(ids[0], key="c")
    cloud.migrate(["t1"], ids[0], ids[2], key="m")
    cloud.scale("web", delta=2, key="s")
    assert cloud.snapshot(key="snap") == "snapshot-dry-run"
    assert placement(endpoint) == before and desired(endpoint) == 3
    assert set(lifecycle(endpoint).values()) == {"InService"}


def test_cordon_is_standby_with_scale_in_protection_once_per_key(endpoint: str) -> None:
    ids, _ = seeded(endpoint)
    cloud = adapter(endpoint)
    cloud.cordon(ids[0], key="c1")
    cloud.cordon(ids[0], key="c1")
    assert lifecycle(endpoint)[ids[0]] == "Standby" and desired(endpoint) == 2  # decremented once, no replacement
    group = (
        session()
        .client("autoscaling", endpoint_url=endpoint)
        .describe_auto_scaling_groups(AutoScalingGroupNames=["web"])["AutoScalingGroups"][0]
    )
    assert {i["InstanceId"]: i["ProtectedFromScaleIn"] for i in group["Instances"]}[ids[0]] is True
    assert {i.instance_id: i.state for i in cloud.list_instances()}[ids[0]] == InstanceState.CORDONED
    with pytest.raises(AdapterError, match="already used for cordon"):
        cloud.uncordon(ids[0], key="c1")
    cloud.uncordon(ids[0], key="u1")
    assert lifecycle(endpoint)[ids[0]] == "InService" and desired(endpoint) == 3
    with pytest.raises(NotFoundError):
        cloud.cordon("i-00000000000000000", key="c2")


def test_migrate_moves_task_records_under_the_fleet_rules(endpoint: str) -> None:
    ids, _ = seeded(endpoint)
    cloud = adapter(endpoint)
    cloud.migrate(["t1"], ids[0], ids[2], key="m1")
    cloud.migrate(["t1"], ids[0], ids[2], key="m1")  # a retry of the same key is a no-op
    assert placement(endpoint) == {"t1": ids[2], "t2": ids[0], "t3": ids[1]}
    before = placement(endpoint)
    with pytest.raises(AdapterError, match="full"):
        cloud.migrate(["t3"], ids[1], ids[2], key="m2")  # 1.0 + 1.5 > 2 vCPU
    with pytest.raises(NotFoundError):
        cloud.migrate(["nope"], ids[0], ids[2], key="m3")
    assert placement(endpoint) == before
    cloud.migrate(["t2"], ids[0], ids[1], key="m4", fractions=[0.25])
    tasks = {t.task_id: t for t in cloud.list_tasks()}
    assert tasks["t2#1"].instance_id == ids[1] and tasks["t2#1"].cpu == pytest.approx(0.2)
    assert tasks["t2"].instance_id == ids[0] and tasks["t2"].cpu == pytest.approx(0.6)
    cloud.cordon(ids[0], key="c")
    cloud.migrate(["t2#1"], ids[1], ids[0], key="back")  # back to where it came from, though cordoned
    assert {t.task_id: t.cpu for t in cloud.list_tasks() if t.task_id.startswith("t2")} == {"t2": pytest.approx(0.8)}


def test_scale_a_group_and_an_instance(endpoint: str) -> None:
    ids, _ = seeded(endpoint)
    cloud = adapter(endpoint)
    cloud.scale("web", delta=2, key="out")
    assert desired(endpoint) == 5 and len(cloud.list_instances()) == 5
    adapter(endpoint).scale("web", delta=2, key="out")  # another process retrying the key: the group's tag says done
    assert desired(endpoint) == 5
    cloud.scale("web", delta=-2, key="in")
    left = {i.instance_id for i in cloud.list_instances()}
    assert desired(endpoint) == 3 and {ids[0], ids[1]} <= left  # busy instances stay
    with pytest.raises(AdapterError, match="only 1 are empty"):
        cloud.scale("web", delta=-2, key="in2")
    with pytest.raises(AdapterError, match="MaxSize"):
        cloud.scale("web", delta=10, key="big")
    idle = sorted(left - {ids[0], ids[1]})[0]
    assert cloud.scale(idle, factor=0.5, key="half") == 1.0
    assert cloud.scale(idle, factor=0.5, key="half") == 1.0  # a repeated key returns the first answer
    assert {i.instance_id: i.cpu_capacity for i in cloud.list_instances()}[idle] == 1.0
    assert cloud.scale(idle, factor=1.0, key="full") == 0.5
    assert {i.instance_id: i.cpu_capacity for i in cloud.list_instances()}[idle] == 2.0
    with pytest.raises(AdapterError, match="move work off it first"):
        cloud.scale(ids[1], factor=0.5, key="too-small")  # t3 uses 1.5 of 2 vCPU
    with pytest.raises(NotFoundError):
        cloud.scale("other-group", delta=1, key="x")


def test_snapshot_and_restore_undo_moves_cordons_buffers_and_scale_out(endpoint: str, tmp_path: Path) -> None:
    ids, _ = seeded(endpoint)
    cloud = adapter(endpoint, state_dir=tmp_path, snapshot_images=True)
    before = placement(endpoint)
    snapshot_id = cloud.snapshot(key="plan-1:snapshot")
    ec2 = session().client("ec2", endpoint_url=endpoint)
    images = ec2.describe_images(Owners=["self"], Filters=[{"Name": "tag:forewarn:snapshot", "Values": [snapshot_id]}])
    assert len(images["Images"]) == 3
    cloud.cordon(ids[0], key="c")
    cloud.migrate(["t1"], ids[0], ids[2], key="m")
    cloud.reserve(ids[1], 0.2, key="r")
    cloud.scale("web", delta=1, key="s")
    adapter(endpoint, state_dir=tmp_path).restore(snapshot_id, key="plan-1:restore")  # a new process restores
    assert placement(endpoint) == before
    assert sorted(i.instance_id for i in cloud.list_instances()) == ids
    assert {i.state for i in cloud.list_instances()} == {InstanceState.RUNNING} and desired(endpoint) == 3
    assert all(i.cpu_capacity == 2.0 for i in cloud.list_instances())
    template = (
        session()
        .client("autoscaling", endpoint_url=endpoint)
        .describe_auto_scaling_groups(AutoScalingGroupNames=["web"])["AutoScalingGroups"][0]["LaunchTemplate"]
    )
    assert template["Version"] == "2"  # pinned to the version the snapshot made
    with pytest.raises(NotFoundError):
        cloud.restore("fw-snap-missing", key="r2")


def test_replace_launches_moves_every_task_and_terminates(endpoint: str) -> None:
    ids, _ = seeded(endpoint)
    cloud = adapter(endpoint)
    new_id = cloud.replace(ids[0], key="rep")
    assert new_id is not None and new_id not in ids
    assert placement(endpoint) == {"t1": new_id, "t2": new_id, "t3": ids[1]}
    assert sorted(i.instance_id for i in cloud.list_instances()) == sorted([new_id, ids[1], ids[2]])
    assert desired(endpoint) == 3
    assert cloud.replace(ids[0], key="rep") == new_id  # the same key does not launch twice


def test_health_follows_the_instance_state(endpoint: str) -> None:
    ids, _ = seeded(endpoint)
    cloud = adapter(endpoint)
    assert cloud.health(ids[0])
    session().client("ec2", endpoint_url=endpoint).stop_instances(InstanceIds=[ids[0]])
    assert not cloud.health(ids[0])
    assert {i.instance_id: i.state for i in cloud.list_instances()}[ids[0]] == InstanceState.FAILED
    with pytest.raises(NotFoundError):
        cloud.health("i-00000000000000000")
    with pytest.raises(AdapterError, match="failed"):
        cloud.migrate(["t3"], ids[1], ids[0], key="onto-failed")


def test_keys_survive_a_restart_with_a_state_dir(endpoint: str, tmp_path: Path) -> None:
    ids, _ = seeded(endpoint)
    adapter(endpoint, state_dir=tmp_path).migrate(["t1"], ids[0], ids[2], key="m")
    adapter(endpoint, state_dir=tmp_path).migrate(["t1"], ids[0], ids[2], key="m")  # would fail if sent again
    assert placement(endpoint)["t1"] == ids[2]


def test_errors_are_typed() -> None:
    def client_error(code: str, status: int) -> ClientError:
        return ClientError(
            {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
        )

    assert isinstance(translate(client_error("Throttling", 400), "op"), TransientAdapterError)
    assert isinstance(translate(client_error("RequestLimitExceeded", 503), "op"), TransientAdapterError)
    assert isinstance(translate(client_error("Whatever", 500), "op"), TransientAdapterError)
    assert isinstance(translate(client_error("InvalidInstanceID.NotFound", 400), "op"), NotFoundError)
    plain = translate(client_error("UnauthorizedOperation", 403), "op")
    assert type(plain) is AdapterError and "UnauthorizedOperation" in str(plain)


def test_an_unreachable_endpoint_is_transient() -> None:
    cloud = adapter(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientAdapterError, match="cannot reach"):
        cloud.list_instances()


def in_service(url: str) -> int:
    return sum(state == "InService" for state in lifecycle(url).values())


def run_plan(url: str, tmp_path: Path, *actions: Action) -> Plan:
    plan = Plan(policy="aws", mode=PolicyMode.AUTO, state=PlanState.APPROVED, actions=list(actions))
    tmp_path.mkdir(exist_ok=True)
    applier = Applier(
        adapter(url), journal(tmp_path), dry_run=False, retry=default_retry(attempts=3, sleep=lambda _: None)
    )
    return applier.run(plan)


def test_cordon_then_release_gives_the_group_back_its_size(endpoint: str, tmp_path: Path) -> None:
    ids, _ = seeded(endpoint)
    assert (desired(endpoint), in_service(endpoint)) == (3, 3)
    hold = run_plan(
        endpoint,
        tmp_path / "hold",
        Action(type=ActionType.CORDON, instance_id=ids[2]),
        Action(type=ActionType.SCALE_BACK, instance_id=ids[2], params={"factor": 0.5}),
        Action(type=ActionType.RESERVE_BUFFER, instance_id=ids[2], params={"fraction": 0.25}),
    )
    assert hold.state is PlanState.SUCCEEDED, hold.notes
    assert (desired(endpoint), in_service(endpoint), len(lifecycle(endpoint))) == (2, 2, 3)  # no replacement
    release = run_plan(endpoint, tmp_path / "release", Action(type=ActionType.RELEASE, instance_id=ids[2]))
    assert release.state is PlanState.SUCCEEDED, release.notes
    assert (desired(endpoint), in_service(endpoint), len(lifecycle(endpoint))) == (3, 3, 3)
    group = (
        session()
        .client("autoscaling", endpoint_url=endpoint)
        .describe_auto_scaling_groups(AutoScalingGroupNames=["web"])["AutoScalingGroups"][0]
    )
    assert not any(i["ProtectedFromScaleIn"] for i in group["Instances"])
    inst = {i.instance_id: i for i in adapter(endpoint).list_instances()}[ids[2]]
    assert (inst.state, inst.capacity_factor, inst.reserved, inst.cpu_capacity) == (
        InstanceState.RUNNING,
        1.0,
        0.0,
        2.0,
    )


def test_a_group_at_its_min_size_is_cordoned_without_shrinking(endpoint: str) -> None:
    ids, _ = seeded(endpoint)
    session().client("autoscaling", endpoint_url=endpoint).update_auto_scaling_group(
        AutoScalingGroupName="web", MinSize=3
    )
    cloud = adapter(endpoint)
    cloud.cordon(ids[2], key="c")  # AWS refuses a Standby that would take desired capacity below MinSize
    assert (desired(endpoint), in_service(endpoint)) == (3, 3)
    assert {i.instance_id: i.state for i in cloud.list_instances()}[ids[2]] == InstanceState.CORDONED
    with pytest.raises(AdapterError, match="cordoned"):
        cloud.migrate(["t1"], ids[0], ids[2], key="m")
    cloud.uncordon(ids[2], key="u")
    assert (desired(endpoint), in_service(endpoint)) == (3, 3)
    assert {i.instance_id: i.state for i in cloud.list_instances()}[ids[2]] == InstanceState.RUNNING


def test_scale_in_of_a_cordoned_idle_instance_removes_one_instance_only(endpoint: str) -> None:
    ids, _ = seeded(endpoint)  # t1, t2 on ids[0]; t3 on ids[1]; ids[2] idle
    cloud = adapter(endpoint)
    cloud.cordon(ids[2], key="c")
    assert (desired(endpoint), in_service(endpoint)) == (2, 2)
    cloud.scale("web", delta=-1, key="in")  # the idle one is in Standby: already out of desired capacity
    assert lifecycle(endpoint) == {ids[0]: "InService", ids[1]: "InService"}
    assert desired(endpoint) == 2 and set(placement(endpoint).values()) == {ids[0], ids[1]}
