"""dashboard indexes: covering (tenant_id, created_at) on usage events; versions by tenant and time; checks by tenant and version

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 06:00:00.000000

The Costs page aggregates a tenant's usage events over a window. On PostgreSQL the
(tenant_id, created_at) index carries every column those aggregates read (INCLUDE), so they
are answered by index-only scans instead of visiting heap pages that interleave all tenants.
SQLite has no INCLUDE: there the index stays a plain (tenant_id, created_at).

Quality figures read the paragraph versions of a window (tenant_id, created_at) and their
sentence checks from the window's first version on (tenant_id, version_id, covering verdict and
failure mode on PostgreSQL).
"""

from __future__ import annotations

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

USAGE_COVERED = [
    'agent', 'provider', 'model', 'prompt_version', 'input_tokens', 'output_tokens', 'cost_usd',
    'latency_ms', 'cache_hit', 'error_class', 'trace_id', 'paragraph_id',
]


def upgrade() -> None:
    with op.batch_alter_table('paragraph_versions', schema=None) as batch_op:
        batch_op.create_index('ix_pv_tenant_created', ['tenant_id', 'created_at'], unique=False)
    op.create_index(
        'ix_sc_tenant_version', 'sentence_checks', ['tenant_id', 'version_id'],
        unique=False, postgresql_include=['verdict', 'failure_mode'],
    )
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_index('ix_usage_tenant_created', table_name='llm_usage_events')
        op.create_index(
            'ix_usage_tenant_created', 'llm_usage_events', ['tenant_id', 'created_at'],
            unique=False, postgresql_include=USAGE_COVERED,
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_index('ix_usage_tenant_created', table_name='llm_usage_events')
        op.create_index('ix_usage_tenant_created', 'llm_usage_events', ['tenant_id', 'created_at'], unique=False)
    op.drop_index('ix_sc_tenant_version', table_name='sentence_checks')
    with op.batch_alter_table('paragraph_versions', schema=None) as batch_op:
        batch_op.drop_index('ix_pv_tenant_created')
