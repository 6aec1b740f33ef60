"""golden runs with per-case results; prompt deployments (active, canary, retired, rolled back)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 01:16:49.772565
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "golden_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("set_sha256", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("prompt_versions", sa.JSON(), nullable=False),
        sa.Column("prompt_hashes", sa.JSON(), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("triggered_by", sa.String(length=320), nullable=False),
        sa.Column("cases_total", sa.Integer(), nullable=False),
        sa.Column("cases_passed", sa.Integer(), nullable=False),
        sa.Column("expectations_total", sa.Integer(), nullable=False),
        sa.Column("expectations_passed", sa.Integer(), nullable=False),
        sa.Column("sentence_support_rate", sa.Float(), nullable=True),
        sa.Column("paragraph_verification_rate", sa.Float(), nullable=True),
        sa.Column("false_supports", sa.Integer(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("failing_cases", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("golden_runs", schema=None) as batch_op:
        batch_op.create_index("ix_golden_started", ["started_at"], unique=False)

    op.create_table(
        "golden_case_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.String(length=100), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("paragraph_text", sa.Text(), nullable=False),
        sa.Column("sentences", sa.JSON(), nullable=False),
        sa.Column("expectations", sa.JSON(), nullable=False),
        sa.Column("false_supports", sa.Integer(), nullable=False),
        sa.Column("sentence_support_rate", sa.Float(), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("trace_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["golden_runs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "case_id"),
    )
    with op.batch_alter_table("golden_case_results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_golden_case_results_run_id"), ["run_id"], unique=False)

    op.create_table(
        "prompt_deployments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agent", sa.String(length=32), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("canary_share", sa.Float(), nullable=True),
        sa.Column("golden_run_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["golden_run_id"],
            ["golden_runs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("prompt_deployments", schema=None) as batch_op:
        batch_op.create_index("ix_deploy_agent_status", ["agent", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("prompt_deployments", schema=None) as batch_op:
        batch_op.drop_index("ix_deploy_agent_status")

    op.drop_table("prompt_deployments")
    with op.batch_alter_table("golden_case_results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_golden_case_results_run_id"))

    op.drop_table("golden_case_results")
    with op.batch_alter_table("golden_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_golden_started")

    op.drop_table("golden_runs")
