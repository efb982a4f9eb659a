"""uploads record the whole file's row count and the rows the partner's toolkit refused locally

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("upload") as batch:
        batch.add_column(sa.Column("file_rows_total", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("rows_rejected_locally", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("local_rejections", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("upload") as batch:
        batch.drop_column("local_rejections")
        batch.drop_column("rows_rejected_locally")
        batch.drop_column("file_rows_total")
