"""One set of CloudAdapter behaviours, run against every adapter: simulated, AWS (moto_server) and OpenStack.

Every adapter starts from the same fleet: three instances of 2 vCPU and 4 GiB (``a``, ``b``, ``c``) and three
tasks (t1, t2 on ``a``; t3 on ``b``; ``c`` empty). OpenStack is answered by a small stateful Nova built on
requests-mock (server metadata is kept and served back), behind openstacksdk's real request path; the exact
requests are pinned in tests/test_openstack.py and real Nova runs in tests/nova/.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests_mock
from keystoneauth1 import noauth
from keystoneauth1 import session as ksa
from openstack import connection

from adapters.aws_tags import encode_task
from adapters.openstack import OpenStackAdapter
from adapters.simulated import SimulatedAdapter
from forewarn.cloud import CloudAdapter
from forewarn.errors import AdapterError, NotFoundError
from forewarn.execution.applier import Applier
from forewarn.execution.resilience import default_retry
from forewarn.execution.undo import UNDO
from forewarn.schemas import (
    Action,
    ActionState,
    ActionType,
    Instance,
    InstanceState,
    Plan,
    PlanState,
    PolicyMode,
    Task,
)
from tests import aws_support
from tests.aws_support import endpoint, moto_endpoint
from tests.execution_support import journal

__all__ = ["endpoint", "moto_endpoint"]  # fixtures
UNKNOWN = "i-00000000000000000"
URL = "http://nova.contract/v2.1"


@dataclass
class Cloud:
    """One adapter under test: ``make`` builds an adapter over the shared fleet; ``fail`` breaks an instance."""

    make: Callable[..., CloudAdapter]
    ids: list[str]
    fail: Callable[[str], None]


def fleet_tasks(ids: list[str]) -> list[Task]:
    return [
        Task(task_id="t1", instance_id=ids[0], cpu=1.0, memory=1.0),
        Task(task_id="t2", instance_id=ids[0], cpu=0.5, memory=0.5),
        Task(task_id="t3", instance_id=ids[1], cpu=1.5, memory=2.0),
    ]


def simulated_cloud() -> Cloud:
    ids = ["a", "b", "c"]
    sim = SimulatedAdapter(
        [Instance(instance_id=i, cpu_capacity=2.0, memory_capacity=4.0) for i in ids], fleet_tasks(ids)
    )

    def make(dry_run: bool = False, state_dir: Path | None = None) -> CloudAdapter:
        sim.dry_run = dry_run  # one in-memory cloud: a "new" adapter is the same object
        return sim

    return Cloud(make, ids, sim.fail_instance)


def aws_cloud(url: str) -> Cloud:
    ids = aws_support.make_group(url)
    aws_support.place(url, fleet_tasks(ids))

    def fail(instance_id: str) -> None:
        aws_support.session().client("ec2", endpoint_url=url).stop_instances(InstanceIds=[instance_id])

    def make(dry_run: bool = False, state_dir: Path | None = None) -> CloudAdapter:
        return aws_support.adapter(url, dry_run=dry_run, state_dir=state_dir)

    return Cloud(make, ids, fail)


class FakeNova:
    """Just enough of Nova for the CloudAdapter calls: servers, their metadata, services, server groups."""

    def __init__(self, mock: requests_mock.Mocker, ids: list[str]) -> None:
        self.servers: dict[str, dict[str, Any]] = {sid: self.server(sid) for sid in ids}
        version = {
            "id": "v2.1",
            "status": "CURRENT",
            "version": "2.96",
            "min_version": "2.1",
            "links": [{"rel": "self", "href": URL + "/"}],
        }
        for url in (URL, URL + "/"):
            mock.get(url, json={"version": version})
        mock.get(re.compile(re.escape(URL) + r"/servers/[^/]+$"), json=self.get_server)
        mock.get(URL + "/servers/detail", json=lambda r, c: {"servers": list(self.servers.values())})
        mock.post(re.compile(re.escape(URL) + r"/servers/[^/]+/metadata$"), json=self.set_metadata)
        mock.delete(re.compile(re.escape(URL) + r"/servers/[^/]+/metadata/.+$"), json=self.delete_metadata)
        mock.get(URL + "/os-server-groups", json={"server_groups": []})
        mock.get(re.compile(re.escape(URL) + r"/os-services"), json=self.services)

    @staticmethod
    def server(sid: str) -> dict[str, Any]:
        return {
            "id": sid,
            "name": sid,
            "status": "ACTIVE",
            "metadata": {},
            "OS-EXT-SRV-ATTR:host": "host-" + sid,
            "OS-EXT-AZ:availability_zone": "nova",
            "flavor": {"vcpus": 2, "ram": 4096, "original_name": "m1"},
            "links": [],
        }

    def _found(self, request: Any, context: Any) -> dict[str, Any] | None:
        sid = urllib.parse.unquote(request.path.split("/servers/", 1)[1].split("/", 1)[0])
        if sid not in self.servers:
            context.status_code = 404
            return None
        return self.servers[sid]

    def get_server(self, request: Any, context: Any) -> dict[str, Any]:
        found = self._found(request, context)
        return {"server": found} if found else {"itemNotFound": {"code": 404, "message": "Instance not found"}}

    def set_metadata(self, request: Any, context: Any) -> dict[str, Any]:
        found = self._found(request, context)
        if found is None:
            return {"itemNotFound": {"code": 404, "message": "Instance not found"}}
        found["metadata"].update(request.json()["metadata"])
        return {"metadata": found["metadata"]}

    def delete_metadata(self, request: Any, context: Any) -> dict[str, Any] | None:
        found = self._found(request, context)
        key = urllib.parse.unquote(request.path.rsplit("/metadata/", 1)[1])
        if found is None or key not in found["metadata"]:
            context.status_code = 404
            return {"itemNotFound": {"code": 404, "message": f"Metadata item {key} was not found"}}
        del found["metadata"][key]
        context.status_code = 204
        return None

    def services(self, request: Any, context: Any) -> dict[str, Any]:
        host = (request.qs.get("host") or [""])[0]
        return {
            "services": [
                {"id": f"svc-{host}", "binary": "nova-compute", "host": host, "state": "up", "status": "enabled"}
            ]
        }


def openstack_cloud(mock: requests_mock.Mocker) -> Cloud:
    ids = ["s-a", "s-b", "s-c"]
    nova = FakeNova(mock, ids)
    for task in fleet_tasks(ids):
        tag, value = encode_task(task, came_from=None)
        nova.servers[str(task.instance_id)]["metadata"][tag] = value

    def fail(sid: str) -> None:
        nova.servers[sid]["status"] = "ERROR"

    def make(dry_run: bool = False, state_dir: Path | None = None) -> CloudAdapter:
        conn = connection.Connection(session=ksa.Session(auth=noauth.NoAuth()), compute_endpoint_override=URL)
        return OpenStackAdapter(conn, dry_run=dry_run, state_dir=state_dir)

    return Cloud(make, ids, fail)


@pytest.fixture
def os_mock() -> Iterator[requests_mock.Mocker]:
    with requests_mock.Mocker(real_http=True) as mock:  # real_http: moto_server on 127.0.0.1 stays reachable
        yield mock


AWS = pytest.param("aws", marks=pytest.mark.integration)  # a real moto_server


@pytest.fixture(params=["simulated", AWS, "openstack"])
def cloud(request: pytest.FixtureRequest) -> Cloud:
    if request.param == "simulated":
        return simulated_cloud()
    if request.param == "aws":
        return aws_cloud(request.getfixturevalue("endpoint"))
    return openstack_cloud(request.getfixturevalue("os_mock"))


def placement(adapter: CloudAdapter) -> dict[str, str | None]:
    return {t.task_id: t.instance_id for t in adapter.list_tasks()}


def states(adapter: CloudAdapter) -> dict[str, InstanceState]:
    return {i.instance_id: i.state for i in adapter.list_instances()}


def cpu(adapter: CloudAdapter) -> dict[str, float]:
    return {i.instance_id: i.cpu_capacity for i in adapter.list_instances()}


def test_lists_instances_and_tasks(cloud: Cloud) -> None:
    adapter = cloud.make()
    assert isinstance(adapter, CloudAdapter)
    instances = {i.instance_id: i for i in adapter.list_instances()}
    assert sorted(instances) == sorted(cloud.ids)
    assert {(i.cpu_capacity, i.memory_capacity, i.state) for i in instances.values()} == {
        (2.0, 4.0, InstanceState.RUNNING)
    }
    a, b, _ = cloud.ids
    tasks = {t.task_id: t for t in adapter.list_tasks()}
    assert {tid: (t.instance_id, t.cpu, t.memory) for tid, t in tasks.items()} == {
        "t1": (a, 1.0, 1.0),
        "t2": (a, 0.5, 0.5),
        "t3": (b, 1.5, 2.0),
    }


def test_cordon_and_uncordon_act_once_per_key(cloud: Cloud) -> None:
    adapter, (a, _, _) = cloud.make(), cloud.ids
    adapter.cordon(a, key="c1")
    assert states(adapter)[a] == InstanceState.CORDONED
    adapter.uncordon(a, key="u1")
    adapter.cordon(a, key="c1")  # the key was used: nothing happens
    assert states(adapter)[a] == InstanceState.RUNNING
    adapter.cordon(a, key="c2")
    adapter.uncordon(a, key="u1")  # used too
    assert states(adapter)[a] == InstanceState.CORDONED
    with pytest.raises(AdapterError, match="already used"):
        adapter.uncordon(a, key="c2")  # a key belongs to one call


def test_migrate_moves_tasks_and_a_repeated_key_is_a_no_op(cloud: Cloud) -> None:
    adapter, (a, b, c) = cloud.make(), cloud.ids
    adapter.migrate(["t1"], a, c, key="m1")
    assert placement(adapter) == {"t1": c, "t2": a, "t3": b}
    adapter.migrate(["t1"], c, a, key="m2")
    adapter.migrate(["t1"], a, c, key="m1")  # a retry of m1 after the work went back: nothing moves
    assert placement(adapter) == {"t1": a, "t2": a, "t3": b}


def test_a_move_onto_a_full_or_cordoned_target_is_refused_and_changes_nothing(cloud: Cloud) -> None:
    adapter, (a, b, c) = cloud.make(), cloud.ids
    before = placement(adapter)
    with pytest.raises(AdapterError, match="full"):
        adapter.migrate(["t3"], b, a, key="full")  # 1.5 onto 0.5 free vCPU
    adapter.cordon(c, key="c")
    with pytest.raises(AdapterError, match="cordoned"):
        adapter.migrate(["t1"], a, c, key="cordoned")
    assert placement(adapter) == before
    assert states(adapter) == {a: InstanceState.RUNNING, b: InstanceState.RUNNING, c: InstanceState.CORDONED}
    adapter.uncordon(c, key="u")
    adapter.migrate(["t1"], a, c, key="cordoned")  # a refused call did not use up its key
    assert placement(adapter)["t1"] == c


def test_dry_run_changes_nothing(cloud: Cloud) -> None:
    a, b, c = cloud.ids
    before_tasks, before_states, before_cpu = (f(cloud.make()) for f in (placement, states, cpu))
    dry = cloud.make(dry_run=True)
    assert dry.dry_run
    dry.cordon(a, key="c")
    dry.migrate(["t3"], b, c, key="m")
    assert dry.scale(c, factor=0.5, key="s") is None
    dry.reserve(c, 0.25, key="r")
    assert dry.snapshot(key="snap") == "snapshot-dry-run"
    live = cloud.make()
    assert (placement(live), states(live), cpu(live)) == (before_tasks, before_states, before_cpu)
    live.migrate(["t3"], b, c, key="m")  # the dry run did not use up the key
    assert placement(live)["t3"] == c


def test_an_unknown_instance_is_not_found(cloud: Cloud) -> None:
    adapter, (a, _, _) = cloud.make(), cloud.ids
    with pytest.raises(NotFoundError):
        adapter.cordon(UNKNOWN, key="c")
    with pytest.raises(NotFoundError):
        adapter.health(UNKNOWN)
    with pytest.raises(NotFoundError):
        adapter.migrate(["t1"], a, UNKNOWN, key="m")
    with pytest.raises(NotFoundError):
        adapter.scale(UNKNOWN, factor=0.5, key="s")
    with pytest.raises(NotFoundError):
        adapter.migrate(["no-such-task"], a, cloud.ids[2], key="m2")


def test_scale_returns_the_factor_in_force_before(cloud: Cloud) -> None:
    adapter, (_, b, c) = cloud.make(), cloud.ids
    assert adapter.scale(c, factor=0.5, key="half") == 1.0
    assert adapter.scale(c, factor=0.5, key="half") == 1.0  # a repeated key returns the first answer
    assert cpu(adapter)[c] == 1.0
    assert adapter.scale(c, factor=0.75, key="three-quarters") == 0.5  # factors do not compound
    assert cpu(adapter)[c] == 1.5
    assert adapter.scale(c, factor=1.0, key="revert") == 0.75
    assert cpu(adapter)[c] == 2.0
    with pytest.raises(AdapterError, match="move work"):
        adapter.scale(b, factor=0.5, key="too-small")  # t3 uses 1.5 of 2 vCPU
    assert cpu(adapter)[b] == 2.0


def test_snapshot_and_restore_round_trip_the_placement(cloud: Cloud) -> None:
    adapter, (a, b, c) = cloud.make(), cloud.ids
    before = (placement(adapter), states(adapter), cpu(adapter))
    snapshot_id = adapter.snapshot(key="plan:snapshot")
    assert adapter.snapshot(key="plan:snapshot") == snapshot_id
    adapter.cordon(a, key="c")
    adapter.migrate(["t1"], a, c, key="m")
    adapter.scale(c, factor=0.8, key="s")
    adapter.reserve(b, 0.1, key="r")
    assert placement(adapter) != before[0]
    adapter.restore(snapshot_id, key="plan:restore")
    assert (placement(adapter), states(adapter), cpu(adapter)) == before
    adapter.migrate(["t2"], a, b, key="m2")  # b's buffer is gone too: t2 fills b's last 0.5 vCPU
    with pytest.raises(NotFoundError):
        adapter.restore("no-such-snapshot", key="r2")


# The simulated cloud lives in one process's memory: there is nothing for a fresh adapter to restore from.
@pytest.mark.parametrize("cloud", [AWS, "openstack"], indirect=True)
def test_a_fresh_adapter_restores_a_snapshot_kept_in_the_state_dir(cloud: Cloud, tmp_path: Path) -> None:
    a, _, c = cloud.ids
    before = placement(cloud.make())
    snapshot_id = cloud.make(state_dir=tmp_path).snapshot(key="plan:snapshot")
    cloud.make(state_dir=tmp_path).migrate(["t1"], a, c, key="m")
    cloud.make(state_dir=tmp_path).restore(snapshot_id, key="plan:restore")
    assert placement(cloud.make()) == before


def test_health(cloud: Cloud) -> None:
    adapter, (a, b, c) = cloud.make(), cloud.ids
    assert all(adapter.health(i) for i in cloud.ids)
    cloud.fail(a)
    assert not adapter.health(a) and adapter.health(b)
    assert states(adapter)[a] == InstanceState.FAILED
    with pytest.raises(AdapterError, match="failed"):
        adapter.migrate(["t3"], b, a, key="onto-failed")
    assert placement(adapter)["t3"] == b
    assert c in {i.instance_id for i in adapter.list_instances()}


def held(adapter: CloudAdapter, instance_id: str) -> tuple[InstanceState, float, float]:
    """What Forewarn holds on an instance, as the adapter reports it: state, capacity factor, buffer."""
    inst = next(i for i in adapter.list_instances() if i.instance_id == instance_id)
    return inst.state, round(inst.capacity_factor, 6), round(inst.reserved, 6)


def run_plan(adapter: CloudAdapter, tmp_path: Path, *actions: Action) -> Plan:
    """Run an approved plan of ``actions`` live through the real applier, on a fresh journal."""
    plan = Plan(policy="contract", mode=PolicyMode.AUTO, state=PlanState.APPROVED, actions=list(actions))
    applier = Applier(adapter, journal(tmp_path), dry_run=False, retry=default_retry(attempts=3, sleep=lambda _: None))
    return applier.run(plan)


def hold(adapter: CloudAdapter, instance_id: str, tmp_path: Path) -> None:
    """Cordon, scale back to half and reserve a quarter of ``instance_id``, as a plan of the policy would."""
    plan = run_plan(
        adapter,
        tmp_path / "hold",
        Action(type=ActionType.CORDON, instance_id=instance_id),
        Action(type=ActionType.SCALE_BACK, instance_id=instance_id, params={"factor": 0.5}),
        Action(type=ActionType.RESERVE_BUFFER, instance_id=instance_id, params={"fraction": 0.25}),
    )
    assert plan.state is PlanState.SUCCEEDED, plan.notes
    assert held(adapter, instance_id) == (InstanceState.CORDONED, 0.5, 0.25)


def test_a_release_plan_undoes_every_hold(cloud: Cloud, tmp_path: Path) -> None:
    adapter, (a, _, c) = cloud.make(), cloud.ids
    (tmp_path / "hold").mkdir()
    hold(adapter, c, tmp_path)
    assert cpu(adapter)[c] == 1.0
    release = Action(type=ActionType.RELEASE, instance_id=c)
    plan = run_plan(adapter, tmp_path, release, Action(type=ActionType.RELEASE, instance_id=a))  # a holds nothing
    assert plan.state is PlanState.SUCCEEDED, plan.notes
    assert [x.state for x in plan.actions] == [ActionState.SUCCEEDED, ActionState.SKIPPED]
    assert held(adapter, c) == (InstanceState.RUNNING, 1.0, 0.0)
    assert cpu(adapter)[c] == 2.0
    adapter.migrate(["t3"], cloud.ids[1], c, key="onto-released")  # c takes new work at full capacity again
    assert placement(adapter)["t3"] == c


def test_a_release_is_reverted_when_a_later_action_of_its_plan_fails(cloud: Cloud, tmp_path: Path) -> None:
    adapter, (_, b, c) = cloud.make(), cloud.ids
    (tmp_path / "hold").mkdir()
    hold(adapter, c, tmp_path)
    release = Action(type=ActionType.RELEASE, instance_id=c)
    too_small = Action(type=ActionType.SCALE_BACK, instance_id=b, params={"factor": 0.5})  # t3 needs 1.5 of 2 vCPU
    plan = run_plan(adapter, tmp_path, release, too_small)
    assert plan.state is PlanState.ROLLED_BACK, plan.notes
    assert [x.state for x in plan.actions] == [ActionState.REVERTED, ActionState.FAILED]
    assert plan.actions[0].params[UNDO] == {"cordoned": True, "factor": 0.5, "reserved": 0.25}
    assert held(adapter, c) == (InstanceState.CORDONED, 0.5, 0.25)
    assert held(adapter, b) == (InstanceState.RUNNING, 1.0, 0.0)


def test_lifting_a_hold_that_is_not_there_is_a_no_op(cloud: Cloud) -> None:
    adapter, (_, _, c) = cloud.make(), cloud.ids
    adapter.uncordon(c, key="u")
    assert adapter.scale(c, factor=1.0, key="s") == 1.0
    adapter.reserve(c, 0.0, key="r")
    assert held(adapter, c) == (InstanceState.RUNNING, 1.0, 0.0)
