"""Trajectories, the write side: a row per run, a span per thing that happened in it.

A run (a paragraph drafted, a PDF ingested, an edit or a re-check verified, a golden case) is
one ``trajectories`` row keyed by its trace id, upserted when the run starts, its totals (calls,
errors, tokens, cost) kept as the gateway's calls land, finished ok or error at the end. A
paragraph run spans two jobs (``write_draft`` on the generation queue, ``finish_draft`` on the
verification queue): the first starts it, the second finishes it.

Its spans (``trajectory_events``) form a small tree::

    stage    write_draft | verify | repair | save | ingest      (no parent)
      agent    writer | verifier | rewriter | librarian       one gateway call
        routing  the tier and model chosen, and why
        cache    hit or miss
        budget   the estimate against the stage limit and the paragraph's budget
        attempt  each provider attempt: failure class, latency, wait before the next
        tool     each tool call the model made
        error    the call's failure
      error    the stage's failure

Timings, tokens, cost and ids are clear columns (``attributes`` holds metadata only); anything
that could quote the researcher's sources or a model's words (prompts, inputs, outputs, tool
arguments and results, error messages) is sealed into ``content`` under the active key with the
span as associated data (``crypto.span_aad``). Spans are written on the gateway's ledger
connection, so a run that rolls back keeps its record; an agent call's spans go in one
``executemany`` with its usage event.
"""

from __future__ import annotations

import functools
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Boolean, Connection, Engine, bindparam, case, event, null, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core import crypto
from core.db import as_utc, insert_ignoring_duplicates
from core.models import Job, Trajectory, TrajectoryEvent, table_of, utcnow
from core.settings import Settings, get_settings

if TYPE_CHECKING:
    from core.gateway import CallContext, _Call
    from core.providers.base import ToolSpec

log = logging.getLogger(__name__)

Kind = Literal["paragraph", "ingest", "edit", "reverify", "golden", "replay"]
RUNNING, OK, ERROR = "running", "ok", "error"

_TR = table_of(Trajectory)
_EV = table_of(TrajectoryEvent)
_INSERT_SPANS = _EV.insert()
# Built once: the gateway adds every call to its run's totals.
_ADD_CALL = (
    update(_TR)
    .where(_TR.c.tenant_id == bindparam("t_tenant"), _TR.c.trace_id == bindparam("t_trace"))
    .values(
        calls=_TR.c.calls + 1,
        errors=_TR.c.errors + bindparam("t_errors"),
        input_tokens=_TR.c.input_tokens + bindparam("t_in"),
        output_tokens=_TR.c.output_tokens + bindparam("t_out"),
        # NULL once any call is unpriced (NULL + x stays NULL): the run's cost is then unknown,
        # shown as "unpriced", never as an understated figure.
        cost_usd=case((bindparam("t_unpriced", type_=Boolean), null()), else_=_TR.c.cost_usd + bindparam("t_cost")),
    )
)


def new_span_id() -> str:
    """16 hex digits: the size of an OpenTelemetry span id, so an export needs no mapping."""
    return secrets.token_hex(8)


def error_class_of(error: BaseException) -> str:
    """A provider failure's class (timeout, rate_limit, ...), else the error's name: NoFacts, JobCancelled."""
    failure_class = getattr(error, "failure_class", None)
    return str(failure_class) if failure_class else type(error).__name__.removesuffix("Error")


# -- building span rows ------------------------------------------------------------------------------


