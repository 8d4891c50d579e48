"""feed_workers: the feed workers alive, so they share a read model's partitions

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 04:45:00.000000

The checkpoints table keeps its shape: partitions are rows named
`<read model>:<p>/<P>`, seeded by the worker from a read model's old row
(readmodel/checkpoints.py), so nothing here moves data.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('feed_workers',
    sa.Column('owner', sa.String(length=128), nullable=False),
    sa.Column('read_model', sa.String(length=64), nullable=False),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('owner', 'read_model', name=op.f('pk_feed_workers'))
    )


def downgrade() -> None:
    op.drop_table('feed_workers')
