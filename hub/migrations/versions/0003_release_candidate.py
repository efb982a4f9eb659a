"""release candidates (DP synthetic data charged to the dataset's ledger)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "release_candidate",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("dataset", sa.String(length=64), nullable=False),
        sa.Column("snapshot_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("rho", sa.Text(), nullable=False),
        sa.Column("spend", sa.JSON(), nullable=True),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("artefacts", sa.JSON(), nullable=True),
        sa.Column("error", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"], ["principal.id"], name=op.f("fk_release_candidate_created_by_principal")
        ),
        sa.ForeignKeyConstraint(
            ["dataset"],
            ["privacy_ledger.dataset"],
            name=op.f("fk_release_candidate_dataset_privacy_ledger"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_release_candidate")),
    )


def downgrade() -> None:
    op.drop_table("release_candidate")