class _Spans:
    """The rows of one write: every row carries every column, as ``executemany`` needs."""

    def __init__(self, tenant_id: int, trace_id: str, ring: crypto.KeyRing) -> None:
        self.tenant_id, self.trace_id, self.ring = tenant_id, trace_id, ring
        self.rows: list[dict[str, Any]] = []

    def add(
        self,
        kind: str,
        name: str,
        *,
        parent: str | None,
        started_at: datetime,
        duration_ms: float = 0.0,
        status: str = OK,
        error_class: str | None = None,
        content: Any = None,
        span_id: str | None = None,
        **columns: Any,
    ) -> str:
        span_id = span_id or new_span_id()
        sealed = (
            self.ring.seal_json(content, aad=crypto.span_aad(self.tenant_id, self.trace_id, span_id))
            if content is not None
            else None
        )
        self.rows.append(
            {
                "tenant_id": self.tenant_id,
                "trace_id": self.trace_id,
                "span_id": span_id,
                "parent_span_id": parent,
                "kind": kind,
                "name": name[:100],
                "agent": columns.get("agent"),
                "provider": columns.get("provider"),
                "model": columns.get("model"),
                "prompt_version": columns.get("prompt_version"),
                "status": status,
                "error_class": error_class,
                "started_at": started_at,
                "duration_ms": round(duration_ms, 3),
                "input_tokens": columns.get("input_tokens", 0),
                "output_tokens": columns.get("output_tokens", 0),
                "cost_usd": columns.get("cost_usd"),
                "usage_event_id": columns.get("usage_event_id"),
                "attributes": columns.get("attributes") or {},
                "content": sealed.blob if sealed else None,
                "key_id": sealed.key_id if sealed else None,
            }
        )
        return span_id

    def write(self, connection: Connection) -> None:
        if self.rows:
            connection.execute(_INSERT_SPANS, self.rows)


# -- the run's row -----------------------------------------------------------------------------------


def start(
    connection: Connection,
    *,
    tenant_id: int,
    trace_id: str,
    kind: Kind,
    paragraph_id: int | None = None,
    manuscript_id: int | None = None,
    document_id: int | None = None,
) -> None:
    """The run's row, created if it is new; a run that ended and is resumed under its trace runs again."""
    added = insert_ignoring_duplicates(
        connection,
        _TR,
        {
            "trace_id": trace_id,
            "tenant_id": tenant_id,
            "kind": kind,
            "status": RUNNING,
            "paragraph_id": paragraph_id,
            "manuscript_id": manuscript_id,
            "document_id": document_id,
            "calls": 0,
            "errors": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "cost_usd": 0,
            "started_at": utcnow(),
        },
    )
    if not added:
        # The second half of a paragraph run, a job queued again after its worker died, or a
        # trace run once more: the totals keep counting; the end is no longer known.
        connection.execute(
            update(_TR)
            .where(_TR.c.tenant_id == tenant_id, _TR.c.trace_id == trace_id, _TR.c.status != RUNNING)
            .values(status=RUNNING, error_class=None, ended_at=None, duration_ms=None)
        )


def finish(
    connection: Connection,
    *,
    tenant_id: int,
    trace_id: str,
    status: str,
    error_class: str | None = None,
    version_id: int | None = None,
    document_id: int | None = None,
) -> bool:
    """End a running run; False when it was not running (already ended, or never started)."""
    started = connection.scalar(
        select(_TR.c.started_at).where(
            _TR.c.tenant_id == tenant_id, _TR.c.trace_id == trace_id, _TR.c.status == RUNNING
        )
    )
    if started is None:
        return False
    ended = utcnow()
    values: dict[str, Any] = {
        "status": status,
        "error_class": error_class,
        "ended_at": ended,
        "duration_ms": round((ended - as_utc(started)).total_seconds() * 1000, 3),
    }
    if version_id is not None:
        values["version_id"] = version_id
    if document_id is not None:
        values["document_id"] = document_id
    result = connection.execute(
        update(_TR)
        .where(_TR.c.tenant_id == tenant_id, _TR.c.trace_id == trace_id, _TR.c.status == RUNNING)
        .values(**values)
    )
    return bool(result.rowcount)


