"""uploaded datasets: a tenant's parsed uploads and their meta-features

Revision ID: 3b812a8d489d
Revises: ee36c8396f2f
Create Date: 2026-11-23 19:37:24.312681
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3b812a8d489d"
down_revision: str | None = "ee36c8396f2f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "uploaded_datasets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("filename", sa.String(length=256), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("target", sa.String(length=256), nullable=True),
        sa.Column("task_type", sa.String(length=32), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("n_examples", sa.Integer(), nullable=False),
        sa.Column("n_features", sa.Integer(), nullable=False),
        sa.Column("n_classes", sa.Integer(), nullable=True),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "modality IN ('tabular','image')", name=op.f("ck_uploaded_datasets_modality_enum")
        ),
        sa.CheckConstraint(
            "task_type IN ('classification','regression')",
            name=op.f("ck_uploaded_datasets_task_type_enum"),
        ),
        sa.CheckConstraint("n_examples > 0", name=op.f("ck_uploaded_datasets_n_examples_positive")),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_uploaded_datasets_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_uploaded_datasets")),
    )
    with op.batch_alter_table("uploaded_datasets", schema=None) as batch_op:
        batch_op.create_index("ix_uploaded_datasets_sha256", ["sha256"], unique=False)
        batch_op.create_index(
            "ix_uploaded_datasets_tenant_created", ["tenant_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("uploaded_datasets", schema=None) as batch_op:
        batch_op.drop_index("ix_uploaded_datasets_tenant_created")
        batch_op.drop_index("ix_uploaded_datasets_sha256")
    op.drop_table("uploaded_datasets")
