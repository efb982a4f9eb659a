"""releases: full candidates' policy and batch set, board votes, published releases, transparency

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("release_candidate") as batch:
        batch.add_column(sa.Column("policy_version", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("policy_digest", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("batch_ids", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("checks", sa.JSON(), nullable=True))
    op.create_table(
        "release_vote",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("motion", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=36), nullable=False),
        sa.Column("member_id", sa.String(length=36), nullable=False),
        sa.Column("decision", sa.String(length=32), nullable=False),
        sa.Column("reason_code", sa.String(length=32), nullable=False),
        sa.Column("remark", sa.Text(), nullable=False),
        sa.Column("counts", sa.Boolean(), nullable=False),
        sa.Column("cast_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["principal.id"], name=op.f("fk_release_vote_member_id_principal")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_release_vote")),
    )
    op.create_index(
        op.f("ix_release_vote_subject_id"), "release_vote", ["subject_id"], unique=False
    )
    op.create_index(
        "uq_release_vote_one_per_member",
        "release_vote",
        ["motion", "subject_id", "member_id"],
        unique=True,
        sqlite_where=sa.text("counts"),
        postgresql_where=sa.text("counts"),
    )
    op.create_table(
        "published_release",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("candidate_id", sa.String(length=36), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("policy_digest", sa.String(length=64), nullable=False),
        sa.Column("snapshot_id", sa.String(length=64), nullable=False),
        sa.Column("batch_ids", sa.JSON(), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("notes", sa.JSON(), nullable=False),
        sa.Column("tables", sa.JSON(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retracted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["candidate_id"],
            ["release_candidate.id"],
            name=op.f("fk_published_release_candidate_id_release_candidate"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_published_release")),
        sa.UniqueConstraint("candidate_id", name=op.f("uq_published_release_candidate_id")),
        sa.UniqueConstraint("version", name=op.f("uq_published_release_version")),
    )
    op.create_table(
        "transparency_entry",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("previous_hash", sa.String(length=64), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_transparency_entry")),
        sa.UniqueConstraint("kind", "source_id", name=op.f("uq_transparency_entry_kind_source_id")),
        sa.UniqueConstraint("previous_hash", name=op.f("uq_transparency_entry_previous_hash")),
    )


def downgrade() -> None:
    op.drop_table("transparency_entry")
    op.drop_table("published_release")
    op.drop_index("uq_release_vote_one_per_member", table_name="release_vote")
    op.drop_index(op.f("ix_release_vote_subject_id"), table_name="release_vote")
    op.drop_table("release_vote")
    with op.batch_alter_table("release_candidate") as batch:
        batch.drop_column("checks")
        batch.drop_column("batch_ids")
        batch.drop_column("policy_digest")
        batch.drop_column("policy_version")