def end_job_run(engine: Engine, job_id: str) -> bool:
    """A job that failed or was cancelled ends its run as an error, if the run still says running.

    The run normally records its own failure; this covers what it cannot see: a job cancelled
    while it waited in its queue (the second half of a paragraph run), a worker that died, a
    transaction that failed to commit after the work was done.
    """
    jobs = table_of(Job)
    with engine.connect() as connection:
        job = connection.execute(
            select(jobs.c.tenant_id, jobs.c.trace_id, jobs.c.state, jobs.c.error).where(jobs.c.id == job_id)
        ).first()
    if job is None or not job.trace_id:
        return False
    error_class = "JobCancelled" if job.state == "CANCELLED" else "JobFailed"
    spans = _Spans(job.tenant_id, job.trace_id, crypto.key_ring(get_settings()))
    spans.add(
        "error",
        "job cancelled" if job.state == "CANCELLED" else "job failed",
        parent=None,
        started_at=utcnow(),
        status=ERROR,
        error_class=error_class,
        attributes={"job_id": job_id, "job_state": job.state},
        content={"message": job.error or ""},
    )
    with engine.begin() as connection:
        if not finish(
            connection, tenant_id=job.tenant_id, trace_id=job.trace_id, status=ERROR, error_class=error_class
        ):
            return False
        spans.write(connection)
    _export(engine, job.tenant_id, job.trace_id)
    return True


def _export(engine: Engine, tenant_id: int, trace_id: str, settings: Settings | None = None) -> None:
    """Hand the finished trace to the exporter thread, when a collector is configured.

    Exporting happens off the job's thread: a collector that is slow or down (the exporter
    waits up to its timeout) must not hold up the worker that ran the job.
    """
    settings = settings or get_settings()
    if not settings.otlp_endpoint:
        return
    try:
        _exports.put_nowait((engine, tenant_id, trace_id, settings))
    except queue.Full:
        log.warning("trace %s was not exported: the export queue is full", trace_id, extra={"trace_id": trace_id})
        return
    _start_exporter()


_exports: queue.Queue[tuple[Engine, int, str, Settings]] = queue.Queue(maxsize=10_000)
_exporter_lock = threading.Lock()
_exporter: threading.Thread | None = None


def _start_exporter() -> None:
    global _exporter
    with _exporter_lock:
        if _exporter is None or not _exporter.is_alive():
            _exporter = threading.Thread(target=_export_forever, name="otlp-export", daemon=True)
            _exporter.start()


def _export_forever() -> None:
    while True:
        engine, tenant_id, trace_id, settings = _exports.get()
        try:
            from core import otel_export

            otel_export.export_trace(engine, tenant_id=tenant_id, trace_id=trace_id, settings=settings)
        except Exception as error:  # an export is a copy; the trace stays in the database either way
            log.warning(
                "trace %s was not exported to %s (%s); it is kept in the database",
                trace_id,
                settings.otlp_endpoint,
                type(error).__name__,
                extra={"trace_id": trace_id},
            )
        finally:
            _exports.task_done()


def flush_exports() -> None:
    """Wait until every trace handed to the exporter has been sent (or given up on)."""
    _exports.join()


# -- runs and stages, for the pipeline -----------------------------------------------------------------


