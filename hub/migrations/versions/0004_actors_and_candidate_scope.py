"""audit events name system actors and are indexed by request id; board clients may read
release candidates under their own scope

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CANDIDATES_READ = "releases:candidates:read"

_client = sa.table(
    "oauth_client",
    sa.column("client_id", sa.String),
    sa.column("principal_id", sa.String),
    sa.column("scopes", sa.String),
)
_principal = sa.table("principal", sa.column("id", sa.String), sa.column("roles", sa.String))


def upgrade() -> None:
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("actor_name", sa.String(length=100), nullable=True))
        batch_op.create_index(batch_op.f("ix_audit_event_request_id"), ["request_id"], unique=False)
    # Reading candidates needed only releases:read before; a board member's existing clients
    # keep what they could do, under the new board-only scope. Researchers' clients do not.
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(_client.c.client_id, _client.c.scopes, _principal.c.roles).join(
            _principal, _principal.c.id == _client.c.principal_id
        )
    ).all()
    for client_id, scopes, roles in rows:
        held = scopes.split()
        if "board" in roles.split() and "releases:read" in held and CANDIDATES_READ not in held:
            connection.execute(
                sa.update(_client)
                .where(_client.c.client_id == client_id)
                .values(scopes=" ".join(sorted([*held, CANDIDATES_READ])))
            )


def downgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.select(_client.c.client_id, _client.c.scopes)).all()
    for client_id, scopes in rows:
        held = scopes.split()
        if CANDIDATES_READ in held:
            connection.execute(
                sa.update(_client)
                .where(_client.c.client_id == client_id)
                .values(scopes=" ".join(s for s in held if s != CANDIDATES_READ))
            )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_event_request_id"))
        batch_op.drop_column("actor_name")
