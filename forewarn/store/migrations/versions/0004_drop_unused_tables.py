"""drop the tables nothing reads: model_versions and velocity_parameters

``model_versions`` was a second model registry beside the file registry (``forewarn.model.registry``), which
is the one the cycle serves from; ``velocity_parameters`` a copy of the limits the policy's guardrails set
(``Policy.velocity_limits()``), which the features read from the policy. No code wrote either since.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.drop_table("velocity_parameters")
    op.drop_table("model_versions")


def downgrade() -> None:
    """Downgrade schema (the tables come back empty)."""
    op.create_table(
        "model_versions",
        sa.Column("version", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )
    op.create_table(
        "velocity_parameters",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("limits", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
