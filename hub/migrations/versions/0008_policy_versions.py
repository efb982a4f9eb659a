"""release policy versions (the board's documents, digest, state, revision) and their votes;
query answers record whether they are measuring, answered or failed (measured after the charge)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "policy_version",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("proposed_by", sa.String(length=36), nullable=True),
        sa.Column("proposer_name", sa.String(length=100), nullable=True),
        sa.Column("rationale", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["proposed_by"],
            ["principal.id"],
            name=op.f("fk_policy_version_proposed_by_principal"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_version")),
        sa.UniqueConstraint("version", name=op.f("uq_policy_version_version")),
    )
    with op.batch_alter_table("policy_version") as batch:
        batch.create_index(batch.f("ix_policy_version_proposed_by"), ["proposed_by"], unique=False)
        batch.create_index(
            "uq_policy_version_active",
            ["state"],
            unique=True,
            sqlite_where=sa.text("state = 'active'"),
            postgresql_where=sa.text("state = 'active'"),
        )
    op.create_table(
        "policy_vote",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("policy_version_id", sa.String(length=36), nullable=False),
        sa.Column("member_id", sa.String(length=36), nullable=False),
        sa.Column("decision", sa.String(length=24), nullable=False),
        sa.Column("reason_code", sa.String(length=32), nullable=False),
        sa.Column("remark", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["principal.id"], name=op.f("fk_policy_vote_member_id_principal")
        ),
        sa.ForeignKeyConstraint(
            ["policy_version_id"],
            ["policy_version.id"],
            name=op.f("fk_policy_vote_policy_version_id_policy_version"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_vote")),
    )
    with op.batch_alter_table("policy_vote") as batch:
        batch.create_index(
            batch.f("ix_policy_vote_policy_version_id"), ["policy_version_id"], unique=False
        )
        batch.create_index(
            "uq_policy_vote_one_per_member",
            ["policy_version_id", "member_id"],
            unique=True,
            sqlite_where=sa.text("decision != 'comment'"),
            postgresql_where=sa.text("decision != 'comment'"),
        )
    with op.batch_alter_table("query_answer") as batch:
        batch.add_column(
            sa.Column("state", sa.String(length=16), server_default="answered", nullable=False)
        )
        batch.add_column(sa.Column("charged_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("error", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("query_answer") as batch:
        batch.drop_column("error")
        batch.drop_column("charged_at")
        batch.drop_column("state")
    with op.batch_alter_table("policy_vote") as batch:
        batch.drop_index(
            "uq_policy_vote_one_per_member",
            sqlite_where=sa.text("decision != 'comment'"),
            postgresql_where=sa.text("decision != 'comment'"),
        )
        batch.drop_index(batch.f("ix_policy_vote_policy_version_id"))
    op.drop_table("policy_vote")
    with op.batch_alter_table("policy_version") as batch:
        batch.drop_index(
            "uq_policy_version_active",
            sqlite_where=sa.text("state = 'active'"),
            postgresql_where=sa.text("state = 'active'"),
        )
        batch.drop_index(batch.f("ix_policy_version_proposed_by"))
    op.drop_table("policy_version")
