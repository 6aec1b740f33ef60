"""trajectories (sealed content), routing config history, alerts, false support reports; cache and tool calls sealed

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 05:33:58.068530
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alert_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('rule', sa.String(length=48), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('fired_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('alert_events', schema=None) as batch_op:
        batch_op.create_index('ix_alertev_tenant_fired', ['tenant_id', 'fired_at'], unique=False)
        batch_op.create_index('ix_alertev_tenant_rule_state', ['tenant_id', 'rule', 'state'], unique=False)

    op.create_table('alert_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('rule', sa.String(length=48), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'rule')
    )
    op.create_table('routing_configs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'version')
    )
    op.create_table('trajectories',
    sa.Column('trace_id', sa.String(length=64), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('paragraph_id', sa.Integer(), nullable=True),
    sa.Column('manuscript_id', sa.Integer(), nullable=True),
    sa.Column('document_id', sa.Integer(), nullable=True),
    sa.Column('version_id', sa.Integer(), nullable=True),
    sa.Column('calls', sa.Integer(), nullable=False),
    sa.Column('errors', sa.Integer(), nullable=False),
    sa.Column('input_tokens', sa.Integer(), nullable=False),
    sa.Column('output_tokens', sa.Integer(), nullable=False),
    sa.Column('cost_usd', sa.Numeric(precision=14, scale=8), nullable=True),
    sa.Column('error_class', sa.String(length=64), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('duration_ms', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('trace_id')
    )
    with op.batch_alter_table('trajectories', schema=None) as batch_op:
        batch_op.create_index('ix_traj_tenant_paragraph', ['tenant_id', 'paragraph_id'], unique=False)
        batch_op.create_index('ix_traj_tenant_started', ['tenant_id', 'started_at'], unique=False)
        batch_op.create_index('ix_traj_tenant_status_started', ['tenant_id', 'status', 'started_at'], unique=False)

    op.create_table('trajectory_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('trace_id', sa.String(length=64), nullable=False),
    sa.Column('span_id', sa.String(length=32), nullable=False),
    sa.Column('parent_span_id', sa.String(length=32), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('agent', sa.String(length=32), nullable=True),
    sa.Column('provider', sa.String(length=32), nullable=True),
    sa.Column('model', sa.String(length=128), nullable=True),
    sa.Column('prompt_version', sa.String(length=32), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error_class', sa.String(length=64), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('duration_ms', sa.Float(), nullable=False),
    sa.Column('input_tokens', sa.Integer(), nullable=False),
    sa.Column('output_tokens', sa.Integer(), nullable=False),
    sa.Column('cost_usd', sa.Numeric(precision=14, scale=8), nullable=True),
    sa.Column('usage_event_id', sa.Integer(), nullable=True),
    sa.Column('attributes', sa.JSON(), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=True),
    sa.Column('key_id', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('trajectory_events', schema=None) as batch_op:
        batch_op.create_index('ix_trajev_key', ['key_id'], unique=False)
        batch_op.create_index('ix_trajev_tenant_agent_started', ['tenant_id', 'agent', 'started_at'], unique=False)
        batch_op.create_index('ix_trajev_tenant_started', ['tenant_id', 'started_at'], unique=False)
        batch_op.create_index('ix_trajev_trace_started', ['trace_id', 'started_at'], unique=False)

    op.create_table('false_support_reports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('sentence_check_id', sa.Integer(), nullable=True),
    sa.Column('paragraph_id', sa.Integer(), nullable=True),
    sa.Column('trace_id', sa.String(length=64), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('reported_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['reported_by'], ['users.id'], ),
    sa.ForeignKeyConstraint(['sentence_check_id'], ['sentence_checks.id'], ),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('false_support_reports', schema=None) as batch_op:
        batch_op.create_index('ix_fsr_tenant_created', ['tenant_id', 'created_at'], unique=False)

    # Cached answers and tool results were stored in the clear; from here on they are sealed
    # (core.crypto). A migration has no key, so the plaintext ones are dropped: the cache refills
    # itself, and the tool calls were a debugging record (their runs' paragraphs are untouched).
    op.execute("DELETE FROM llm_cache_entries")
    op.execute("DELETE FROM llm_tool_calls")
    with op.batch_alter_table('llm_cache_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content', sa.LargeBinary(), nullable=False))
        batch_op.add_column(sa.Column('key_id', sa.String(length=64), nullable=False))
        batch_op.drop_column('tool_calls')
        batch_op.drop_column('output')

    with op.batch_alter_table('llm_tool_calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('results', sa.Integer(), nullable=False))
        batch_op.add_column(sa.Column('content', sa.LargeBinary(), nullable=False))
        batch_op.add_column(sa.Column('key_id', sa.String(length=64), nullable=False))
        batch_op.drop_column('arguments')
        batch_op.drop_column('result')

    with op.batch_alter_table('llm_usage_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('routing_score', sa.Float(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('llm_usage_events', schema=None) as batch_op:
        batch_op.drop_column('routing_score')

    op.execute("DELETE FROM llm_cache_entries")
    op.execute("DELETE FROM llm_tool_calls")
    with op.batch_alter_table('llm_tool_calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('result', sa.JSON(), nullable=False))
        batch_op.add_column(sa.Column('arguments', sa.JSON(), nullable=False))
        batch_op.drop_column('key_id')
        batch_op.drop_column('content')
        batch_op.drop_column('results')

    with op.batch_alter_table('llm_cache_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('output', sa.JSON(), nullable=False))
        batch_op.add_column(sa.Column('tool_calls', sa.JSON(), nullable=False))
        batch_op.drop_column('key_id')
        batch_op.drop_column('content')

    with op.batch_alter_table('false_support_reports', schema=None) as batch_op:
        batch_op.drop_index('ix_fsr_tenant_created')

    op.drop_table('false_support_reports')
    with op.batch_alter_table('trajectory_events', schema=None) as batch_op:
        batch_op.drop_index('ix_trajev_trace_started')
        batch_op.drop_index('ix_trajev_tenant_started')
        batch_op.drop_index('ix_trajev_tenant_agent_started')
        batch_op.drop_index('ix_trajev_key')

    op.drop_table('trajectory_events')
    with op.batch_alter_table('trajectories', schema=None) as batch_op:
        batch_op.drop_index('ix_traj_tenant_status_started')
        batch_op.drop_index('ix_traj_tenant_started')
        batch_op.drop_index('ix_traj_tenant_paragraph')

    op.drop_table('trajectories')
    op.drop_table('routing_configs')
    op.drop_table('alert_rules')
    with op.batch_alter_table('alert_events', schema=None) as batch_op:
        batch_op.drop_index('ix_alertev_tenant_rule_state')
        batch_op.drop_index('ix_alertev_tenant_fired')

    op.drop_table('alert_events')