class Run:
    """One run under way in this process (its trajectory row already written)."""

    def __init__(self, ctx: CallContext, kind: Kind) -> None:
        self.ctx, self.kind = ctx, kind
        self._recorded: set[int] = set()
        self.ended = False

    @contextmanager
    def stage(self, name: str, **attributes: Any) -> Iterator[None]:
        """A stage span around the block; the gateway's calls made in it are its children."""
        ctx = self.ctx
        span_id, parent = new_span_id(), ctx.span_id
        started_at, started = utcnow(), time.perf_counter()
        ctx.span_id = span_id
        try:
            yield
        except BaseException as error:
            ctx.span_id = parent
            self._recorded.add(id(error))
            spans = self._spans()
            spans.add(
                "stage",
                name,
                span_id=span_id,
                parent=parent,
                started_at=started_at,
                duration_ms=(time.perf_counter() - started) * 1000,
                status=ERROR,
                error_class=error_class_of(error),
                attributes=attributes,
            )
            _error_span(spans, error, parent=span_id)
            _when_free(ctx, spans.write)
            raise
        ctx.span_id = parent
        spans = self._spans()
        spans.add(
            "stage",
            name,
            span_id=span_id,
            parent=parent,
            started_at=started_at,
            duration_ms=(time.perf_counter() - started) * 1000,
            attributes=attributes,
        )
        with ctx.ledger() as connection:
            spans.write(connection)

    def done(self, *, version_id: int | None = None, document_id: int | None = None) -> None:
        """The run ended well. Written on the ledger like every span (a lock on the run's row held by
        the caller's open transaction would stall the next call of the same trace on PostgreSQL);
        if the caller's transaction then rolls back, the work it produced is gone and the run is
        marked an error after all (``RolledBack``)."""
        ctx = self.ctx
        with ctx.ledger() as connection:
            finish(
                connection,
                tenant_id=ctx.tenant_id,
                trace_id=ctx.trace_id,
                status=OK,
                version_id=version_id,
                document_id=document_id,
            )
        self.ended = True
        engine, tenant_id, trace_id = ctx.engine, ctx.tenant_id, ctx.trace_id
        settled = False

        def committed(_session: Session) -> None:
            nonlocal settled
            if not settled:
                settled = True
                _export(engine, tenant_id, trace_id)

        def rolled_back(_session: Session) -> None:
            nonlocal settled
            if not settled:
                settled = True
                _mark_rolled_back(engine, tenant_id, trace_id)

        event.listen(ctx.session, "after_commit", committed)
        event.listen(ctx.session, "after_rollback", rolled_back)

    def fail(self, error: BaseException) -> None:
        ctx = self.ctx
        spans = self._spans()
        if id(error) not in self._recorded:
            _error_span(spans, error, parent=ctx.span_id)
        tenant_id, trace_id, error_class = ctx.tenant_id, ctx.trace_id, error_class_of(error)

        def write(connection: Connection) -> None:
            spans.write(connection)
            finish(connection, tenant_id=tenant_id, trace_id=trace_id, status=ERROR, error_class=error_class)

        _when_free(ctx, write, then=lambda: _export(ctx.engine, tenant_id, trace_id))
        self.ended = True

    def _spans(self) -> _Spans:
        return _Spans(self.ctx.tenant_id, self.ctx.trace_id, crypto.key_ring(get_settings()))


@contextmanager
def run(
    ctx: CallContext,
    kind: Kind,
    *,
    paragraph_id: int | None = None,
    manuscript_id: int | None = None,
    document_id: int | None = None,
) -> Iterator[Run]:
    """Trace the block as (part of) the run ``ctx.trace_id``: started (or resumed) now, an error if
    the block raises. It ends ok only through ``Run.done``; a block that returns without it (the
    Writer's half of a paragraph run) leaves the run going for the next job of its trace."""
    with ctx.ledger() as connection:
        start(
            connection,
            tenant_id=ctx.tenant_id,
            trace_id=ctx.trace_id,
            kind=kind,
            paragraph_id=paragraph_id,
            manuscript_id=manuscript_id,
            document_id=document_id,
        )
    traced = Run(ctx, kind)
    try:
        yield traced
    except BaseException as error:
        try:
            traced.fail(error)
        except Exception:  # the record of a failure must never replace the failure itself
            log.warning("the failure of run %s could not be recorded", ctx.trace_id, exc_info=True)
        raise


def _mark_rolled_back(engine: Engine, tenant_id: int, trace_id: str) -> None:
    # On SQLite the ledger joined the caller's transaction, so the run may say running again.
    try:
        with engine.begin() as connection:
            connection.execute(
                update(_TR)
                .where(_TR.c.tenant_id == tenant_id, _TR.c.trace_id == trace_id, _TR.c.status.in_((OK, RUNNING)))
                .values(status=ERROR, error_class="RolledBack", version_id=None, ended_at=utcnow())
            )
    except SQLAlchemyError:  # the database went away with the rollback; the caller's own error is what matters
        log.warning("run %s rolled back after it ended and could not be marked so", trace_id, exc_info=True)


