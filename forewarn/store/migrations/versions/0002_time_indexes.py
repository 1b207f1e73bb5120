"""indexes on the event times that incremental reads filter by

Materialize reads telemetry and errors by time range (``start < timestamp <= end``); without an index on
``timestamp`` every run scans the whole history. The telemetry one covers the columns materialize reads (and
the row id, which every SQLite and Postgres index carries), so the read is one range scan of the index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("telemetry_samples", schema=None) as batch_op:
        batch_op.create_index("ix_telemetry_time", ["timestamp", "instance_id", "metric", "value"], unique=False)
    with op.batch_alter_table("error_events", schema=None) as batch_op:
        batch_op.create_index("ix_error_events_time", ["timestamp"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("error_events", schema=None) as batch_op:
        batch_op.drop_index("ix_error_events_time")
    with op.batch_alter_table("telemetry_samples", schema=None) as batch_op:
        batch_op.drop_index("ix_telemetry_time")
