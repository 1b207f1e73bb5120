"""The OpenStack adapter against openstacksdk's real request path, with requests-mock answering as Nova does.

These pin the exact requests sent; tests/nova/ runs the same adapter against a real Nova.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import requests_mock
from keystoneauth1 import noauth
from keystoneauth1 import session as ksa
from openstack import connection

from adapters.aws_tags import encode_task
from adapters.openstack import OpenStackAdapter
from forewarn.cloud import CloudAdapter
from forewarn.errors import AdapterError, NotFoundError, TransientAdapterError
from forewarn.schemas import InstanceState, Task

URL = "http://nova.test/v2.1"
VERSION = {
    "id": "v2.1",
    "status": "CURRENT",
    "version": "2.96",
    "min_version": "2.1",
    "links": [{"rel": "self", "href": URL + "/"}],
}


def server(sid: str, host: str, metadata: dict[str, str], status: str = "ACTIVE") -> dict[str, Any]:
    return {
        "id": sid,
        "name": sid,
        "status": status,
        "metadata": metadata,
        "OS-EXT-SRV-ATTR:host": host,
        "OS-EXT-AZ:availability_zone": "nova",
        "flavor": {"vcpus": 2, "ram": 4096, "original_name": "m1"},
        "links": [],
    }


@pytest.fixture
def nova() -> Iterator[requests_mock.Mocker]:
    t1 = encode_task(Task(task_id="t1", instance_id="s1", cpu=1.0, memory=1.0), came_from=None)
    servers = [
        server("s1", "h1", dict([t1])),
        server("s2", "h2", {"forewarn:cordoned": "true", "role": "db"}),
        server("s3", "h2", {}),
    ]
    with requests_mock.Mocker() as mock:
        for url in (URL, URL + "/"):
            mock.get(url, json={"version": VERSION})
        mock.get(URL + "/servers/detail", json={"servers": servers})
        for s in servers:
            mock.get(f"{URL}/servers/{s['id']}", json={"server": s})
            mock.post(f"{URL}/servers/{s['id']}/metadata", json={"metadata": {}})
            mock.delete(requests_mock.ANY, status_code=204)
            mock.post(f"{URL}/servers/{s['id']}/action", status_code=202)
        mock.get(
            URL + "/os-server-groups",
            json={"server_groups": [{"id": "g1", "name": "web", "policy": "anti-affinity", "members": ["s1", "s3"]}]},
        )
        mock.get(
            URL + "/os-services",
            json={
                "services": [
                    {"id": "svc-h1", "binary": "nova-compute", "host": "h1", "state": "up", "status": "enabled"}
                ]
            },
        )
        mock.put(URL + "/os-services/svc-h1", json={"service": {"id": "svc-h1", "status": "disabled"}})
        yield mock


def cloud(dry_run: bool = False) -> OpenStackAdapter:
    session = ksa.Session(auth=noauth.NoAuth())
    return OpenStackAdapter(connection.Connection(session=session, compute_endpoint_override=URL), dry_run=dry_run)


def sent(mock: requests_mock.Mocker, method: str) -> list[tuple[str, Any]]:
    return [(r.path, r.json() if r.body else None) for r in mock.request_history if r.method == method]


def test_lists_servers_with_flavor_capacity_groups_and_cordons(nova: requests_mock.Mocker) -> None:
    adapter = cloud()
    assert isinstance(adapter, CloudAdapter)
    instances = {i.instance_id: i for i in adapter.list_instances()}
    assert (instances["s1"].cpu_capacity, instances["s1"].memory_capacity, instances["s1"].group) == (2.0, 4.0, "web")
    assert instances["s2"].state == InstanceState.CORDONED and instances["s2"].tags == {"role": "db"}
    assert [(t.task_id, t.instance_id, t.cpu) for t in adapter.list_tasks()] == [("t1", "s1", 1.0)]


def test_migrate_writes_the_target_record_before_deleting_the_source(nova: requests_mock.Mocker) -> None:
    cloud().migrate(["t1"], "s1", "s3", key="m1")
    posts, deletes = sent(nova, "POST"), [r.path for r in nova.request_history if r.method == "DELETE"]
    assert [p for p, _ in posts] == ["/v2.1/servers/s3/metadata"]
    assert "forewarn:task:t1" in posts[0][1]["metadata"] and "from=s1" in posts[0][1]["metadata"]["forewarn:task:t1"]
    assert deletes == ["/v2.1/servers/s1/metadata/forewarn:task:t1"]
    order = [r.method for r in nova.request_history if r.method in ("POST", "DELETE")]
    assert order == ["POST", "DELETE"]
    with pytest.raises(AdapterError, match="cordoned"):
        cloud().migrate(["t1"], "s1", "s2", key="m2")


def test_nova_operations_send_the_documented_actions(nova: requests_mock.Mocker) -> None:
    adapter = cloud()
    adapter.live_migrate("s1", "h2", key="lm")
    adapter.live_migrate("s1", "h1", key="lm-noop")  # already there: nothing sent
    adapter.cold_migrate("s3", "h1", key="cm")
    adapter.evacuate("s1", "h2", key="ev")
    adapter.disable_host("h1", "predicted to fail", key="dis")
    actions = [body for path, body in sent(nova, "POST") if path.endswith("/action")]
    assert actions == [
        {"os-migrateLive": {"host": "h2", "block_migration": "auto"}},
        {"migrate": {"host": "h1"}},
        {"evacuate": {"host": "h2"}},
    ]
    live = next(r for r in nova.request_history if r.method == "POST")
    assert live.headers["OpenStack-API-Version"].startswith("compute 2.")
    puts = sent(nova, "PUT")
    assert puts == [("/v2.1/os-services/svc-h1", {"status": "disabled", "disabled_reason": "predicted to fail"})]


def test_dry_run_sends_nothing_and_keys_act_once(nova: requests_mock.Mocker) -> None:
    dry = cloud(dry_run=True)
    dry.cordon("s1", key="c")
    dry.live_migrate("s1", "h2", key="lm")
    assert sent(nova, "POST") == []
    adapter = cloud()
    adapter.cordon("s1", key="c")
    adapter.cordon("s1", key="c")
    assert sent(nova, "POST") == [("/v2.1/servers/s1/metadata", {"metadata": {"forewarn:cordoned": "true"}})]


@pytest.mark.parametrize(
    ("status", "error"),
    [(409, TransientAdapterError), (503, TransientAdapterError), (404, NotFoundError), (400, AdapterError)],
)
def test_nova_errors_are_typed(nova: requests_mock.Mocker, status: int, error: type[AdapterError]) -> None:
    nova.post(
        f"{URL}/servers/s1/action",
        status_code=status,
        json={"badRequest": {"message": "Compute host h9 could not be found.", "code": status}},
    )
    with pytest.raises(error) as raised:
        cloud().live_migrate("s1", "h9", key=f"k{status}")
    assert type(raised.value) is error


def test_a_timeout_is_transient_and_the_key_stays_unused(nova: requests_mock.Mocker) -> None:
    adapter = cloud()
    nova.post(f"{URL}/servers/s1/action", exc=requests.exceptions.ConnectTimeout)
    with pytest.raises(TransientAdapterError):
        adapter.live_migrate("s1", "h2", key="lm")
    nova.post(f"{URL}/servers/s1/action", status_code=202)
    adapter.live_migrate("s1", "h2", key="lm")  # the retry goes through
    assert nova.last_request is not None
    assert json.loads(nova.last_request.body) == {"os-migrateLive": {"host": "h2", "block_migration": "auto"}}
