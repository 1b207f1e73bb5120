"""Leases and instance claims on SQLite and the machine's PostgreSQL 15: overlapping runs never act twice."""

from __future__ import annotations

import random
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from forewarn.schemas import Action, ActionReason, ActionType, Plan, PolicyMode
from forewarn.store.lease import LeaseHeld, LeaseStore, claim_plan
from forewarn.store.migrate import upgrade
from forewarn.store.models import instance_claims, leases
from forewarn.store.repository import make_engine
from tests.servers import throwaway_postgres

T0 = datetime(2024, 3, 1, tzinfo=UTC)
TTL = timedelta(minutes=15)


class Clock:
    """A settable clock shared by the stores of one test."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with throwaway_postgres("forewarn_lease") as url:
        yield url


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file at the newest migration, copied for each test (migrating takes a while)."""
    path = tmp_path_factory.mktemp("lease") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path, migrated: Path) -> Iterator[str]:
    if request.param == "sqlite":
        shutil.copy(migrated, tmp_path / "lease.db")
        yield f"sqlite:///{tmp_path / 'lease.db'}"
        return
    chosen = request.getfixturevalue("postgres_url")
    upgrade(chosen)
    yield chosen
    engine = make_engine(chosen)
    with engine.begin() as conn:
        for table in (leases, instance_claims):
            conn.execute(table.delete())
    engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def store(url: str, clock: Clock) -> LeaseStore:
    """A store on its own engine, so each 'run' has its own connections."""
    return LeaseStore(make_engine(url), clock=clock)


def test_a_lease_has_one_holder_until_it_expires(url: str, clock: Clock) -> None:
    a, b = store(url, clock), store(url, clock)
    assert a.acquire("score-and-allocate", "run-a", ttl=TTL)
    assert not b.acquire("score-and-allocate", "run-b", ttl=TTL)
    assert a.acquire("score-and-allocate", "run-a", ttl=TTL), "the holder renews its own lease"
    holder = b.holder("score-and-allocate")
    assert holder is not None and holder.owner == "run-a"
    clock.now += TTL
    assert b.acquire("score-and-allocate", "run-b", ttl=TTL), "an expired lease is free"
    assert not a.release("score-and-allocate", "run-a"), "a lost lease cannot be released by its old holder"
    assert b.release("score-and-allocate", "run-b")
    assert a.holder("score-and-allocate") is None


def test_held_raises_naming_the_holder(url: str, clock: Clock) -> None:
    a, b = store(url, clock), store(url, clock)
    with a.held("train", "run-a", ttl=TTL) as lease:
        assert lease.owner == "run-a"
        with (
            pytest.raises(LeaseHeld, match="'train' is held by run-a until 2024-03-01T00:15:00Z"),
            b.held("train", "run-b", ttl=TTL),
        ):
            pass
    with b.held("train", "run-b", ttl=TTL) as lease:
        assert lease.owner == "run-b"


def test_claims_are_exclusive_reentrant_and_expire(url: str, clock: Clock) -> None:
    a, b = store(url, clock), store(url, clock)
    assert a.claim(["i1", "i2"], "run-a", cycle="c1", ttl=TTL) == {"i1", "i2"}
    assert b.claim(["i2", "i3"], "run-b", cycle="c1", ttl=TTL) == {"i3"}
    assert a.claim(["i1", "i3"], "run-a", cycle="c2", ttl=TTL) == {"i1"}
    assert a.release_claims(["i2"], "run-a") == 1
    assert b.claim(["i2"], "run-b", cycle="c2", ttl=TTL) == {"i2"}
    clock.now += TTL
    assert a.claim(["i2", "i3"], "run-a", cycle="c3", ttl=TTL) == {"i2", "i3"}
    assert a.claimed_by("run-a") == {"i2", "i3"}
    assert b.claimed_by("run-b") == set()


def _plan(pairs: list[tuple[str, str | None]]) -> Plan:
    actions = [
        Action(type=ActionType.MIGRATE if target else ActionType.CORDON, instance_id=source, target_instance_id=target)
        for source, target in pairs
    ]
    return Plan(policy="default", mode=PolicyMode.AUTO, actions=actions)


