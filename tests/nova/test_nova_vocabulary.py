"""The whole action vocabulary, from policy decisions, on a real Nova (see tests/vocabulary_support.py): every
action type runs to SUCCEEDED and reverts, or (a group's size, which needs Heat or Senlin) is dropped from the
plan with its reason instead of failing in Nova."""

from __future__ import annotations

from pathlib import Path

import fixtures

from adapters.aws_tags import encode_task
from forewarn.execution.journal import Journal
from forewarn.schemas import ActionType, Task
from forewarn.store.repository import Repository
from tests.nova import test_nova
from tests.vocabulary_support import run_vocabulary


class VocabularyOnNova(test_nova.ForewarnOnNova):  # not imported by name: pytest would run its tests here too
    def fleet(self) -> list[str]:
        """Three servers; t1 and t2 on the first, t3 on the second, the third empty (in shares of the flavor)."""
        servers = [self.boot(host) for host in ("host1", "host2", "host1")]
        ids = [str(s["id"]) for s in servers]
        vcpus = float(self.flavor.get("vcpus") or 1)
        ram = float(self.flavor.get("ram") or 1024) / 1024.0
        tasks = [
            Task(task_id="t1", instance_id=ids[0], cpu=0.5 * vcpus, memory=0.25 * ram),
            Task(task_id="t2", instance_id=ids[0], cpu=0.25 * vcpus, memory=0.125 * ram),
            Task(task_id="t3", instance_id=ids[1], cpu=0.75 * vcpus, memory=0.5 * ram),
        ]
        for task in tasks:
            self.api.post_server_metadata(str(task.instance_id), dict([encode_task(task, came_from=None)]))
        return ids

    def journal(self) -> Journal:
        repo = Repository(f"sqlite:///{self.useFixture(fixtures.TempDir()).path}/journal.db")
        repo.create_all()
        self.addCleanup(repo.dispose)
        return Journal(repo)

    def test_every_action_type_from_a_policy_decision(self) -> None:
        for kind in ActionType:
            with self.subTest(kind=kind.value):
                ids = self.fleet()
                tmp = Path(self.useFixture(fixtures.TempDir()).path)
                run_vocabulary(self.adapter(tmp / "state"), ids, self.journal(), kind, tmp)
                for server in ids:
                    self._delete_server({"id": server})


for _inherited in [name for name in vars(test_nova.ForewarnOnNova) if name.startswith("test_")]:
    setattr(VocabularyOnNova, _inherited, None)  # run here only this file's test, not test_nova's again
