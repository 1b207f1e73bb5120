"""Leases and per-instance claims in the historical repository, so overlapping runs never act twice.

Terms:
    lease: a named lock with an owner and an expiry (``leases`` table). Whoever holds an unexpired lease
        may run the guarded section; a crashed holder stops blocking others once its lease expires.
    claim: one instance reserved by one owner (a flow run) until an expiry (``instance_claims`` table).
        A score-and-allocate run claims every instance its plan would touch, sources and targets, before
        the applier runs, and drops the actions whose instances another run holds. A claim is kept until it
        expires, also after the action succeeded, so a second run of the same schedule slot that starts
        later still finds it taken; it is released early only for actions that did not run.

Both tables are written with one ``INSERT .. ON CONFLICT DO UPDATE .. WHERE <free> RETURNING`` statement:
on PostgreSQL the conflicting row is locked and its newest version re-checked, so of two racing runs
exactly one gets each instance; on SQLite the database lock serialises writers, which is correct for one
machine. Expiry uses the callers' clocks (injectable for tests): keep nodes on NTP and TTLs far above skew.

The tables (:data:`forewarn.store.models.leases`, :data:`~forewarn.store.models.instance_claims`) are created
by the Alembic migrations, when the database is opened.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from forewarn.errors import ConfigError, ForewarnError
from forewarn.schemas import Model, Plan, UtcDatetime, utcnow
from forewarn.store.models import instance_claims, leases

HOST = socket.gethostname()
PLAN_TTL = timedelta(minutes=30)
"""How long a plan's lease lasts: a run killed on another host holds its plan's recovery back at most this long;
on this host its lease is given back as soon as its process is seen gone."""


def process_owner() -> str:
    """A lease owner naming this host and process (``HOST:PID:random``), so a dead holder can be told."""
    return f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


CHUNK = 1000
"""Instances claimed per statement (bound parameters stay well under every driver's limit)."""


class LeaseHeld(ForewarnError):
    """Another owner holds the lease asked for."""


class Lease(Model):
    name: str
    owner: str
    acquired_at: UtcDatetime
    expires_at: UtcDatetime


class LeaseStore:
    """Leases and instance claims on the repository's engine (SQLite or PostgreSQL).

    Args:
        engine: the repository's engine (``Repository(url).engine``).
        clock: the current time, time-zone aware; default :func:`forewarn.schemas.utcnow`.
    """

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        dialect = engine.dialect.name
        if dialect not in ("postgresql", "sqlite"):
            raise ConfigError(f"leases need PostgreSQL or SQLite, not {dialect}", field="database_url")
        self.engine = engine
        self.clock = clock
        self._insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert

    # -- leases --------------------------------------------------------------------------------------------
    def acquire(self, name: str, owner: str, *, ttl: timedelta) -> bool:
        """Take lease ``name`` for ``ttl`` if it is free, expired, or already ours (then it is renewed)."""
        now = self.clock()
        values = {"name": name, "owner": owner, "acquired_at": now, "expires_at": now + ttl}
        statement = self._insert(leases).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[leases.c.name],
            set_={"owner": owner, "acquired_at": now, "expires_at": now + ttl},
            where=(leases.c.expires_at <= now) | (leases.c.owner == owner),
        ).returning(leases.c.name)
        with self.engine.begin() as conn:
            return conn.execute(statement).first() is not None

    def release(self, name: str, owner: str) -> bool:
        """Give lease ``name`` back; False when ``owner`` did not hold it."""
        with self.engine.begin() as conn:
            result = conn.execute(delete(leases).where(leases.c.name == name, leases.c.owner == owner))
            return bool(result.rowcount)

    def holder(self, name: str) -> Lease | None:
        """The unexpired holder of lease ``name``, if any."""
        query = select(leases).where(leases.c.name == name, leases.c.expires_at > self.clock())
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return Lease.model_validate(dict(row)) if row else None

    @contextmanager
    def held(self, name: str, owner: str, *, ttl: timedelta) -> Iterator[Lease]:
        """Hold lease ``name`` for the ``with`` block, or raise :class:`LeaseHeld` naming the holder."""
        if not self.acquire(name, owner, ttl=ttl):
            other = self.holder(name)
            who = f"{other.owner} until {other.expires_at:%Y-%m-%dT%H:%M:%SZ}" if other else "another owner"
            raise LeaseHeld(f"lease '{name}' is held by {who}")
        try:
            lease = self.holder(name)
            assert lease is not None
            yield lease
        finally:
            self.release(name, owner)

    def drop_if_dead(self, name: str) -> None:
        """Give back lease ``name`` when its holder was a process on this host that is gone (killed)."""
        holder = self.holder(name)
        host, _, rest = holder.owner.partition(":") if holder else ("", "", "")
        pid = rest.split(":")[0]
        if holder is None or host != HOST or not pid.isdigit():
            return
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            self.release(name, holder.owner)  # only if that dead owner still holds it
        except PermissionError:
            pass  # alive, another user's

    @contextmanager
    def running_plan(self, plan_id: str) -> Iterator[Lease]:
        """Hold ``plan:ID`` while this process runs the plan's actions, so no other process "recovers" a plan
        that is still running (raises :class:`LeaseHeld` when another live process holds it)."""
        name = f"plan:{plan_id}"
        self.drop_if_dead(name)
        with self.held(name, process_owner(), ttl=PLAN_TTL) as lease:
            yield lease

    # -- instance claims -----------------------------------------------------------------------------------
    def claim(self, instance_ids: Iterable[str], owner: str, *, cycle: str, ttl: timedelta) -> set[str]:
        """Claim each instance that is free, expired, or already ours; returns the ones granted.

        Instances are claimed in sorted order, so two runs claiming overlapping sets lock rows in the same
        order and cannot deadlock.
        """
        ids = sorted({str(i) for i in instance_ids})
        now = self.clock()
        granted: set[str] = set()
        with self.engine.begin() as conn:
            for start in range(0, len(ids), CHUNK):
                rows = [
                    {"instance_id": i, "owner": owner, "cycle": cycle, "claimed_at": now, "expires_at": now + ttl}
                    for i in ids[start : start + CHUNK]
                ]
                statement = self._insert(instance_claims).values(rows)
                excluded = statement.excluded
                statement = statement.on_conflict_do_update(
                    index_elements=[instance_claims.c.instance_id],
                    set_={
                        "owner": excluded.owner,
                        "cycle": excluded.cycle,
                        "claimed_at": excluded.claimed_at,
                        "expires_at": excluded.expires_at,
                    },
                    where=(instance_claims.c.expires_at <= now) | (instance_claims.c.owner == owner),
                ).returning(instance_claims.c.instance_id)
                granted.update(str(r) for r in conn.execute(statement).scalars())
        return granted

    def release_claims(self, instance_ids: Iterable[str], owner: str) -> int:
        """Release ``owner``'s claims on these instances (for actions that did not run)."""
        ids = sorted({str(i) for i in instance_ids})
        if not ids:
            return 0
        with self.engine.begin() as conn:
            result = conn.execute(
                delete(instance_claims).where(instance_claims.c.owner == owner, instance_claims.c.instance_id.in_(ids))
            )
            return int(result.rowcount)

    def claimed_by(self, owner: str) -> set[str]:
        """The instances ``owner`` holds unexpired claims on."""
        query = select(instance_claims.c.instance_id).where(
            instance_claims.c.owner == owner, instance_claims.c.expires_at > self.clock()
        )
        with self.engine.connect() as conn:
            return {str(i) for i in conn.execute(query).scalars()}

    def expire(self, owner: str) -> int:
        """End ``owner``'s claims now (an operator's escape hatch after a run is known dead)."""
        with self.engine.begin() as conn:
            stmt = update(instance_claims).where(instance_claims.c.owner == owner).values(expires_at=self.clock())
            return int(conn.execute(stmt).rowcount)


