"""Shared fixtures: analytics off before any library is imported, and one Prefect harness per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

for _name, _value in {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "GX_ANALYTICS_ENABLED": "false",
    "FEAST_USAGE": "False",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "MPLBACKEND": "Agg",
}.items():
    os.environ[_name] = _value


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One ephemeral Prefect API for the whole session (never nested), with its own PREFECT_HOME."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def forewarn_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh FOREWARN_HOME for one test."""
    home = tmp_path / "home"
    monkeypatch.setenv("FOREWARN_HOME", str(home))
    return home


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI=true a skipped test is a failure: a skip there hides a missing server or data set."""
    from tests.servers import in_ci

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if in_ci() and skipped and exitstatus == 0:
        for report in skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            print(f"\nCI=true: skipped test counts as a failure: {report.nodeid}: {reason}")
        session.exitstatus = 1
