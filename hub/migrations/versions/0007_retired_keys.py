"""retired keys: the keyring-state lock row and the ids of retired key-encryption keys

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    state = op.create_table(
        "keyring_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("retirements", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_keyring_state")),
    )
    op.bulk_insert(state, [{"id": 1, "retirements": 0, "changed_at": None}])
    op.create_table(
        "retired_key",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_retired_key")),
    )


def downgrade() -> None:
    op.drop_table("retired_key")
    op.drop_table("keyring_state")
