"""audit events by subject: the board's pages read each proposal's and candidate's trail

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_audit_event_subject_id"), "audit_event", ["subject_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_event_subject_id"), table_name="audit_event")
