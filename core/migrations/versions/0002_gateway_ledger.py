"""gateway ledger

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:10:39.652235
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "circuit_breakers",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("probe_trace_id", sa.String(length=64), nullable=True),
        sa.Column("probe_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_total", sa.Integer(), nullable=False),
        sa.Column("window_failures", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "control_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("control", sa.String(length=64), nullable=False),
        sa.Column("from_state", sa.String(length=16), nullable=True),
        sa.Column("to_state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("control_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_control_events_control"), ["control"], unique=False)

    op.create_table(
        "kill_switch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("engaged", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "llm_cache_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("agent", sa.String(length=32), nullable=False),
        sa.Column("prompt_version", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("input_hash", sa.String(length=64), nullable=False),
        sa.Column("output", sa.JSON(), nullable=False),
        sa.Column("tool_calls", sa.JSON(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "agent", "prompt_version", "model", "input_hash"),
    )
    op.create_table(
        "token_budgets",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("limit_tokens", sa.Integer(), nullable=False),
        sa.Column("reserved_tokens", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
        ),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "llm_tool_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("trace_id", sa.String(length=64), nullable=False),
        sa.Column("usage_event_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("arguments", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
        ),
        sa.ForeignKeyConstraint(
            ["usage_event_id"],
            ["llm_usage_events.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("llm_tool_calls", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_llm_tool_calls_trace_id"), ["trace_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_llm_tool_calls_usage_event_id"), ["usage_event_id"], unique=False)

    with op.batch_alter_table("llm_usage_events", schema=None) as batch_op:
        # Rows before this revision all came from the offline provider, which is free.
        batch_op.add_column(sa.Column("pricing", sa.String(length=16), nullable=False, server_default="free"))
        batch_op.add_column(sa.Column("attempts", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.alter_column("cost_usd", existing_type=sa.NUMERIC(precision=14, scale=8), nullable=True)
        batch_op.create_index("ix_usage_created", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("llm_usage_events", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_created")
        batch_op.alter_column("cost_usd", existing_type=sa.NUMERIC(precision=14, scale=8), nullable=False)
        batch_op.drop_column("attempts")
        batch_op.drop_column("pricing")

    with op.batch_alter_table("llm_tool_calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_llm_tool_calls_usage_event_id"))
        batch_op.drop_index(batch_op.f("ix_llm_tool_calls_trace_id"))

    op.drop_table("llm_tool_calls")
    op.drop_table("token_budgets")
    op.drop_table("llm_cache_entries")
    op.drop_table("kill_switch")
    with op.batch_alter_table("control_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_control_events_control"))

    op.drop_table("control_events")
    op.drop_table("circuit_breakers")