def _error_span(spans: _Spans, error: BaseException, *, parent: str | None) -> None:
    # The message may quote a source or a model's answer: sealed like any other content.
    spans.add(
        "error",
        error_class_of(error),
        parent=parent,
        started_at=utcnow(),
        status=ERROR,
        error_class=error_class_of(error),
        attributes={"exception": type(error).__name__},
        content={"message": str(error)},
    )


def _holds_sqlite_write_lock(session: Session) -> bool:
    if not session.in_transaction():
        return False
    try:
        own = session.connection()
    except Exception:  # a failed flush left it waiting for its rollback, lock and all
        return True
    return bool(getattr(own.connection.dbapi_connection, "in_transaction", False))


def _when_free(ctx: CallContext, write: Callable[[Connection], None], then: Callable[[], None] | None = None) -> None:
    """Commit ``write`` on a connection of its own, so it stands whatever the caller's transaction does.

    On SQLite, while the caller's session holds the write lock, a second connection would wait
    for it until it timed out: then the write happens as soon as that transaction ends, commit
    or rollback (a failed run is about to roll back).
    """
    engine = ctx.engine

    def now() -> None:
        try:
            with engine.begin() as connection:
                write(connection)
        except Exception:  # the trace is a record of the run; losing it must not fail the run itself
            log.warning("trace records of %s could not be written", ctx.trace_id, exc_info=True)
            return
        if then is not None:
            then()

    if engine.dialect.name == "sqlite" and _holds_sqlite_write_lock(ctx.session):
        fired = False

        def later(_session: Session) -> None:
            nonlocal fired
            if not fired:
                fired = True
                now()

        event.listen(ctx.session, "after_commit", later, once=True)
        event.listen(ctx.session, "after_rollback", later, once=True)
        return
    now()


# -- the gateway's calls -------------------------------------------------------------------------------


