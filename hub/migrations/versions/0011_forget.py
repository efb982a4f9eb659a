"""uploads record the lawful basis they were sent under and how many records were forgotten;
forgotten cases are remembered by a digest of their pseudonym, so a repeated request is harmless

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("upload") as batch:
        batch.add_column(sa.Column("lawful_basis", sa.String(length=40), nullable=True))
        batch.add_column(
            sa.Column("rows_forgotten", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_table(
        "forgotten_case",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("pseudonym_sha256", sa.String(length=64), nullable=False),
        sa.Column("records_removed", sa.Integer(), nullable=False),
        sa.Column("forgotten_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
            name=op.f("fk_forgotten_case_organisation_id_organisation"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forgotten_case")),
        sa.UniqueConstraint(
            "organisation_id",
            "pseudonym_sha256",
            name=op.f("uq_forgotten_case_organisation_id_pseudonym_sha256"),
        ),
    )


def downgrade() -> None:
    op.drop_table("forgotten_case")
    with op.batch_alter_table("upload") as batch:
        batch.drop_column("rows_forgotten")
        batch.drop_column("lawful_basis")
