"""Shared state on servers: cycle state in the repository (SQLite and PostgreSQL) with optimistic versions,
and Feast with its SQL registry on PostgreSQL and its online store on a real Redis, chosen by settings only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from forewarn import service
from forewarn.errors import ConfigError
from forewarn.features.repo import sql_registry
from forewarn.features.store import FeatureStoreGlue
from forewarn.features.windows import compute_window_features
from forewarn.policy.guardrails import ActionRecord
from forewarn.schemas import ActionType
from forewarn.settings import Settings
from forewarn.store.migrate import upgrade
from forewarn.store.repository import make_engine
from forewarn.store.state import StaleState, StateStore
from tests.servers import free_port, require_binary, start, stop, throwaway_postgres, wait_for_port
from tests.test_feast import IDS, assert_online_equals, latest, make_telemetry

T0 = datetime(2024, 5, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    with throwaway_postgres("forewarn_state") as url:
        yield url


def machine(tmp_path: Path, name: str, url: str) -> service.Context:
    """A context as a run on another machine builds it: its own home, the shared database."""
    return service.context(dry_run=True, settings=Settings(home=tmp_path / name, database_url=url))


def test_a_write_over_a_stale_version_is_refused(database_url: str) -> None:
    upgrade(database_url)
    store = StateStore(make_engine(database_url))
    first = store.put("bands", {"n": 1}, expected=0, owner="a")
    with pytest.raises(StaleState, match="bands"):
        store.put("bands", {"n": 2}, expected=0, owner="b")  # both thought the row was new
    assert store.put("bands", {"n": 3}, expected=first.version, owner="a").version == 2
    with pytest.raises(StaleState):
        store.put("bands", {"n": 4}, expected=first.version, owner="b")  # b read version 1, now 2
    row = store.get("bands")
    assert row is not None and row.value == {"n": 3} and row.version == 2 and row.updated_by == "a"


def test_overlapping_cycles_on_two_machines_keep_both_changes(tmp_path: Path, database_url: str) -> None:
    a, b = machine(tmp_path, "a", database_url), machine(tmp_path, "b", database_url)
    engine_a, guard_a = a.engine(), a.guard_state()
    engine_b, guard_b = b.engine(), b.guard_state()  # both read before either saved
    engine_a.tracker.update("vm-a", 0.9, T0)
    guard_a.history.append(ActionRecord(action_id="act-a", instance_id="vm-a", type=ActionType.CORDON, at=T0))
    guard_a.last_high_risk_count = 1
    guard_a.breaker.baseline = [1.0]
    a.save_state(engine=engine_a, guard_state=guard_a)
    engine_b.tracker.update("vm-b", 0.9, T0 + timedelta(minutes=1))
    guard_b.history.append(
        ActionRecord(action_id="act-b", instance_id="vm-b", type=ActionType.CORDON, at=T0 + timedelta(minutes=1))
    )
    guard_b.last_high_risk_count = 2
    guard_b.breaker.baseline = [2.0]
    b.save_state(engine=engine_b, guard_state=guard_b)  # stale: must re-read and merge, not overwrite

    rows = StateStore(a.repo.engine).read(["bands", "guardrails"])
    assert rows["guardrails"].version == 2 and rows["bands"].version == 2
    assert set(b.engine().tracker.states) == {"vm-a", "vm-b"}  # b's context now holds the re-read state
    c = machine(tmp_path, "c", database_url)  # a third machine sees both runs' changes
    assert set(c.engine().tracker.states) == {"vm-a", "vm-b"}
    guard_c = c.guard_state()
    assert guard_c.history == []  # charges are the journal's SUCCEEDED actions, never saved from a plan
    assert guard_c.last_high_risk_count == 2 and guard_c.breaker.baseline == [2.0]


def test_a_run_forgetting_an_instance_removes_it_for_everyone(tmp_path: Path, database_url: str) -> None:
    a = machine(tmp_path, "a", database_url)
    engine, guard = a.engine(), a.guard_state()
    engine.tracker.update("vm-a", 0.9, T0)
    engine.tracker.update("vm-b", 0.9, T0)
    a.save_state(engine=engine, guard_state=guard)
    b, c = machine(tmp_path, "b", database_url), machine(tmp_path, "c", database_url)
    engine_b, engine_c = b.engine(), c.engine()
    engine_b.tracker.forget(["vm-a"])
    b.save_state(engine=engine_b, guard_state=b.guard_state())
    engine_c.tracker.update("vm-c", 0.5, T0)
    c.save_state(engine=engine_c, guard_state=c.guard_state())  # stale: merges b's forget with its own add
    assert set(machine(tmp_path, "d", database_url).engine().tracker.states) == {"vm-b", "vm-c"}


def test_an_old_state_json_is_taken_over_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    old = machine(tmp_path, "a", url)
    old.state_file.parent.mkdir(parents=True)
    guard = {"history": [], "in_flight_migrations": ["m-1"], "last_high_risk_count": 3}
    old.state_file.write_text(json.dumps({"guardrails": guard}))
    first = machine(tmp_path, "a", url)
    assert first.guard_state().in_flight_migrations == ["m-1"]
    first.save_state(engine=first.engine(), guard_state=first.guard_state())
    assert machine(tmp_path, "b", url).guard_state().last_high_risk_count == 3  # now in the repository


def test_a_registry_url_that_is_no_database_is_one_line() -> None:
    with pytest.raises(ConfigError, match="feast_registry_url"):
        sql_registry("redis://127.0.0.1:6379")
    assert (
        sql_registry("postgresql://u:p@h/db?sslmode=disable")["path"] == "postgresql+psycopg://u:p@h/db?sslmode=disable"
    )


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    binary = require_binary("redis-server")
    port = free_port()
    argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    process = start([*argv, "--dir", str(tmp_path)], log=tmp_path / "redis.log")
    try:
        wait_for_port(port, process=process)
        yield f"redis://127.0.0.1:{port}"
    finally:
        stop(process)


@pytest.mark.integration
def test_feast_on_postgres_and_redis_by_settings_only(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    features = compute_window_features(make_telemetry())
    with throwaway_postgres("forewarn_feast") as pg:
        monkeypatch.setenv("FOREWARN_HOME", str(tmp_path / "a"))
        monkeypatch.setenv("FOREWARN_FEAST_REGISTRY_URL", pg.replace("postgresql+psycopg", "postgresql"))
        monkeypatch.setenv("FOREWARN_FEAST_REDIS_URL", redis_url)
        glue = service.context().glue
        assert glue.config.registry.registry_type == "sql" and glue.config.online_store.type == "redis"
        glue.write_offline(features)
        glue.apply()
        end = features["event_timestamp"].max()
        glue.materialize(end=(end + pd.Timedelta(minutes=1)).to_pydatetime())
        assert_online_equals(glue.online_features(IDS), latest(features, end))
        assert not (tmp_path / "a" / "features" / "registry.db").exists()
        assert not (tmp_path / "a" / "features" / "online.db").exists()

        other = FeatureStoreGlue(tmp_path / "b" / "features")  # another machine: same settings, no files
        assert {v.name for v in other.store.list_feature_views()} == {v.name for v in glue.definitions.views}
        assert_online_equals(other.online_features(IDS), latest(features, end))
        engine = make_engine(pg)
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            views = conn.execute(sa.text("SELECT count(*) FROM feature_views")).scalar_one()
        engine.dispose()
        assert {"feature_views", "feature_services", "entities"} <= tables and views >= 1