def test_claim_plan_drops_actions_on_claimed_instances_and_frees_the_rest(url: str, clock: Clock) -> None:
    a, b = store(url, clock), store(url, clock)
    assert a.claim(["target-1"], "run-a", cycle="c", ttl=TTL) == {"target-1"}
    plan = claim_plan(b, _plan([("i1", "target-1"), ("i2", "target-2"), ("i3", None)]), "run-b", cycle="c", ttl=TTL)
    assert [(x.instance_id, x.target_instance_id) for x in plan.actions] == [("i2", "target-2"), ("i3", None)]
    assert plan.notes == ["dropped migrate on i1: instance claimed by another run (target-1)"]
    assert b.claimed_by("run-b") == {"i2", "target-2", "i3"}, "i1's claim is given back: its action did not run"


def _race(url: str, clock: Clock, owners: list[str], cycles: int, instances: list[str]) -> list[tuple[str, str]]:
    """Every worker runs the same schedule at the same times; returns (worker, instance) of each action run.

    The clock stands still, so every claim outlives the schedule: no instance may be acted on twice at all.
    """
    acted: list[tuple[str, str]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(owners))
    errors: list[BaseException] = []

    def worker(owner: str, seed: int) -> None:
        runs = store(url, clock)
        rng = random.Random(seed)
        try:
            for cycle in range(cycles):
                picked = rng.sample(instances, k=len(instances) // 2)
                plan = _plan([(i, None) for i in picked])
                barrier.wait(timeout=60)
                run_id = f"{owner}/slot-{cycle}"  # each flow run is its own owner, as a flow-run id is
                kept = claim_plan(runs, plan, run_id, cycle=f"slot-{cycle}", ttl=TTL)
                with lock:
                    acted.extend((owner, x.instance_id) for x in kept.actions)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
            barrier.abort()
        finally:
            runs.engine.dispose()

    threads = [threading.Thread(target=worker, args=(o, n)) for n, o in enumerate(owners)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return acted


@pytest.mark.parametrize("owners", [2, 4])
def test_racing_runs_on_one_schedule_never_act_on_an_instance_twice(url: str, clock: Clock, owners: int) -> None:
    instances = [f"vm-{n:04d}" for n in range(300)]
    acted = _race(url, clock, [f"worker-{n}" for n in range(owners)], cycles=5, instances=instances)
    counts: dict[str, int] = {}
    for _owner, instance in acted:
        counts[instance] = counts.get(instance, 0) + 1
    assert max(counts.values()) == 1, {i: c for i, c in counts.items() if c > 1}
    assert len(counts) > len(instances) // 2, "the runs did act: the claims are not simply refusing everyone"


def test_claim_plan_drops_a_cordon_with_the_migration_whose_target_is_claimed(url: str, clock: Clock) -> None:
    a, b = store(url, clock), store(url, clock)
    assert a.claim(["target-1"], "run-a", cycle="c", ttl=TTL) == {"target-1"}
    plan = claim_plan(b, _plan([("i1", None), ("i1", "target-1"), ("i2", None)]), "run-b", cycle="c", ttl=TTL)
    assert [(x.instance_id, x.target_instance_id) for x in plan.actions] == [("i2", None)]
    assert plan.notes == [
        "dropped cordon on i1: dependency: goes with migrate on i1, instance claimed by another run (target-1)",
        "dropped migrate on i1: instance claimed by another run (target-1)",
    ]
    assert b.claimed_by("run-b") == {"i2"}, "i1 is given back: neither of its actions runs"


def test_claim_plan_drops_the_buffer_reserved_for_a_scale_back_it_could_not_claim(url: str, clock: Clock) -> None:
    a, b = store(url, clock), store(url, clock)
    assert a.claim(["i1"], "run-a", cycle="c", ttl=TTL) == {"i1"}
    back = Action(type=ActionType.SCALE_BACK, instance_id="i1", reason=ActionReason(rule="shrink"))
    buffer = Action(type=ActionType.RESERVE_BUFFER, instance_id="h1", reason=ActionReason(rule="shrink"))
    plan = claim_plan(
        b, Plan(policy="default", mode=PolicyMode.AUTO, actions=[back, buffer]), "run-b", cycle="c", ttl=TTL
    )
    assert plan.actions == []
    assert plan.notes[-1] == "dropped reserve-buffer on h1: dependency: reserved for scale-back on i1, dropped"
    assert b.claimed_by("run-b") == set()
