"""tenant budgets: a workspace's own token budgets over the environment's defaults

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('tenant_budgets',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('librarian_chunk_tokens', sa.Integer(), nullable=True),
    sa.Column('writer_tokens', sa.Integer(), nullable=True),
    sa.Column('verifier_tokens', sa.Integer(), nullable=True),
    sa.Column('rewriter_tokens', sa.Integer(), nullable=True),
    sa.Column('paragraph_tokens', sa.Integer(), nullable=True),
    sa.Column('actor', sa.String(length=320), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('tenant_id')
    )


def downgrade() -> None:
    op.drop_table('tenant_budgets')
