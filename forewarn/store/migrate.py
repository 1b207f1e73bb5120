"""Schema migrations (Alembic). ``upgrade(url)`` brings any database to the newest revision.

The migration scripts live in ``forewarn/store/migrations``; a new one is made with
``alembic -c <config naming that folder> revision --autogenerate`` against a database at head.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> None:
    """Migrate the database at ``url_or_engine`` to ``revision`` (default: the newest)."""
    if isinstance(url_or_engine, str):
        from forewarn.store.engine import make_engine

        engine = make_engine(url_or_engine)
        try:
            upgrade(engine, revision)
        finally:
            engine.dispose()
        return
    config = alembic_config()
    with url_or_engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
