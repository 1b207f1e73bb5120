"""The OpenStack adapter against a real Nova: API, scheduler, conductor and two fake-driver computes in one
process under Nova's own functional-test base class, with real Placement.

Runs only in .venv-nova (see conftest.py); every call goes through openstacksdk and keystoneauth into Nova's
WSGI application (wsgi-intercept), so the requests, microversions and error answers are Nova's own.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import fixtures
from keystoneauth1 import noauth
from keystoneauth1 import session as ksa
from nova.tests.functional import integrated_helpers
from openstack import connection

from adapters.aws_tags import encode_task
from adapters.openstack import OpenStackAdapter
from forewarn.errors import AdapterError, NotFoundError
from forewarn.execution.applier import Applier
from forewarn.execution.journal import Journal
from forewarn.execution.resilience import default_retry
from forewarn.execution.undo import UNDO
from forewarn.schemas import Action, ActionState, ActionType, InstanceState, Plan, PlanState, PolicyMode, Task
from forewarn.store.repository import Repository


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

    def adapter(self, state_dir: Path | None = None) -> OpenStackAdapter:
        headers = {
            "X-Auth-User": "admin",
            "X-User-Id": "admin",
            "X-Roles": "admin,member",
            "X-Auth-Project-Id": self.api_fixture.project_id,
        }
        session = ksa.Session(auth=noauth.NoAuth(), additional_headers=headers)
        conn = connection.Connection(session=session, compute_endpoint_override=self.api_fixture.base_url)
        return OpenStackAdapter(conn, dry_run=False, state_dir=state_dir)

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
        deadline = time.monotonic() + 60  # Nova marks the migration completed just after the server is ACTIVE
        while (history := adapter.migration_status(server["id"]))[0]["status"] != "completed":
            assert time.monotonic() < deadline, history
            time.sleep(0.2)
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

    def wait_for_image(self, image_id: str, status: str = "active") -> dict[str, Any]:
        for _ in range(100):
            image = dict(self.glance.show(None, image_id))
            if image["status"] == status:
                return image
            time.sleep(0.1)
        raise AssertionError(f"image {image_id} never reached {status}")

    def test_image_snapshot_of_a_server_and_rebuild_from_it(self) -> None:
        server = self.boot("host1")
        adapter = self.adapter()
        image_id = adapter.image(server["id"], "forewarn-before-move", key="img")
        assert image_id and adapter.image(server["id"], "forewarn-before-move", key="img") == image_id  # one image
        image = self.wait_for_image(image_id)
        self._wait_for_server_parameter(server, {"OS-EXT-STS:task_state": None})  # else Nova answers 409
        assert image["name"] == "forewarn-before-move"
        assert [i["id"] for i in self.glance.detail(None) if i["name"] == "forewarn-before-move"] == [image_id]
        assert self.api.get_server(server["id"])["image"]["id"] != image_id
        adapter.rebuild(server["id"], image_id, key="rb")
        self.notifier.wait_for_versioned_notifications("instance.rebuild.end")
        rebuilt = self._wait_for_state_change(server, "ACTIVE")
        assert rebuilt["image"]["id"] == image_id and self.host(server) == "host1"
        adapter.rebuild(server["id"], image_id, key="rb")  # the same key: no second rebuild
        actions = [a["action"] for a in self.api.get_instance_actions(server["id"])]  # recorded by the API call
        assert sorted(actions) == ["create", "createImage", "rebuild"]
        with self.assertRaises(NotFoundError):
            adapter.image("00000000-0000-0000-0000-000000000000", "x", key="img-missing")

    def test_evacuate_from_a_disabled_forced_down_host_to_the_other(self) -> None:
        server = self.boot("host1", dict([encode_task(Task(task_id="t1", instance_id="x", cpu=0.5), came_from=None)]))
        adapter = self.adapter()
        adapter.disable_host("host1", "forewarn: predicted failure", key="dis")
        with self.assertRaises(AdapterError) as raised:  # Nova refuses: the host is still up
            adapter.evacuate(server["id"], "host2", key="too-early")
        assert "still in use" in str(raised.exception) and not raised.exception.retryable
        self.compute1.stop()
        adapter.force_down_host("host1", key="down")
        assert not adapter.health(server["id"])
        adapter.evacuate(server["id"], "host2", key="ev")
        self._wait_for_migration_status(server, ["done"])
        moved = self._wait_for_server_parameter(server, {"OS-EXT-SRV-ATTR:host": "host2"})
        assert moved["status"] in ("ACTIVE", "SHUTOFF")
        adapter.evacuate(server["id"], "host2", key="ev")  # the same key: nothing sent
        history = adapter.migration_status(server["id"])
        assert [(m["kind"], m["status"], m["source"], m["dest"]) for m in history] == [
            ("evacuation", "done", "host1", "host2")
        ]
        assert [(t.task_id, t.instance_id) for t in adapter.list_tasks()] == [("t1", server["id"])]  # metadata kept
        with self.assertRaises(AdapterError, msg="Nova refuses while the evacuation is not cleaned up"):
            adapter.force_down_host("host1", key="up-too-early", forced=False)
        self.compute1.start()  # the host comes back: it cleans up the evacuated server
        adapter.force_down_host("host1", key="up", forced=False)
        services = self.admin_api.get_services(binary="nova-compute", host="host1")
        assert (services[0]["forced_down"], services[0]["status"]) == (False, "disabled")

    def test_snapshot_is_kept_in_the_state_dir_and_restored_by_a_fresh_adapter(self) -> None:
        state_dir = Path(self.useFixture(fixtures.TempDir()).path)
        a = self.boot("host1", dict([encode_task(Task(task_id="t1", instance_id="x", cpu=0.5), came_from=None)]))
        b = self.boot("host2")
        snapshot_id = self.adapter(state_dir).snapshot(key="plan:snapshot")
        assert (state_dir / "snapshots" / f"{snapshot_id}.json").is_file()
        mover = self.adapter(state_dir)
        mover.cordon(a["id"], key="c")
        mover.migrate(["t1"], a["id"], b["id"], key="m")
        mover.scale(b["id"], factor=0.5, key="s")
        assert [t.instance_id for t in mover.list_tasks()] == [b["id"]]
        self.adapter(state_dir).restore(snapshot_id, key="plan:restore")  # another process restores
        fresh = self.adapter(state_dir)
        assert [(t.task_id, t.instance_id) for t in fresh.list_tasks()] == [("t1", a["id"])]
        instances = {i.instance_id: i for i in fresh.list_instances()}
        assert {i.state for i in instances.values()} == {InstanceState.RUNNING}
        assert instances[b["id"]].cpu_capacity == instances[a["id"]].cpu_capacity
        fresh.migrate(["t1"], a["id"], b["id"], key="m2")
        fresh.restore(snapshot_id, key="plan:restore")  # a used key, remembered across processes: no-op
        assert [t.instance_id for t in fresh.list_tasks()] == [b["id"]]
        with self.assertRaises(NotFoundError):
            fresh.restore("os-snap-missing", key="r2")

    def run_plan(self, adapter: OpenStackAdapter, *actions: Action) -> Plan:
        """An approved plan of ``actions``, run live by the real applier on a fresh SQLite journal."""
        repo = Repository(f"sqlite:///{self.useFixture(fixtures.TempDir()).path}/journal.db")
        repo.create_all()
        self.addCleanup(repo.dispose)
        plan = Plan(policy="nova", mode=PolicyMode.AUTO, state=PlanState.APPROVED, actions=list(actions))
        applier = Applier(adapter, Journal(repo), dry_run=False, retry=default_retry(attempts=3, sleep=lambda _: None))
        return applier.run(plan)

    def held(self, adapter: OpenStackAdapter, server_id: str) -> tuple[InstanceState, float, float]:
        inst = {i.instance_id: i for i in adapter.list_instances()}[server_id]
        return inst.state, round(inst.capacity_factor, 6), round(inst.reserved, 6)

    def hold(self, adapter: OpenStackAdapter, server_id: str) -> None:
        plan = self.run_plan(
            adapter,
            Action(type=ActionType.CORDON, instance_id=server_id),
            Action(type=ActionType.SCALE_BACK, instance_id=server_id, params={"factor": 0.5}),
            Action(type=ActionType.RESERVE_BUFFER, instance_id=server_id, params={"fraction": 0.25}),
        )
        assert plan.state is PlanState.SUCCEEDED, plan.notes
        assert self.held(adapter, server_id) == (InstanceState.CORDONED, 0.5, 0.25)

    def test_a_release_plan_undoes_cordon_scale_back_and_buffer(self) -> None:
        a = self.boot("host1", dict([encode_task(Task(task_id="t1", instance_id="x", cpu=0.5), came_from=None)]))
        b = self.boot("host2")
        adapter = self.adapter()
        adapter.uncordon(b["id"], key="nothing-held")  # Nova answers 404 for a missing key: not sent
        self.hold(adapter, b["id"])
        plan = self.run_plan(
            adapter,
            Action(type=ActionType.RELEASE, instance_id=b["id"]),
            Action(type=ActionType.RELEASE, instance_id=a["id"]),
        )
        assert plan.state is PlanState.SUCCEEDED, plan.notes
        assert [x.state for x in plan.actions] == [ActionState.SUCCEEDED, ActionState.SKIPPED]  # a held nothing
        assert self.held(adapter, b["id"]) == (InstanceState.RUNNING, 1.0, 0.0)
        assert not any(k.startswith("forewarn:") for k in self.api.get_server(b["id"])["metadata"])
        adapter.migrate(["t1"], a["id"], b["id"], key="onto-released")
        assert [t.instance_id for t in adapter.list_tasks()] == [b["id"]]

    def test_a_release_is_reverted_when_a_later_action_fails(self) -> None:
        a = self.boot("host1", dict([encode_task(Task(task_id="t1", instance_id="x", cpu=0.5), came_from=None)]))
        b = self.boot("host2")
        adapter = self.adapter()
        self.hold(adapter, b["id"])
        vcpus = {i.instance_id: i.cpu_capacity for i in adapter.list_instances()}[a["id"]]
        too_small = Action(type=ActionType.SCALE_BACK, instance_id=a["id"], params={"factor": 0.4 / vcpus})
        plan = self.run_plan(adapter, Action(type=ActionType.RELEASE, instance_id=b["id"]), too_small)
        assert plan.state is PlanState.ROLLED_BACK, plan.notes
        assert [x.state for x in plan.actions] == [ActionState.REVERTED, ActionState.FAILED]
        assert plan.actions[0].params[UNDO] == {"cordoned": True, "factor": 0.5, "reserved": 0.25}
        assert self.held(adapter, b["id"]) == (InstanceState.CORDONED, 0.5, 0.25)
