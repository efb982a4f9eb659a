"""privacy ledger, researcher allowances and stored query answers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "privacy_ledger",
        sa.Column("dataset", sa.String(length=64), nullable=False),
        sa.Column("spent_rho", sa.Text(), nullable=False),
        sa.Column("spent_delta", sa.Text(), nullable=False),
        sa.Column("charges", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("dataset", name=op.f("pk_privacy_ledger")),
    )
    op.create_table(
        "researcher_allowance",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dataset", sa.String(length=64), nullable=False),
        sa.Column("principal_id", sa.String(length=36), nullable=False),
        sa.Column("spent_rho", sa.Text(), nullable=False),
        sa.Column("spent_delta", sa.Text(), nullable=False),
        sa.Column("charges", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset"],
            ["privacy_ledger.dataset"],
            name=op.f("fk_researcher_allowance_dataset_privacy_ledger"),
        ),
        sa.ForeignKeyConstraint(
            ["principal_id"],
            ["principal.id"],
            name=op.f("fk_researcher_allowance_principal_id_principal"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_researcher_allowance")),
        sa.UniqueConstraint(
            "dataset", "principal_id", name=op.f("uq_researcher_allowance_dataset_principal_id")
        ),
    )
    with op.batch_alter_table("researcher_allowance", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_researcher_allowance_principal_id"), ["principal_id"], unique=False
        )

    op.create_table(
        "query_answer",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("dataset", sa.String(length=64), nullable=False),
        sa.Column("principal_id", sa.String(length=36), nullable=False),
        sa.Column("snapshot_id", sa.String(length=64), nullable=False),
        sa.Column("spec_sha256", sa.String(length=64), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=False),
        sa.Column("rho", sa.Text(), nullable=False),
        sa.Column("delta", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset"],
            ["privacy_ledger.dataset"],
            name=op.f("fk_query_answer_dataset_privacy_ledger"),
        ),
        sa.ForeignKeyConstraint(
            ["principal_id"], ["principal.id"], name=op.f("fk_query_answer_principal_id_principal")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_query_answer")),
        sa.UniqueConstraint(
            "principal_id",
            "dataset",
            "snapshot_id",
            "spec_sha256",
            name=op.f("uq_query_answer_principal_id_dataset_snapshot_id_spec_sha256"),
        ),
    )
    with op.batch_alter_table("query_answer", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_query_answer_principal_id"), ["principal_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("query_answer", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_query_answer_principal_id"))
    op.drop_table("query_answer")
    with op.batch_alter_table("researcher_allowance", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_researcher_allowance_principal_id"))
    op.drop_table("researcher_allowance")
    op.drop_table("privacy_ledger")
