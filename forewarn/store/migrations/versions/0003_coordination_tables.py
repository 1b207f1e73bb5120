"""the coordination tables (leases, instance claims, cycle state, watermarks) under Alembic

Earlier versions created these four tables themselves (``CREATE TABLE IF NOT EXISTS`` on first use), outside
the migrations. A database that has them keeps them and their rows: each table (and the claims' expiry index)
is created only when missing, with the columns the earlier code gave it, which never changed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLAIMS_INDEX = "ix_instance_claims_expires_at"
TABLES = ("leases", "instance_claims", "cycle_state", "watermarks")


def _create(name: str, *columns: sa.Column[object] | sa.Constraint) -> None:
    """Create table ``name`` unless the earlier code already did."""
    if not sa.inspect(op.get_bind()).has_table(name):
        op.create_table(name, *columns)


def upgrade() -> None:
    """Upgrade schema."""
    when = sa.DateTime(timezone=True)
    _create(
        "leases",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("acquired_at", when, nullable=False),
        sa.Column("expires_at", when, nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    _create(
        "instance_claims",
        sa.Column("instance_id", sa.String(length=200), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("cycle", sa.String(length=200), nullable=False),
        sa.Column("claimed_at", when, nullable=False),
        sa.Column("expires_at", when, nullable=False),
        sa.PrimaryKeyConstraint("instance_id"),
    )
    _create(
        "cycle_state",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", when, nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    _create(
        "watermarks",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("until", when, nullable=False),
        sa.Column("updated_at", when, nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    indexes = sa.inspect(op.get_bind()).get_indexes("instance_claims")
    if CLAIMS_INDEX not in {index["name"] for index in indexes}:
        op.create_index(CLAIMS_INDEX, "instance_claims", ["expires_at"], unique=False)


def downgrade() -> None:
    """Downgrade schema (the earlier version creates the tables again, empty, on first use)."""
    op.drop_index(CLAIMS_INDEX, table_name="instance_claims")
    for name in reversed(TABLES):
        op.drop_table(name)
