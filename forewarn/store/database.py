"""The database alone: an engine, sessions and migrations, without the history's data-frame code.

:class:`~forewarn.store.repository.Repository` builds on it; the journal needs no more than this, so
``forewarn plan list`` opens the database without importing pandas.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from forewarn.schemas import utcnow
from forewarn.store.engine import make_engine
from forewarn.store.models import SnapshotRow


class Database:
    """An engine and its sessions.

    Args:
        url: a SQLAlchemy URL (``sqlite:///path.db``, ``sqlite://`` in memory, ``postgresql://...``);
            default: the settings' database URL, a SQLite file under FOREWARN_HOME.
    """

    def __init__(self, url: str | None = None) -> None:
        if url is None:
            from forewarn.settings import get_settings

            url = get_settings().resolved_database_url()
        self.url = url
        self.engine = make_engine(self.url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> Session:
        return self.sessions()

    def create_all(self) -> None:
        """Create or upgrade the schema to the newest migration (a database at head costs one query)."""
        from forewarn.store.migrate import at_head, upgrade

        if not at_head(self.engine):
            upgrade(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    def save_snapshot(self, snapshot_id: str, *, adapter: str, plan_id: str | None = None) -> None:
        with self.session() as session, session.begin():
            session.add(SnapshotRow(snapshot_id=snapshot_id, adapter=adapter, plan_id=plan_id, created_at=utcnow()))

    def snapshot_of(self, plan_id: str) -> str | None:
        """The snapshot taken for a plan, if any (the latest when there are several)."""
        query = select(SnapshotRow.snapshot_id).where(SnapshotRow.plan_id == plan_id).order_by(SnapshotRow.id.desc())
        with self.session() as session:
            return session.scalars(query.limit(1)).first()
