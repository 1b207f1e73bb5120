"""The whole action vocabulary on every adapter, built from policy decisions.

For each action type a policy file says it (one rule), :class:`PolicyEngine` decides on the contract fleet of
tests/test_adapter_contract.py, the planner asks the adapter what it can do, and the plan runs live through the
applier to SUCCEEDED; then each action's revert (a rollback's: the plan's own snapshot) restores the state the
fleet was in before. An action the adapter declares it cannot do (OpenStack: a group's size) never reaches it:
the plan drops it with the reason and still succeeds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from forewarn.schemas import ActionType
from tests.execution_support import journal
from tests.test_adapter_contract import Cloud, cloud, endpoint, moto_endpoint, os_mock
from tests.vocabulary_support import run_vocabulary

__all__ = ["cloud", "endpoint", "moto_endpoint", "os_mock"]  # fixtures, the contract test's own


@pytest.mark.parametrize("kind", list(ActionType), ids=lambda k: k.value)
def test_every_action_runs_from_a_policy_decision_and_reverts(cloud: Cloud, kind: ActionType, tmp_path: Path) -> None:
    run_vocabulary(cloud.make(), cloud.ids, journal(tmp_path), kind, tmp_path)
