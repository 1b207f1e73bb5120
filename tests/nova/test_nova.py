"""The OpenStack adapter against a real Nova: API, scheduler, conductor and two fake-driver computes in one
process under Nova's own functional-test base class, with real Placement.

Runs only in .venv-nova (see conftest.py); every call goes through openstacksdk and keystoneauth into Nova's
WSGI application (wsgi-intercept), so the requests, microversions and error answers are Nova's own.
"""

from __future__ import annotations

from typing import Any

from keystoneauth1 import noauth
from keystoneauth1 import session as ksa
from nova.tests.functional import integrated_helpers
from openstack import connection

from adapters.aws_tags import encode_task
from adapters.openstack import OpenStackAdapter
from forewarn.errors import AdapterError, NotFoundError
from forewarn.schemas import InstanceState, Task


class ForewarnOnNova(integrated_helpers.ProviderUsageBaseTestCase):
    compute_driver = "fake.MediumFakeDriver"

    def setUp(self) -> None:
        super().setUp()
        self.compute1 = self._start_compute(host="host1")
        self.compute2 = self._start_compute(host="host2")
        self.flavor = self.api.get_flavors()[0]

    def _clear_attrs(self) -> None:
        """Keep the test method pytest sets on the instance (Nova's cleanup would delete it under pytest)."""
        for key in [k for k in self.__dict__ if k[0] != "_" and not k.startswith("test_") and k != "id"]:
            del self.__dict__[key]

    def adapter(self) -> OpenStackAdapter:
        headers = {"X-Auth-User": "admin", "X-User-Id": "admin", "X-Roles": "admin,member",
                   "X-Auth-Project-Id": self.api_fixture.project_id}
        session = ksa.Session(auth=noauth.NoAuth(), additional_headers=headers)
        conn = connection.Connection(session=session, compute_endpoint_override=self.api_fixture.base_url)
        return OpenStackAdapter(conn, dry_run=False)

    def boot(self, host: str, metadata: dict[str, str] | None = None) -> dict[str, Any]:
        server = self._create_server(flavor_id=self.flavor["id"], host=host, networks="none")
        if metadata:
            self.api.post_server_metadata(server["id"], metadata)
        return server

    def host(self, server: dict[str, Any]) -> str:
        return str(self.api.get_server(server["id"])["OS-EXT-SRV-ATTR:host"])

    def test_live_migration_moves_the_server_and_reports_its_status(self) -> None:
        server = self.boot("host1")
        adapter = self.adapter()
        adapter.live_migrate(server["id"], "host2", key="lm")
        self._wait_for_server_parameter(server, {"OS-EXT-SRV-ATTR:host": "host2", "status": "ACTIVE"})
        adapter.live_migrate(server["id"], "host2", key="lm")  # the same key: nothing sent
        history = adapter.migration_status(server["id"])
        assert history[0]["kind"] == "live-migration" and history[0]["status"] == "completed"
        assert (history[0]["source"], history[0]["dest"]) == ("host1", "host2")
        assert adapter.health(server["id"])

    def test_a_bad_target_host_is_refused_as_nova_refuses_it(self) -> None:
        server = self.boot("host1")
        adapter = self.adapter()
        with self.assertRaises(AdapterError) as raised:
            adapter.live_migrate(server["id"], "no-such-host", key="bad")
        assert "no-such-host" in str(raised.exception) and not isinstance(raised.exception, NotFoundError)
        adapter.live_migrate(server["id"], "host1", key="same")  # already there: a no-op, not Nova's 400
        assert self.host(server) == "host1"

    def test_resize_and_cold_migration_confirm(self) -> None:
        server = self.boot("host1")
        adapter = self.adapter()
        adapter.cold_migrate(server["id"], "host2", key="cm")
        self._wait_for_state_change(server, "VERIFY_RESIZE")
        adapter.confirm(server["id"], key="cm:confirm")
        self._wait_for_state_change(server, "ACTIVE")
        assert self.host(server) == "host2"
        bigger = self.api.get_flavors()[1]
        adapter.resize(server["id"], bigger["id"], key="rs")
        self._wait_for_state_change(server, "VERIFY_RESIZE")
        adapter.confirm(server["id"], key="rs:confirm")
        self._wait_for_state_change(server, "ACTIVE")
        assert self.api.get_server(server["id"])["flavor"]["original_name"] == bigger["name"]

    def test_tasks_move_between_real_servers_and_a_disabled_host(self) -> None:
        a = self.boot("host1", dict([encode_task(Task(task_id="t1", instance_id="x", cpu=0.5), came_from=None)]))
        b = self.boot("host2")
        adapter = self.adapter()
        adapter.cordon(a["id"], key="c")
        adapter.migrate(["t1"], a["id"], b["id"], key="m")
        assert [(t.task_id, t.instance_id) for t in adapter.list_tasks()] == [("t1", b["id"])]
        assert {i.instance_id: i.state for i in adapter.list_instances()}[a["id"]] == InstanceState.CORDONED
        adapter.disable_host("host1", "forewarn: predicted failure", key="d")
        services = self.admin_api.get_services(binary="nova-compute", host="host1")
        assert services[0]["status"] == "disabled"
        group_id = adapter.server_group("forewarn-spread", "anti-affinity", key="g")
        assert adapter.server_group("forewarn-spread", "anti-affinity", key="g2") == group_id
