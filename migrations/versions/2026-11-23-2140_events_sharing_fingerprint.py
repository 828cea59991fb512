"""job events, shared history, task fingerprints and warm-start sources

Revision ID: 5e2b8c0d7f41
Revises: 4c1d7a9e2b30
Create Date: 2026-11-23 21:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5e2b8c0d7f41"
down_revision: str | None = "4c1d7a9e2b30"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("event_seq", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("shared", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("fingerprint", sa.JSON(), nullable=True))
        batch_op.create_index("ix_jobs_status", ["status"], unique=False)
    with op.batch_alter_table("trial_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source", sa.JSON(), nullable=True))
        batch_op.create_index("ix_trial_runs_job_optimizer", ["job_id", "optimizer"], unique=False)
    op.create_table(
        "job_events",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("trial_number", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_events_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "seq", name=op.f("pk_job_events")),
    )


def downgrade() -> None:
    op.drop_table("job_events")
    with op.batch_alter_table("trial_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_trial_runs_job_optimizer")
        batch_op.drop_column("source")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_status")
        batch_op.drop_column("fingerprint")
        batch_op.drop_column("shared")
        batch_op.drop_column("event_seq")