@dataclass
class ToolTimer:
    """When each tool call of one agent call ran (the providers run the tools; the gateway times them)."""

    marks: list[tuple[str, dict[str, Any], float, float]] = field(default_factory=list)

    def wrap(self, tools: Mapping[str, ToolSpec]) -> dict[str, ToolSpec]:
        return {name: replace(spec, fn=self._timed(spec.name, spec.fn)) for name, spec in tools.items()}

    def _timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)  # the providers check arguments against the signature it keeps
        def timed(**arguments: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(**arguments)
            finally:
                self.marks.append((name, arguments, started, (time.perf_counter() - started) * 1000))

        return timed

    def take(self, name: str, arguments: dict[str, Any]) -> tuple[float, float] | None:
        """(started, duration ms) of the call ``name(arguments)``, each mark used once."""
        for index, (mark_name, mark_arguments, started, duration) in enumerate(self.marks):
            if mark_name == name and mark_arguments == arguments:
                del self.marks[index]
                return started, duration
        return None


def record_call(
    connection: Connection,
    call: _Call,
    *,
    usage_event_id: int,
    latency_ms: float,
    cost_usd: float | None,
    error_class: str | None,
    cache_hit: bool,
) -> None:
    """An agent call's spans, in one ``executemany``, and its share of the run's totals."""
    ctx = call.ctx
    spans = _Spans(ctx.tenant_id, ctx.trace_id, crypto.key_ring(get_settings()))
    status = ERROR if error_class else OK

    def at(moment: float) -> datetime:
        return call.started_at + timedelta(seconds=moment - call.started)

    route = call.route
    agent_span = spans.add(
        "agent",
        call.agent,
        parent=ctx.span_id,
        started_at=call.started_at,
        duration_ms=latency_ms,
        status=status,
        error_class=error_class,
        agent=call.agent,
        provider=call.provider,
        model=call.model,
        prompt_version=call.prompt_version,
        input_tokens=call.input_tokens,
        output_tokens=call.output_tokens,
        cost_usd=cost_usd,
        usage_event_id=usage_event_id,
        attributes={
            "input_hash": call.input_hash,
            "cache_hit": cache_hit,
            "retries": max(len(call.attempts) - 1, 0),
            "tokens_estimated": call.estimated,
            "job_id": ctx.job_id,
        },
        content={
            "prompt": call.rendered,
            "input": call.payload.model_dump(mode="json") if call.payload is not None else None,
            "output": call.output.model_dump(mode="json") if call.output is not None else None,
        },
    )
    common: dict[str, Any] = {"agent": call.agent, "provider": call.provider, "model": call.model}
    routing_attributes: dict[str, Any] = {"tier": route.tier, "reason": route.reason}
    # The routing engineer adds a score and its breakdown to Route; older Routes have neither.
    score, breakdown = getattr(route, "score", None), getattr(route, "breakdown", None)
    if score is not None:
        routing_attributes["score"] = score
    if breakdown:
        routing_attributes["breakdown"] = breakdown
    spans.add(
        "routing", f"route: {route.tier}", parent=agent_span, started_at=call.started_at,
        attributes=routing_attributes, **common,
    )  # fmt: skip
    if call.cache_checked:
        spans.add(
            "cache",
            "cache hit" if cache_hit else "cache miss",
            parent=agent_span,
            started_at=call.started_at,
            attributes={"hit": cache_hit, "input_hash": call.input_hash},
            **common,
        )
    if call.budget_check is not None:
        refused = error_class == "BudgetExceeded"
        spans.add(
            "budget",
            "budget refused" if refused else "budget",
            parent=agent_span,
            started_at=call.started_at,
            status=ERROR if refused else OK,
            error_class="BudgetExceeded" if refused else None,
            attributes=call.budget_check,
            **common,
        )
    for number, (attempt, (began, message)) in enumerate(zip(call.attempts, call.attempt_marks, strict=False), 1):
        failure = attempt.get("failure_class")
        spans.add(
            "attempt",
            f"attempt {number}",
            parent=agent_span,
            started_at=at(began),
            duration_ms=float(attempt.get("latency_ms") or 0.0),
            status=ERROR if failure else OK,
            error_class=failure,
            attributes={"number": number, "failure_class": failure, "wait_s": attempt.get("wait_s")},
            content={"message": message} if message else None,
            **common,
        )
    for tool_call in call.tool_calls:
        timing = call.tool_timer.take(tool_call.name, tool_call.arguments) if call.tool_timer else None
        failed = isinstance(tool_call.result, str) and tool_call.result.startswith("Error:")
        spans.add(
            "tool",
            tool_call.name,
            parent=agent_span,
            started_at=at(timing[0]) if timing else call.started_at,
            duration_ms=timing[1] if timing else 0.0,
            status=ERROR if failed else OK,
            attributes={
                "results": len(tool_call.result) if isinstance(tool_call.result, list) else 1,
                "cached": cache_hit,
            },
            content={"arguments": tool_call.arguments, "result": tool_call.result},
            **common,
        )
    if error_class:
        error = call.error
        spans.add(
            "error",
            error_class,
            parent=agent_span,
            started_at=at(time.perf_counter()),
            status=ERROR,
            error_class=error_class,
            attributes={"exception": type(error).__name__ if error is not None else error_class},
            content={"message": str(error)} if error is not None else None,
            **common,
        )
    spans.write(connection)
    totals = {
        "t_tenant": ctx.tenant_id,
        "t_trace": ctx.trace_id,
        "t_errors": 1 if error_class else 0,
        "t_in": call.input_tokens,
        "t_out": call.output_tokens,
        "t_cost": cost_usd or 0.0,
        "t_unpriced": cost_usd is None,
    }
    connection.execute(_ADD_CALL, totals)
