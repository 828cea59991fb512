"""jobs: idempotency key with its request hash, and the reason a job stops early

Revision ID: 4c1d7a9e2b30
Revises: ee36c8396f2f
Create Date: 2026-11-23 19:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4c1d7a9e2b30"
down_revision: str | None = "3b812a8d489d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("request_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("stop_reason", sa.Text(), nullable=True))
        batch_op.create_index(
            "uq_jobs_tenant_idempotency_key", ["tenant_id", "idempotency_key"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("uq_jobs_tenant_idempotency_key")
        batch_op.drop_column("stop_reason")
        batch_op.drop_column("request_hash")
        batch_op.drop_column("idempotency_key")
