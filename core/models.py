"""The data model (SQLAlchemy 2.0). Every table of tenant data carries ``tenant_id``.

Paragraph versions and their sentence checks are immutable: once flushed, an update
raises ``ImmutableRecordError`` (see ``core.db``); a change is a new version.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, cast

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def table_of(model: type[Base]) -> Table:
    """A model's table, typed as one (for Core statements on the gateway's ledger)."""
    return cast(Table, model.__table__)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    redact_pii: Mapped[bool] = mapped_column(
        Boolean, default=False, doc="redact e-mail addresses and phone numbers before text leaves the machine"
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class User(Base):
    """An account. The e-mail address is the login name, unique across tenants (stored lower-case)."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "email"), Index("uq_users_email", "email", unique=True))

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32), default="researcher", doc="researcher ops prompt_engineer admin")
    password_hash: Mapped[str | None] = mapped_column(String(255), doc="argon2id; NULL: cannot log in")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, doc="consecutive failures since the last success")
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuthSession(Base):
    """A signed-in browser session: only the sha256 of its token is stored."""

    __tablename__ = "auth_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), doc="logout or revocation")


class LoginThrottle(Base):
    """Failed logins per login name (known or not), so guessing is slowed for names that do not exist too."""

    __tablename__ = "login_throttles"

    login: Mapped[str] = mapped_column(String(320), primary_key=True, doc="the e-mail as typed, lower-case")
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    blocked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Manuscript(Base):
    __tablename__ = "manuscripts"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    title: Mapped[str] = mapped_column(String(300))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("tenant_id", "manuscript_id", "sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    manuscript_id: Mapped[int] = mapped_column(ForeignKey("manuscripts.id"), index=True)
    filename: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    page_count: Mapped[int] = mapped_column(Integer)
    title: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    chunks: Mapped[list[Chunk]] = relationship(back_populates="document", order_by="Chunk.ordinal")


class Chunk(Base):
    __tablename__ = "chunks"
    __table_args__ = (UniqueConstraint("document_id", "ordinal"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id"), index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    page: Mapped[int] = mapped_column(Integer, doc="1-based page the chunk starts on")
    page_end: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    token_count: Mapped[int] = mapped_column(Integer)
    # Character offsets where each page starts inside ``text`` ([[offset, page], ...]), so a
    # quote found in the chunk can be anchored to the page it is printed on.
    page_offsets: Mapped[list[Any]] = mapped_column(JSON, default=list)

    document: Mapped[Document] = relationship(back_populates="chunks")


class Fact(Base):
    __tablename__ = "facts"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    manuscript_id: Mapped[int] = mapped_column(ForeignKey("manuscripts.id"), index=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id"), index=True)
    chunk_id: Mapped[int] = mapped_column(ForeignKey("chunks.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    quote: Mapped[str] = mapped_column(Text)
    quote_start: Mapped[int] = mapped_column(Integer, doc="offset of the quote inside its chunk")
    page: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @property
    def ref(self) -> str:
        """The id a sentence cites, e.g. ``F12``."""
        return f"F{self.id}"


class FactRejection(Base):
    """A Librarian fact refused because its quote is not a verbatim span of the chunk."""

    __tablename__ = "fact_rejections"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    chunk_id: Mapped[int] = mapped_column(ForeignKey("chunks.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    quote: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(String(200))
    trace_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Paragraph(Base):
    __tablename__ = "paragraphs"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    manuscript_id: Mapped[int] = mapped_column(ForeignKey("manuscripts.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    brief: Mapped[str] = mapped_column(Text)
    accepted_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("paragraph_versions.id", use_alter=True, name="fk_paragraph_accepted_version")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ParagraphVersion(Base):
    __tablename__ = "paragraph_versions"
    __table_args__ = (
        UniqueConstraint("paragraph_id", "number"),
        Index("ix_pv_tenant_created", "tenant_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    paragraph_id: Mapped[int] = mapped_column(ForeignKey("paragraphs.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32), doc="verified | needs_review")
    origin: Mapped[str] = mapped_column(String(32), doc="drafted | edited | reverified")
    trace_id: Mapped[str | None] = mapped_column(String(64), index=True)
    prompt_versions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    provider: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    sentences: Mapped[list[SentenceCheck]] = relationship(order_by="SentenceCheck.ordinal")

    @property
    def verified(self) -> bool:
        return self.status == "verified"


class SentenceCheck(Base):
    __tablename__ = "sentence_checks"
    __table_args__ = (
        UniqueConstraint("version_id", "ordinal"),
        Index("ix_sc_tenant_version", "tenant_id", "version_id", postgresql_include=["verdict", "failure_mode"]),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("paragraph_versions.id"), index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    cites: Mapped[list[Any]] = mapped_column(JSON, default=list)
    verdict: Mapped[str] = mapped_column(String(16), doc="supported | unsupported")
    failure_mode: Mapped[str | None] = mapped_column(String(48))
    reason: Mapped[str] = mapped_column(Text, default="")
    rewrite_rounds: Mapped[int] = mapped_column(Integer, default=0)
    needs_review: Mapped[bool] = mapped_column(Boolean, default=False)
    original_text: Mapped[str | None] = mapped_column(Text, doc="the Writer's text when the Rewriter changed it")


class LlmUsageEvent(Base):
    """One agent call through the gateway (retries included), or one cache hit, or one refusal."""

    __tablename__ = "llm_usage_events"
    __table_args__ = (
        # Covering on PostgreSQL (migration 0005): the Costs page aggregates from the index alone.
        Index(
            "ix_usage_tenant_created",
            "tenant_id",
            "created_at",
            postgresql_include=[
                "agent",
                "provider",
                "model",
                "prompt_version",
                "input_tokens",
                "output_tokens",
                "cost_usd",
                "latency_ms",
                "cache_hit",
                "error_class",
                "trace_id",
                "paragraph_id",
            ],
        ),
        Index("ix_usage_trace", "trace_id"),
        Index("ix_usage_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    trace_id: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str | None] = mapped_column(String(36))
    paragraph_id: Mapped[int | None] = mapped_column(Integer)
    agent: Mapped[str] = mapped_column(String(32))
    provider: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(128))
    prompt_version: Mapped[str] = mapped_column(String(32))
    input_hash: Mapped[str] = mapped_column(String(64))
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    tokens_estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    cost_usd: Mapped[float | None] = mapped_column(Numeric(14, 8), doc="None when the model has no price")
    pricing: Mapped[str] = mapped_column(String(16), default="priced", doc="priced free unknown_model cache_hit")
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[list[Any]] = mapped_column(JSON, default=list, doc="[{failure_class, latency_ms, wait_s}]")
    cache_hit: Mapped[bool] = mapped_column(Boolean, default=False)
    error_class: Mapped[str | None] = mapped_column(String(64))
    routing_tier: Mapped[str | None] = mapped_column(String(32))
    routing_reason: Mapped[str | None] = mapped_column(String(200))
    routing_score: Mapped[float | None] = mapped_column(Float, doc="complexity score the router judged by")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LlmToolCall(Base):
    """A tool a model called during an agent call, with what it was given and what it got back."""

    __tablename__ = "llm_tool_calls"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    trace_id: Mapped[str] = mapped_column(String(64), index=True)
    usage_event_id: Mapped[int] = mapped_column(ForeignKey("llm_usage_events.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    results: Mapped[int] = mapped_column(Integer, default=0, doc="how many items the tool returned")
    content: Mapped[bytes] = mapped_column(LargeBinary, doc="sealed {arguments, result} (core.crypto)")
    key_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LlmCacheEntry(Base):
    """An agent answer, reusable only by the same tenant, agent, prompt version, model and input."""

    __tablename__ = "llm_cache_entries"
    __table_args__ = (UniqueConstraint("tenant_id", "agent", "prompt_version", "model", "input_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    agent: Mapped[str] = mapped_column(String(32))
    prompt_version: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(128))
    input_hash: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary, doc="sealed {output, tool_calls} (core.crypto)")
    key_id: Mapped[str] = mapped_column(String(64))
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    hits: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TokenBudgetRow(Base):
    """Tokens one unit of work (a paragraph run: its trace) may spend; reserved before each call."""

    __tablename__ = "token_budgets"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    limit_tokens: Mapped[int] = mapped_column(Integer)
    reserved_tokens: Mapped[int] = mapped_column(Integer, default=0, doc="spent plus held by calls in flight")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CircuitBreaker(Base):
    """Shared by every process: provider:<name>, verification, cost."""

    __tablename__ = "circuit_breakers"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default="closed", doc="closed open half_open")
    reason: Mapped[str] = mapped_column(Text, default="")
    opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    probe_trace_id: Mapped[str | None] = mapped_column(String(64), doc="the run allowed through while half-open")
    probe_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    window_started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    window_total: Mapped[int] = mapped_column(Integer, default=0)
    window_failures: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class KillSwitch(Base):
    """One row: while engaged, no generation starts and no model is called."""

    __tablename__ = "kill_switch"

    id: Mapped[int] = mapped_column(primary_key=True)
    engaged: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(200), default="")
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ControlEvent(Base):
    """Every state change of a breaker or the kill switch, with why and who."""

    __tablename__ = "control_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    control: Mapped[str] = mapped_column(String(64), index=True)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(200), default="system")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_tenant_created", "tenant_id", "created_at"),
        Index("ix_jobs_queue_state_created", "queue", "state", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    kind: Mapped[str] = mapped_column(String(32), doc="ingest | facts | draft | reverify")
    queue: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), doc="QUEUED RUNNING SUCCEEDED FAILED CANCELLED")
    stage: Mapped[str | None] = mapped_column(String(64))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    trace_id: Mapped[str] = mapped_column(String(64), index=True)
    rq_job_id: Mapped[str | None] = mapped_column(String(64))
    parent_job_id: Mapped[str | None] = mapped_column(String(36), doc="the job that queued this one (a chain)")
    attempt: Mapped[int] = mapped_column(Integer, default=0, doc="runs started; fences a stale runner out")
    max_attempts: Mapped[int] = mapped_column(Integer, default=2)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    transitions: Mapped[list[JobTransition]] = relationship(order_by="JobTransition.id")


class WorkerRecord(Base):
    """A process that runs jobs (an RQ worker, or the in-process executor of a web process)."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), doc="rq | in-process")
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[list[Any]] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(16), default="idle", doc="idle busy stopped")
    current_job_id: Mapped[str | None] = mapped_column(String(36))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JobTransition(Base):
    __tablename__ = "job_transitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Trajectory(Base):
    """One run (a paragraph drafted, a PDF ingested, an edit or re-check, a golden case): its totals.

    The row is keyed by the run's trace id; its spans are ``TrajectoryEvent`` rows. Everything
    here is metadata (queryable in the clear); content lives encrypted on the events.
    """

    __tablename__ = "trajectories"
    __table_args__ = (
        Index("ix_traj_tenant_started", "tenant_id", "started_at"),
        Index("ix_traj_tenant_status_started", "tenant_id", "status", "started_at"),
        Index("ix_traj_tenant_paragraph", "tenant_id", "paragraph_id"),
    )

    trace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    kind: Mapped[str] = mapped_column(String(32), doc="paragraph ingest edit reverify golden")
    status: Mapped[str] = mapped_column(String(16), default="running", doc="running ok error")
    paragraph_id: Mapped[int | None] = mapped_column(Integer)
    manuscript_id: Mapped[int | None] = mapped_column(Integer)
    document_id: Mapped[int | None] = mapped_column(Integer)
    version_id: Mapped[int | None] = mapped_column(Integer, doc="the paragraph version the run produced")
    calls: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float | None] = mapped_column(Numeric(14, 8))
    error_class: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[float | None] = mapped_column(Float)


class TrajectoryEvent(Base):
    """A span of a run: a stage, an agent call, one attempt, a tool call, a routing decision, a
    budget check, an error. Timings, tokens and cost in the clear; ``content`` (prompts, outputs,
    tool results) sealed with AES-256-GCM under ``key_id`` (see ``core.crypto``)."""

    __tablename__ = "trajectory_events"
    __table_args__ = (
        Index("ix_trajev_trace_started", "trace_id", "started_at"),
        Index("ix_trajev_tenant_started", "tenant_id", "started_at"),
        Index("ix_trajev_tenant_agent_started", "tenant_id", "agent", "started_at"),
        Index("ix_trajev_key", "key_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    trace_id: Mapped[str] = mapped_column(String(64))
    span_id: Mapped[str] = mapped_column(String(32))
    parent_span_id: Mapped[str | None] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16), doc="stage agent attempt tool routing budget cache error")
    name: Mapped[str] = mapped_column(String(100))
    agent: Mapped[str | None] = mapped_column(String(32))
    provider: Mapped[str | None] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(128))
    prompt_version: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="ok", doc="ok error")
    error_class: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    duration_ms: Mapped[float] = mapped_column(Float, default=0.0)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float | None] = mapped_column(Numeric(14, 8))
    usage_event_id: Mapped[int | None] = mapped_column(Integer)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, doc="metadata only, never content")
    content: Mapped[bytes | None] = mapped_column(LargeBinary, doc="nonce || AES-256-GCM ciphertext")
    key_id: Mapped[str | None] = mapped_column(String(64))


class RoutingConfig(Base):
    """A tenant's routing configuration; never updated, each change is the next version (history)."""

    __tablename__ = "routing_configs"
    __table_args__ = (UniqueConstraint("tenant_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    version: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    note: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AlertRule(Base):
    """A tenant's setting of one alert rule (the rules themselves are code: ``core.alerts``)."""

    __tablename__ = "alert_rules"
    __table_args__ = (UniqueConstraint("tenant_id", "rule"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    rule: Mapped[str] = mapped_column(String(48))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    threshold: Mapped[float] = mapped_column(Float)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    actor: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AlertEvent(Base):
    """A rule crossing its threshold: firing until the value comes back, then resolved."""

    __tablename__ = "alert_events"
    __table_args__ = (
        Index("ix_alertev_tenant_fired", "tenant_id", "fired_at"),
        Index("ix_alertev_tenant_rule_state", "tenant_id", "rule", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    rule: Mapped[str] = mapped_column(String(48))
    state: Mapped[str] = mapped_column(String(16), default="firing", doc="firing resolved")
    severity: Mapped[str] = mapped_column(String(16), default="warning", doc="warning critical")
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text)
    fired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class FalseSupportReport(Base):
    """A sentence shown as supported that is not: reported by a researcher or found by a golden run."""

    __tablename__ = "false_support_reports"
    __table_args__ = (Index("ix_fsr_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    sentence_check_id: Mapped[int | None] = mapped_column(ForeignKey("sentence_checks.id"))
    paragraph_id: Mapped[int | None] = mapped_column(Integer)
    trace_id: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16), default="researcher", doc="researcher golden")
    note: Mapped[str] = mapped_column(Text, default="")
    reported_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEntry(Base):
    """One link of the hash-chained audit log: append-only, ``hash`` covers every other column and
    ``prev_hash`` (the previous entry's hash), so changing or removing any row breaks the chain."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_type_at", "event_type", "at"),
        Index("ix_audit_tenant_at", "tenant_id", "at"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False, doc="1, 2, 3, ... no gaps")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    tenant_id: Mapped[int | None] = mapped_column(Integer, doc="NULL for workbench-wide events (kill switch)")
    actor_user_id: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(320), doc="who, as a person reads it (name and e-mail, or cli)")
    event_type: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(300), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain's last link (one row): appends lock it, so concurrent writers never fork the chain,
    and ``audit verify`` notices a removed tail."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    hash: Mapped[str] = mapped_column(String(64))


class PolicyViolation(Base):
    """A policy rule that matched an agent's input or output; ``action`` says what the gateway did."""

    __tablename__ = "policy_violations"
    __table_args__ = (Index("ix_policy_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    trace_id: Mapped[str | None] = mapped_column(String(64), index=True)
    paragraph_id: Mapped[int | None] = mapped_column(Integer)
    agent: Mapped[str] = mapped_column(String(32))
    direction: Mapped[str] = mapped_column(String(8), doc="input output")
    rule: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16), doc="low medium severe")
    action: Mapped[str] = mapped_column(String(16), doc="flagged redacted blocked")
    location: Mapped[str] = mapped_column(String(200), default="", doc="where: chunk, fact or sentence id")
    detail: Mapped[str] = mapped_column(Text, default="", doc="what matched, described; never the tenant's text")
    excerpt_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RegisteredModel(Base):
    """The model registry: a model may be routed to only while it is registered and active."""

    __tablename__ = "model_registry"

    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(String(120), unique=True)
    provider: Mapped[str] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(String(64), default="")
    risk_tier: Mapped[str] = mapped_column(String(16), default="medium", doc="low medium high")
    input_per_mtok: Mapped[float | None] = mapped_column(Float, doc="USD per 1M input tokens")
    output_per_mtok: Mapped[float | None] = mapped_column(Float)
    cached_input_per_mtok: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="active", doc="active deprecated retired")
    removal_date: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), doc="deprecated: retired from")
    governance: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, doc="flags: pii_allowed, eu_hosted, ...")
    notes: Mapped[str] = mapped_column(Text, default="")
    updated_by: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class GoldenRun(Base):
    """One run of the golden set through the real pipeline, under the prompt versions and models named.

    Workbench-wide (its manuscripts live in the golden tenant): it is what gates a prompt release.
    """

    __tablename__ = "golden_runs"
    __table_args__ = (Index("ix_golden_started", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="running", doc="running passed failed error")
    set_sha256: Mapped[str] = mapped_column(String(64), doc="hash of the golden set's files: which cases were run")
    provider: Mapped[str] = mapped_column(String(32))
    prompt_versions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, doc="agent -> version")
    prompt_hashes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, doc="agent -> sha256 of the file")
    models: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, doc="agent -> model actually used")
    label: Mapped[str] = mapped_column(String(200), default="")
    triggered_by: Mapped[str] = mapped_column(String(320), default="")
    cases_total: Mapped[int] = mapped_column(Integer, default=0)
    cases_passed: Mapped[int] = mapped_column(Integer, default=0)
    expectations_total: Mapped[int] = mapped_column(Integer, default=0)
    expectations_passed: Mapped[int] = mapped_column(Integer, default=0)
    sentence_support_rate: Mapped[float | None] = mapped_column(Float)
    paragraph_verification_rate: Mapped[float | None] = mapped_column(Float)
    false_supports: Mapped[int] = mapped_column(Integer, default=0)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float | None] = mapped_column(Float, doc="NULL when any call was unpriced")
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    failing_cases: Mapped[list[Any]] = mapped_column(JSON, default=list)
    error: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class GoldenCaseResult(Base):
    """One case of a golden run: the paragraph produced, its sentence verdicts and each expectation."""

    __tablename__ = "golden_case_results"
    __table_args__ = (UniqueConstraint("run_id", "case_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("golden_runs.id"), index=True)
    case_id: Mapped[str] = mapped_column(String(100))
    passed: Mapped[bool] = mapped_column(Boolean)
    verified: Mapped[bool] = mapped_column(Boolean, doc="every sentence supported")
    paragraph_text: Mapped[str] = mapped_column(Text, default="")
    sentences: Mapped[list[Any]] = mapped_column(JSON, default=list, doc="[{text, cites, verdict, failure_mode}]")
    expectations: Mapped[list[Any]] = mapped_column(JSON, default=list, doc="[{kind, target, passed, detail}]")
    false_supports: Mapped[int] = mapped_column(Integer, default=0)
    sentence_support_rate: Mapped[float | None] = mapped_column(Float)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    trace_id: Mapped[str | None] = mapped_column(String(64))


class PromptDeployment(Base):
    """Which prompt version serves an agent: one ``active`` row per agent, at most one ``canary``.

    Rows are never deleted: a promotion, rollback or retirement ends one row (``ended_at``) and
    starts another, so the history of what served when stays readable.
    """

    __tablename__ = "prompt_deployments"
    __table_args__ = (Index("ix_deploy_agent_status", "agent", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    agent: Mapped[str] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), doc="active canary retired rolled_back")
    canary_share: Mapped[float | None] = mapped_column(Float, doc="share of paragraphs (0..1) while canary")
    golden_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("golden_runs.id"), doc="the passing run that allowed it"
    )
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_reason: Mapped[str] = mapped_column(Text, default="")


class ApiToken(Base):
    """A bearer token for the ops API: it acts as its user, in its user's tenant, with a role no higher
    than the user's. Only the sha256 of the secret is stored; the secret is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16), doc="the first characters, to recognise a token in lists")
    name: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    role: Mapped[str] = mapped_column(String(32), doc="the role the token acts with")
    rate_per_minute: Mapped[int] = mapped_column(Integer, default=120)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Incident(Base):
    """An incident from ``incident freeze`` to ``incident thaw``: who froze generation and why, the
    evidence bundle written at the freeze, and the jobs the freeze stopped (the thaw queues them again,
    so nothing a user asked for is lost). Workbench-wide, like the kill switch it throws."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(String(16), doc="frozen thawed")
    reason: Mapped[str] = mapped_column(Text)
    opened_by: Mapped[str] = mapped_column(String(320))
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    bundle_path: Mapped[str] = mapped_column(Text, default="")
    bundle_sha256: Mapped[str] = mapped_column(String(64), default="")
    stopped_jobs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    """[{"job_id", "tenant_id", "trace_id", "kind"}] of the jobs the freeze stopped."""
    thawed_by: Mapped[str] = mapped_column(String(320), default="")
    thawed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    thaw_note: Mapped[str] = mapped_column(Text, default="")


class Drill(Base):
    """One run of an operational drill (``python -m core drill kill-switch``): when, by whom, whether
    every step held, and what each step saw. The go-live criteria read the newest passing one."""

    __tablename__ = "drills"
    __table_args__ = (Index("ix_drills_kind_started", "kind", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    passed: Mapped[bool] = mapped_column(Boolean, default=False)
    actor: Mapped[str] = mapped_column(String(320), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ReleaseCheck(Base):
    """One ``python -m core release check``: the environment it ran in, each item's outcome and reason
    ([{"item", "passed", "reason"}]), and who ran it. Kept so a release can show the check it passed."""

    __tablename__ = "release_checks"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    environment: Mapped[str] = mapped_column(String(16))
    passed: Mapped[bool] = mapped_column(Boolean)
    actor: Mapped[str] = mapped_column(String(320), default="")
    results: Mapped[list[Any]] = mapped_column(JSON, default=list)


class TenantBudget(Base):
    """A workspace's own token budgets, set by ops on the Operations page (``core.tenant_budgets``).

    A NULL column means "the environment's default" (``BUDGET_*_TOKENS``), so a deploy that raises a
    default still reaches every workspace that never chose its own. Changes are audited with before
    and after."""

    __tablename__ = "tenant_budgets"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    librarian_chunk_tokens: Mapped[int | None] = mapped_column(Integer)
    writer_tokens: Mapped[int | None] = mapped_column(Integer)
    verifier_tokens: Mapped[int | None] = mapped_column(Integer)
    rewriter_tokens: Mapped[int | None] = mapped_column(Integer)
    paragraph_tokens: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(320), default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
