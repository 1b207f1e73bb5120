"""Schema migrations (Alembic). ``upgrade(url)`` brings any database to the newest revision.

The migration scripts live in ``forewarn/store/migrations``; a new one is made with
``alembic -c <config naming that folder> revision --autogenerate`` against a database at head.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


_REVISION = re.compile(r'^(down_revision|revision)\b[^=]*=\s*"([^"]*)"', re.MULTILINE)


def file_head() -> str | None:
    """The newest revision, read from the scripts' ``revision``/``down_revision`` lines without Alembic."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        for key, value in _REVISION.findall(script.read_text(encoding="utf-8")):
            (revisions if key == "revision" else parents).add(value)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def at_head(engine: Engine) -> bool:
    """Whether the database is already at the newest revision (one query; Alembic is not imported)."""
    head = file_head()
    if head is None:
        return False
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
    except SQLAlchemyError:
        return False


UPGRADE_LOCK = 0x666F7265
"""The PostgreSQL advisory lock an upgrade holds, so processes opening one database at once upgrade it in turn
(the later ones find it at the newest revision and do nothing); SQLite's write lock does the same there."""


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> None:
    """Migrate the database at ``url_or_engine`` to ``revision`` (default: the newest), in one transaction."""
    if isinstance(url_or_engine, str):
        from forewarn.store.engine import make_engine

        engine = make_engine(url_or_engine)
        try:
            upgrade(engine, revision)
        finally:
            engine.dispose()
        return
    from alembic import command

    config = alembic_config()
    with url_or_engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
