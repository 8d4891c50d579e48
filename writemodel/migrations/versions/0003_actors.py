"""actors: idempotency keys scoped to an identity, the actor of every event

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 23:30:00.000000

Idempotency keys are ephemeral (a day at most) and were stored with no owner,
so none of them can be given a scope: the table is made anew, empty. A client
retrying across the upgrade sends its command again, as after an expired key.
Events stored before this revision keep NULL actors: nobody was recorded then.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def _keys(*key_columns: sa.Column) -> None:
    op.create_table('idempotency_keys',
    *key_columns,
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint(*(c.name for c in key_columns), name=op.f('pk_idempotency_keys'))
    )
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_idempotency_keys_expires_at'), ['expires_at'], unique=False)


def _drop_keys() -> None:
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_idempotency_keys_expires_at'))
    op.drop_table('idempotency_keys')


def upgrade() -> None:
    _drop_keys()
    _keys(
        sa.Column('scope', sa.String(length=64), nullable=False),
        sa.Column('key', sa.String(length=200), nullable=False),
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('actor_role', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('actor_subject', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('actor_subject')
        batch_op.drop_column('actor_role')
    _drop_keys()
    _keys(sa.Column('key', sa.String(length=200), nullable=False))