def touched(plan: Plan) -> dict[str, set[str]]:
    """action_id -> the instances a run must hold to carry the action out
    (:func:`forewarn.policy.touch.named`: those it touches, as the guardrails count them, and its subject)."""
    from forewarn.policy.touch import named

    return {a.action_id: set(named(a)) for a in plan.actions}


def claim_plan(store: LeaseStore, plan: Plan, owner: str, *, cycle: str, ttl: timedelta) -> Plan:
    """The plan keeping only the units of actions (:func:`forewarn.policy.touch.units`: a cordon or scale-back
    with the migrations off its instance) whose every instance this owner could claim, and the buffers for
    scale-backs while one of theirs is kept; the rest are noted.

    Claims granted for actions dropped on account of another instance are released again.
    """
    from forewarn.policy.touch import anchors, units

    actions = plan.actions
    needs = touched(plan)
    wanted = set().union(*needs.values()) if needs else set()
    granted = store.claim(wanted, owner, cycle=cycle, ttl=ttl)
    kept: set[int] = set()
    why: dict[int, str] = {}
    for unit in units(actions):
        missing = set().union(*(needs[actions[p].action_id] for p in unit)) - granted
        if not missing:
            kept.update(unit)
            continue
        held = f"instance claimed by another run ({', '.join(sorted(missing))})"
        lead = actions[next(p for p in unit if needs[actions[p].action_id] - granted)]
        for p in unit:
            with_ = f"dependency: goes with {lead.type.value} on {lead.instance_id}, {held}"
            why[p] = held if actions[p] is lead else with_
    for p, backs in anchors(actions).items():
        if p in kept and not kept.intersection(backs):
            kept.discard(p)
            why[p] = f"dependency: reserved for scale-back on {actions[backs[0]].instance_id}, dropped"
    notes = [f"dropped {actions[p].type.value} on {actions[p].instance_id}: {why[p]}" for p in sorted(why)]
    used = set().union(*(needs[actions[p].action_id] for p in kept)) if kept else set()
    store.release_claims(granted - used, owner)
    update = {"actions": [a for p, a in enumerate(actions) if p in kept], "notes": [*plan.notes, *notes]}
    return plan.model_copy(update=update)
