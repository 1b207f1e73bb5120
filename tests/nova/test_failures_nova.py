"""Failures of the OpenStack cloud against a real Nova (see test_nova.py): a server set to ERROR by an admin, one
stopped, one whose reboot fails on its compute host; each recorded once, closed when ACTIVE again, and a label.

Runs only in .venv-nova: ``make test-nova``.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import fixtures
import pandas as pd
from nova import exception
from nova.compute import power_state
from nova.tests.functional import integrated_helpers

from adapters.failures import failure_source
from forewarn.model.labels import label_column, make_labels
from forewarn.schemas import utcnow
from forewarn.store.repository import Repository
from forewarn.telemetry.sources import Pulled, Source
from tests.nova import test_nova


def later(minutes: float = 1.0) -> datetime:
    return utcnow() + timedelta(minutes=minutes)


class FailuresFromNova(integrated_helpers.ProviderUsageBaseTestCase):
    """Two fake-driver computes, as in test_nova.py, whose helpers it borrows (not its tests: no subclass)."""

    compute_driver = "fake.MediumFakeDriver"
    _clear_attrs = test_nova.ForewarnOnNova._clear_attrs
    adapter = test_nova.ForewarnOnNova.adapter
    boot = test_nova.ForewarnOnNova.boot

    def setUp(self) -> None:
        super().setUp()
        self.compute1 = self._start_compute(host="host1")
        self.compute2 = self._start_compute(host="host2")
        self.flavor = self.api.get_flavors()[0]
        self.repo = Repository(f"sqlite:///{Path(self.useFixture(fixtures.TempDir()).path) / 'history.db'}")
        self.repo.create_all()

    def source(self) -> Source:
        return failure_source(self.adapter(), self.repo)

    def commit(self, pulled: Pulled) -> None:
        if pulled.failures is not None:
            self.repo.save_failures(pulled.failures)
        if pulled.recoveries is not None:
            self.repo.record_recoveries(pulled.recoveries)

    def rows(self, pulled: Pulled) -> list[tuple[str, str, str]]:
        assert pulled.failures is not None
        return [(r.instance_id, r.type, r.root_cause) for r in pulled.failures.itertuples()]

    def label_before(self, instance_id: str, failed_at: Any) -> int:
        entities = pd.DataFrame(
            {"instance_id": [instance_id], "event_timestamp": [pd.Timestamp(failed_at) - pd.Timedelta(minutes=10)]}
        )
        return int(make_labels(entities, self.repo.load_failures(), [60])[label_column(60)].iloc[0])

    def test_a_server_reset_to_error_fails_once_and_recovers_when_active(self) -> None:
        server, other = self.boot("host1"), self.boot("host2")
        source = self.source()
        assert self.rows(source.pull(None, later())) == []
        self.api.post_server_action(server["id"], {"os-resetState": {"state": "error"}})
        self._wait_for_state_change(server, "ERROR", wait_for_fault_key=False)  # a reset records no fault
        first = source.pull(None, later())
        assert self.rows(first) == [
            (server["id"], "server-error", "status ERROR set by an administrator (os-resetState)")
        ]
        assert first.failures is not None and math.isnan(first.failures["recovery_minutes"].iloc[0])
        self.commit(first)
        assert self.rows(source.pull(None, later())) == []  # still ERROR: the same failure
        failed_at = self.repo.load_failures()["timestamp"].iloc[0]
        assert self.label_before(server["id"], failed_at) == 1
        assert self.label_before(other["id"], failed_at) == 0

        self.api.post_server_action(server["id"], {"os-resetState": {"state": "active"}})
        self._wait_for_state_change(server, "ACTIVE")
        back = source.pull(None, later(3))
        assert back.recoveries is not None and back.recoveries["instance_id"].tolist() == [server["id"]]
        self.commit(back)
        stored = self.repo.load_failures()
        assert stored["type"].tolist() == ["server-error"]
        assert 0.0 <= stored["recovery_minutes"].iloc[0] < 1.0  # the resetState action that brought it back
        assert self.rows(source.pull(None, later(4))) == []

    def test_a_stopped_server_is_a_shutoff_until_started(self) -> None:
        server = self.boot("host1")
        source = self.source()
        self._stop_server(server)
        first = source.pull(None, later())
        assert self.rows(first) == [(server["id"], "server-shutoff", "stopped through the API by user admin")]
        self.commit(first)
        self._start_server(server)
        self.commit(source.pull(None, later(2)))
        stored = self.repo.load_failures()
        assert len(stored) == 1 and not math.isnan(stored["recovery_minutes"].iloc[0])
        assert self.label_before(server["id"], stored["timestamp"].iloc[0]) == 1

    def fail_reboots(self, *, power_off: bool) -> None:
        """The fake hypervisor fails every reboot (and, with ``power_off``, leaves the guest off)."""

        def broken(driver: Any, context: Any, instance: Any, *args: Any, **kwargs: Any) -> None:
            if power_off:
                driver.instances[instance.uuid].state = power_state.SHUTDOWN
            raise exception.InstanceRebootFailure(reason="disk controller died")

        self.stub_out("nova.virt.fake.FakeDriver.reboot", broken)

    def test_a_reboot_failing_on_the_host_is_an_error_with_the_fault_as_cause(self) -> None:
        server = self.boot("host1")
        source = self.source()
        self.fail_reboots(power_off=True)
        self.api.post_server_action(server["id"], {"reboot": {"type": "SOFT"}})
        self._wait_for_state_change(server, "ERROR")
        first = source.pull(None, later())
        [(sid, kind, cause)] = self.rows(first)
        assert (sid, kind) == (server["id"], "server-error") and "disk controller died" in cause, cause
        self.commit(first)
        self.api.post_server_action(server["id"], {"os-resetState": {"state": "active"}})
        self._wait_for_state_change(server, "ACTIVE")
        back = source.pull(None, later(2))
        assert self.rows(back) == []  # the failed reboot is the failure already stored, not a second one
        self.commit(back)
        stored = self.repo.load_failures()
        assert stored["type"].tolist() == ["server-error"] and not math.isnan(stored["recovery_minutes"].iloc[0])

    def test_a_failed_action_on_a_server_still_active_is_a_failure_already_over(self) -> None:
        server = self.boot("host1")
        source = self.source()

        def broken(driver: Any, instance: Any) -> None:
            raise exception.HypervisorUnavailable(host="host1")

        self.stub_out("nova.virt.fake.FakeDriver.pause", broken)
        self.api.post_server_action(server["id"], {"pause": None})
        self._wait_for_instance_action_event(server, "pause", "compute_pause_instance", "Error")
        self._wait_for_state_change(server, "ACTIVE")
        first = source.pull(None, later())
        [(sid, kind, cause)] = self.rows(first)
        assert (sid, kind) == (server["id"], "action-failed"), cause
        assert cause.startswith("pause failed in compute_pause_instance"), cause
        assert first.failures is not None and first.failures["recovery_minutes"].iloc[0] >= 0.0
        self.commit(first)
        assert self.rows(source.pull(None, later(2))) == []
        assert self.label_before(server["id"], self.repo.load_failures()["timestamp"].iloc[0]) == 1
