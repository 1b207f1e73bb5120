"""Cycle state in the historical repository, shared by every run on every machine.

Terms:
    state row: one row of the ``cycle_state`` table per key (``bands``, ``guardrails``) holding a JSON value
        and a ``version`` that grows by one on every write.
    optimistic write: a run reads a row (value and version), works, and writes back only if the version is
        still the one it read (``UPDATE .. WHERE version = :read``, or ``INSERT .. ON CONFLICT DO NOTHING``
        for a new key). When another run wrote in between, the write changes no row: the run re-reads the
        newest value, folds its own changes into it (:data:`MERGES`) and tries again, so neither run's
        changes are lost and neither overwrites the other.

The table (:data:`forewarn.store.models.cycle_state`) is created by the Alembic migrations, when the
database is opened. Works on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from copy import deepcopy
from typing import Any

from pydantic import Field
from sqlalchemy import Engine, select, update
from sqlalchemy.dialects import postgresql, sqlite

from forewarn.errors import ConfigError, ForewarnError
from forewarn.schemas import Model, UtcDatetime, utcnow
from forewarn.store.models import cycle_state

Json = dict[str, Any]
Merge = Callable[[Json, Json, Json], Json]
"""``merge(base, mine, theirs)``: ``theirs`` (the newest stored value) with the changes ``mine`` made to ``base``."""


class StaleState(ForewarnError):
    """Another run wrote the state row since it was read (its version moved on)."""


class Versioned(Model):
    """A state row as read: its value and the version a write must still find."""

    key: str
    value: dict[str, Any] = Field(default_factory=dict)
    version: int = 0
    updated_at: UtcDatetime | None = None
    updated_by: str = ""


class StateStore:
    """Versioned JSON state rows on the repository's engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        dialect = engine.dialect.name
        if dialect not in ("postgresql", "sqlite"):
            raise ConfigError(f"cycle state needs PostgreSQL or SQLite, not {dialect}", field="database_url")
        self.engine = engine
        self._insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert

    def read(self, keys: Iterable[str]) -> dict[str, Versioned]:
        """The rows of ``keys`` that exist."""
        query = select(cycle_state).where(cycle_state.c.key.in_(sorted(set(keys))))
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return {row["key"]: Versioned.model_validate(dict(row)) for row in rows}

    def get(self, key: str) -> Versioned | None:
        return self.read([key]).get(key)

    def put(self, key: str, value: Json, *, expected: int, owner: str = "") -> Versioned:
        """Write ``value`` if the row is still at version ``expected`` (0: absent); raises :class:`StaleState`."""
        now = utcnow()
        row = {"value": value, "version": expected + 1, "updated_at": now, "updated_by": owner}
        if expected == 0:
            statement = self._insert(cycle_state).values(key=key, **row).on_conflict_do_nothing()
        else:
            statement = update(cycle_state).where(cycle_state.c.key == key, cycle_state.c.version == expected)
            statement = statement.values(**row)
        with self.engine.begin() as conn:
            written = conn.execute(statement.returning(cycle_state.c.version)).first()
        if written is None:
            raise StaleState(f"state '{key}' changed since version {expected} was read")
        return Versioned(key=key, value=value, version=expected + 1, updated_at=now, updated_by=owner)

    def save(
        self, key: str, base: Versioned | None, value: Json, *, merge: Merge, owner: str = "", attempts: int = 8
    ) -> Versioned:
        """Write ``value`` over ``base``; when another run wrote since, re-read and merge, then retry."""
        base = base or Versioned(key=key)
        for _ in range(attempts):
            try:
                return self.put(key, value, expected=base.version, owner=owner)
            except StaleState:
                theirs = self.get(key) or Versioned(key=key)
                value = merge(base.value, value, theirs.value)
                base = theirs
        raise StaleState(f"state '{key}' kept changing: gave up after {attempts} attempts")


def _records(rows: list[Json], key: str) -> dict[str, Json]:
    return {str(r[key]): r for r in rows}


def merge_bands(base: Json, mine: Json, theirs: Json) -> Json:
    """Band tracker: the instances this run changed (or forgot) take its value; the others keep theirs."""
    out = deepcopy(theirs) or {"states": {}}
    out["bands"] = mine.get("bands", out.get("bands"))
    states: dict[str, Any] = out.setdefault("states", {})
    before, after = base.get("states", {}), mine.get("states", {})
    for instance in set(before) | set(after):
        if before.get(instance) == after.get(instance):
            continue
        if instance in after:
            states[instance] = after[instance]
        else:
            states.pop(instance, None)
    return out


def merge_guardrails(base: Json, mine: Json, theirs: Json) -> Json:
    """Guardrail state: both runs' action records (by action id) and in-flight migrations, minus the ones
    this run dropped or finished; this run's high-risk count and breaker, unless an operator reset the breaker
    since this run read it."""
    out = deepcopy(theirs) or {}
    before, after = _records(base.get("history", []), "action_id"), _records(mine.get("history", []), "action_id")
    dropped = set(before) - set(after)
    history = [r for r in out.get("history", []) if str(r["action_id"]) not in dropped]
    known = {str(r["action_id"]) for r in history}
    history += [r for a, r in after.items() if a not in before and a not in known]
    out["history"] = sorted(history, key=lambda r: str(r.get("at", "")))
    flying_before, flying_after = set(base.get("in_flight_migrations", [])), mine.get("in_flight_migrations", [])
    finished = flying_before - set(flying_after)
    flying = [a for a in out.get("in_flight_migrations", []) if a not in finished]
    flying += [a for a in flying_after if a not in flying_before and a not in flying]
    out["in_flight_migrations"] = flying
    out["last_high_risk_count"] = mine.get("last_high_risk_count", out.get("last_high_risk_count"))
    resets = int((base.get("breaker") or {}).get("resets", 0))
    if "breaker" in mine and int(((theirs or {}).get("breaker") or {}).get("resets", 0)) <= resets:
        out["breaker"] = mine["breaker"]  # else an operator reset the breaker meanwhile: the reset stands
    return out


MERGES: dict[str, Merge] = {"bands": merge_bands, "guardrails": merge_guardrails}
"""How each key of the cycle state folds one run's changes into another's."""
