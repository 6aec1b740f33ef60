"""The one door every agent call goes through (DESIGN.md, "the loop").

In order: kill switch and circuit breakers; routing (which model, and why; a retired or
unregistered model is refused, ``core.model_registry``); prompt rendering from the pinned version
(a caller's pin, else the deployed one: ``core.deployments``); input normalisation and
``input_hash``; the cache (scoped by tenant); the token budget (tiktoken count before the call,
reserved before anything is sent); the provider call under the retry policy of each failure class;
JSON contract validation; the usage event with its cost; breaker bookkeeping. The input policy
(``core.policy``: injections flagged and neutralised, PII redacted when the tenant asks) runs
before rendering, so what is rendered, hashed, cached and sent is the screened input; the output
policy runs after the contract, and a severe finding blocks the answer (``PolicyBlockedError``).
Encrypted trajectory events join this order in their own issue.

The ledger (usage events, tool calls, cache, budgets, breakers) is written on connections of
its own, committed as it goes, so a run that fails and rolls back still leaves the record of
every call it made and every token it was billed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.orm import Session

from core import (
    breakers,
    controls,
    crypto,
    deployments,
    llm_cache,
    model_registry,
    policy,
    pricing,
    prompts,
    retry,
    routing,
    tenant_budgets,
    tracing,
)
from core.budgets import TokenBudget
from core.complexity import Complexity
from core.errors import (
    BudgetExceededError,
    ContractError,
    GenerationPausedError,
    ModelRetiredError,
    ProviderError,
    WorkbenchError,
)
from core.models import LlmToolCall, LlmUsageEvent, table_of, utcnow
from core.providers import ProviderRequest, ProviderResult, ToolCall, get_provider
from core.providers.base import ToolSpec
from core.settings import Settings, get_settings
from core.tokens import count_tokens

log = logging.getLogger(__name__)
Output = TypeVar("Output", bound=BaseModel)
_U = table_of(LlmUsageEvent)
_TC = table_of(LlmToolCall)
_INSERT_EVENT = _U.insert()

__all__ = ["CallContext", "TokenBudget", "input_hash", "normalise", "open_paragraph_budget", "run_agent", "trace_cost"]


@dataclass
class CallContext:
    """Who is calling and under which run: every usage event of the run carries these."""

    session: Session
    tenant_id: int
    trace_id: str
    paragraph_id: int | None = None
    job_id: str | None = None
    budget: TokenBudget | None = None
    limits: tenant_budgets.Limits | None = None
    """The tenant's token budgets, read at the run's first call, so a whole run draws on one set."""
    tool_calls: list[ToolCall] = field(default_factory=list)
    prompt_versions: dict[str, str] = field(default_factory=dict)
    """Versions actually used, by agent (filled in as calls are made)."""
    prompt_pins: dict[str, str] = field(default_factory=dict)
    """Versions to use, by agent, over any deployment (golden runs and replays name them)."""
    deployed_pins: dict[str, str] | None = None
    """The version each unpinned agent uses for this run's paragraph (``core.deployments``: active or
    canary), read at the run's first call, so a whole run drafts under one set of versions."""
    sleep: Callable[[float], None] = time.sleep
    """How the retry loop waits (tests pass a recorder)."""
    drafting: bool = False
    """The run drafts a paragraph (it may be the probe of the verification and cost breakers)."""
    complexity: Complexity | None = None
    """How hard the run's work looks (``core.complexity``); the router picks the tier's model by it."""
    routing_config: routing.StoredConfig | None = None
    """The tenant's routing configuration, read at the run's first call, so a whole run routes under one version."""
    models: model_registry.Snapshot | None = None
    """The model registry, read at the run's first call with the routing configuration (``core.model_registry``)."""
    redact_pii: bool | None = None
    """Whether the tenant redacts PII before text is sent (``core.policy``), read at the run's first call."""
    model_pins: dict[str, str] = field(default_factory=dict)
    """Models to use, by agent, over any routing (golden runs and replays name them); still refused
    when the registry does not allow them."""
    span_id: str | None = None
    """The trajectory span (a pipeline stage) this run's calls are children of (``core.tracing``)."""

    @property
    def engine(self) -> Engine:
        bind = self.session.get_bind()
        return bind if isinstance(bind, Engine) else bind.engine

    @contextmanager
    def ledger(self) -> Iterator[Connection]:
        """A connection for the gateway's own records, committed when the block ends.

        Normally a connection of its own, so the records outlive a run that rolls back. On
        SQLite, when the caller's session already holds the write lock (it wrote before calling
        a model), a second connection would wait behind it until it timed out; then the records
        join the caller's transaction instead. The workbench's own jobs read, call the models,
        and write last, so their records always stand on their own.
        """
        if self.engine.dialect.name == "sqlite":
            own = self.session.connection()
            if getattr(own.connection.dbapi_connection, "in_transaction", False):
                yield own
                return
        with self.engine.begin() as connection:
            yield connection


def open_paragraph_budget(ctx: CallContext, *, settings: Settings) -> TokenBudget:
    """The run's paragraph budget (keyed by its trace id), shared by all of its calls."""
    with ctx.ledger() as connection:
        limit = run_limits(ctx, connection, settings).paragraph
        budget = TokenBudget.open(connection, key=f"paragraph:{ctx.trace_id}", tenant_id=ctx.tenant_id, limit=limit)
    ctx.budget = budget
    return budget


def run_limits(ctx: CallContext, connection: Connection, settings: Settings) -> tenant_budgets.Limits:
    """The tenant's token budgets for this run (``core.tenant_budgets``), read once per run."""
    if ctx.limits is None:
        ctx.limits = tenant_budgets.limits(connection, ctx.tenant_id, settings)
    return ctx.limits


def normalise(value: BaseModel | Mapping[str, object]) -> str:
    """Stable JSON: sorted keys, no insignificant whitespace, whitespace runs inside strings folded."""

    def fold(item: object) -> object:
        if isinstance(item, str):
            return " ".join(item.split())
        if isinstance(item, list | tuple):
            return [fold(v) for v in item]
        if isinstance(item, dict):
            return {str(k): fold(v) for k, v in item.items()}
        return item

    data = value.model_dump(mode="json") if isinstance(value, BaseModel) else dict(value)
    return json.dumps(fold(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def input_hash(
    agent: str,
    version: str,
    model: str,
    payload: BaseModel,
    render: Mapping[str, object] = {},
    *,
    prompt_sha256: str = "",
) -> str:
    """What a call's answer depends on. The prompt file's hash goes in beside the version name, so
    a version served from another prompts directory (a candidate under test) never reuses a cached
    answer of the file that shares its name."""
    text = f"{agent}\n{version}\n{prompt_sha256}\n{model}\n{normalise(payload)}\n{normalise(render)}"
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class _Call:
    """One agent call's identity and what its attempts added up to."""

    ctx: CallContext
    agent: str
    provider: str
    model: str
    prompt_version: str
    input_hash: str
    route: routing.Route
    attempts: list[dict[str, Any]] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    estimated: bool = False
    started: float = field(default_factory=time.perf_counter)
    # What the trajectory's spans are made of (core.tracing); the content is sealed there.
    started_at: datetime = field(default_factory=utcnow)
    rendered: str = ""
    payload: BaseModel | None = None
    output: BaseModel | None = None
    error: BaseException | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_timer: tracing.ToolTimer | None = None
    cache_checked: bool = False
    budget_check: dict[str, Any] | None = None
    attempt_marks: list[tuple[float, str | None]] = field(default_factory=list)
    """Per attempt: when it started (``perf_counter``) and its error message."""

    def add_usage(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0, estimated: bool = False) -> None:
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cached_tokens += cached_tokens
        self.estimated = self.estimated or estimated

    def event(self, connection: Connection, *, error_class: str | None, cache_hit: bool = False) -> int:
        settings = get_settings()
        if cache_hit:
            cost = pricing.Cost(0.0, "cache_hit")
        elif self.input_tokens or self.output_tokens:
            cost = pricing.cost_of(
                self.model,
                input_tokens=self.input_tokens,
                output_tokens=self.output_tokens,
                cached_tokens=self.cached_tokens,
                settings=settings,
                registered=self.ctx.models.price(self.model) if self.ctx.models is not None else None,
            )
        else:
            cost = pricing.Cost(0.0, "free" if self.model.startswith(pricing.FREE_PREFIXES) else "priced")
        ctx = self.ctx
        latency_ms = (time.perf_counter() - self.started) * 1000
        row = {
            "tenant_id": ctx.tenant_id,
            "trace_id": ctx.trace_id,
            "job_id": ctx.job_id,
            "paragraph_id": ctx.paragraph_id,
            "agent": self.agent,
            "provider": self.provider,
            "model": self.model,
            "prompt_version": self.prompt_version,
            "input_hash": self.input_hash,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "tokens_estimated": self.estimated,
            "cost_usd": cost.usd,
            "pricing": cost.pricing,
            "latency_ms": latency_ms,
            "retries": max(len(self.attempts) - 1, 0),
            "attempts": self.attempts,
            "cache_hit": cache_hit,
            "error_class": error_class,
            "routing_tier": self.route.tier,
            "routing_reason": self.route.reason,
            "routing_score": self.route.score,
            "created_at": utcnow(),
        }
        event_id = int(connection.execute(_INSERT_EVENT, row).inserted_primary_key[0])  # type: ignore[index]
        tracing.record_call(
            connection,
            self,
            usage_event_id=event_id,
            latency_ms=latency_ms,
            cost_usd=cost.usd,
            error_class=error_class,
            cache_hit=cache_hit,
        )
        if error_class:
            log.warning(
                "agent call failed: %s %s (%s)",
                self.agent,
                error_class,
                self.route.reason,
                extra={"trace_id": ctx.trace_id, "agent": self.agent, "error_class": error_class},
            )
        return event_id

    def record(self, *, error_class: str) -> None:
        """A call refused before it reached a provider (paused, over budget): its own event."""
        with self.ctx.ledger() as connection:
            self.event(connection, error_class=error_class)


def run_agent(
    agent: str,
    payload: BaseModel,
    output_type: type[Output],
    *,
    ctx: CallContext,
    render: Mapping[str, object],
    tools: Mapping[str, ToolSpec] | None = None,
) -> Output:
    """Call ``agent`` once, through every step of the gateway; returns its validated output."""
    settings = get_settings()
    provider = get_provider(settings.provider)
    if ctx.routing_config is None or ctx.models is None or ctx.redact_pii is None or ctx.deployed_pins is None:
        with ctx.ledger() as connection:
            if ctx.deployed_pins is None:
                ctx.deployed_pins = deployments.pins_for(connection, paragraph_id=ctx.paragraph_id)
            if ctx.redact_pii is None:
                ctx.redact_pii = policy.tenant_redacts(connection, tenant_id=ctx.tenant_id)
            if ctx.routing_config is None:
                ctx.routing_config = routing.current_config(connection, tenant_id=ctx.tenant_id, settings=settings)
            ctx.models = ctx.models or model_registry.snapshot(connection)
    version = ctx.prompt_pins.get(agent) or (ctx.deployed_pins or {}).get(agent, prompts.DEFAULT_VERSION)
    prompt = prompts.load(agent, version, settings.prompts_dir)
    try:
        route = routing.choose(
            provider, prompt, settings, config=ctx.routing_config, complexity=ctx.complexity, models=ctx.models
        )
        if agent in ctx.model_pins:
            pinned = ctx.model_pins[agent]
            route = routing.Route(pinned, "pinned", f"pinned to {pinned} by the caller (golden run or replay)")
        retired = ctx.models.refusal(route.model)
    except ModelRetiredError as error:  # no model left: recorded under the route the registry refused
        route = routing.choose(provider, prompt, settings, config=ctx.routing_config, complexity=ctx.complexity)
        retired = error
    screen = policy.screen_input(agent, payload, render, redact=bool(ctx.redact_pii), provider=provider.name)
    payload, render = screen.payload, screen.render
    rendered = prompt.render(**render)
    digest = input_hash(agent, prompt.version, route.model, payload, render, prompt_sha256=prompt.sha256)
    ctx.prompt_versions[agent] = prompt.version
    call = _Call(
        ctx, agent, provider.name, route.model, prompt.version, digest, route, rendered=rendered, payload=payload
    )
    key = llm_cache.CacheKey(ctx.tenant_id, agent, prompt.version, route.model, digest)
    if retired is not None:  # nothing is sent to a retired or unregistered model
        call.error = retired
        call.record(error_class="ModelRetired")
        raise retired
    ctx.models.warn_deprecated(route.model, trace_id=ctx.trace_id)

    estimate = 0
    refusal: BudgetExceededError | None = None
    try:
        # One short ledger transaction before the call: gate, cache, budget.
        with ctx.ledger() as connection:
            controls.admit(
                connection, provider=provider.name, trace_id=ctx.trace_id, drafting=ctx.drafting, settings=settings
            )
            screen.record(connection, ctx)
            cached = llm_cache.lookup(connection, key, crypto.key_ring(settings))
            call.cache_checked = True
            if cached is not None:
                output = screen.restore(output_type.model_validate(cached.output))
                call.output, call.tool_calls = output, cached.tool_calls
                event_id = call.event(connection, error_class=None, cache_hit=True)
                llm_cache.count_hit(connection, cached.id)
                _record_tool_calls(connection, ctx, event_id, cached.tool_calls)
                ctx.tool_calls.extend(cached.tool_calls)
                return output
            estimate = count_tokens(rendered, route.model) + prompt.max_tokens
            refusal = _reserve(connection, ctx, agent, estimate, settings)
            call.budget_check = _budget_check(connection, ctx, agent, estimate, refused=refusal is not None)
            if refusal is not None:
                call.error = refusal
                call.event(connection, error_class="BudgetExceeded")
    except GenerationPausedError as error:
        call.error = error
        call.record(error_class="GenerationPaused")
        raise
    if refusal is not None:
        raise refusal

    request = ProviderRequest(
        agent=agent,
        model=route.model,
        prompt=rendered,
        payload=payload,
        output_type=output_type,
        temperature=prompt.temperature,
        max_tokens=prompt.max_tokens,
        tools=_timed(call, screen.wrap_tools(tools)) if tools else {},
        timeout_s=settings.provider_timeout_s,
        params=prompt.params,
    )
    try:
        result, output = _attempts(call, provider.complete, request, output_type, settings)
        delivered = screen.check_output(output)  # placeholders restored; PolicyBlockedError if severe
    except WorkbenchError as error:
        call.error = error
        with ctx.ledger() as connection:
            call.event(connection, error_class=_error_class(error))
            screen.record(connection, ctx)
            if ctx.budget is not None:
                ctx.budget.settle(connection, reserved=estimate, actual=call.input_tokens + call.output_tokens)
        raise
    call.output, call.tool_calls = delivered, result.tool_calls
    with ctx.ledger() as connection:
        event_id = call.event(connection, error_class=None)
        screen.record(connection, ctx)
        _record_tool_calls(connection, ctx, event_id, result.tool_calls)
        llm_cache.store(
            connection,
            key,
            crypto.key_ring(settings),
            output=output.model_dump(mode="json"),
            tool_calls=result.tool_calls,
            input_tokens=call.input_tokens,
            output_tokens=call.output_tokens,
        )
        if ctx.budget is not None:
            ctx.budget.settle(connection, reserved=estimate, actual=call.input_tokens + call.output_tokens)
        breakers.record_attempts(
            connection,
            breakers.provider_breaker(provider.name),
            # Failed attempts were counted as they happened; this is the one that answered.
            total=1,
            failures=0,
            trace_id=ctx.trace_id,
            settings=settings,
        )
    ctx.tool_calls.extend(result.tool_calls)
    return delivered


def _reserve(
    connection: Connection, ctx: CallContext, agent: str, estimate: int, settings: Settings
) -> BudgetExceededError | None:
    """Check the stage budget and hold ``estimate`` tokens of the run's budget; the refusal, if any."""
    limit = run_limits(ctx, connection, settings).stage(agent)
    if estimate > limit:
        return BudgetExceededError(
            f"The {agent} input needs about {estimate} tokens, over its stage budget of {limit}, so it was not "
            f"sent; raise the {agent} budget under Token budgets on the Operations page (default: "
            f"{tenant_budgets.BY_KEY[agent].variable}) or split the input."
        )
    if ctx.budget is not None:
        try:
            ctx.budget.reserve(connection, estimate, agent=agent)
        except BudgetExceededError as error:
            return error
    return None


def _budget_check(
    connection: Connection, ctx: CallContext, agent: str, estimate: int, *, refused: bool
) -> dict[str, Any]:
    """What the budget span shows: the estimate against the stage limit and the paragraph's budget."""
    check: dict[str, Any] = {
        "estimate": estimate,
        "stage_limit": run_limits(ctx, connection, get_settings()).stage(agent),
        "refused": refused,
    }
    if ctx.budget is not None:
        check["paragraph_reserved"] = ctx.budget.used(connection)
        check["paragraph_limit"] = ctx.budget.limit
    return check


def _timed(call: _Call, tools: Mapping[str, ToolSpec]) -> dict[str, ToolSpec]:
    call.tool_timer = tracing.ToolTimer()
    return call.tool_timer.wrap(tools)


def _attempts(
    call: _Call,
    complete: Callable[[ProviderRequest], ProviderResult],
    request: ProviderRequest,
    output_type: type[Output],
    settings: Settings,
) -> tuple[ProviderResult, Output]:
    """The retry loop: the same request on every attempt, waits by failure class."""
    ctx = call.ctx
    while True:
        started = time.perf_counter()
        try:
            result = complete(request)
        except ProviderError as error:
            latency = (time.perf_counter() - started) * 1000
            call.attempt_marks.append((started, str(error)))
            call.add_usage(error.input_tokens, error.output_tokens)
            retries_done = len(call.attempts)
            wait = retry.next_delay(
                error.failure_class,
                retries_done,
                retry_after=getattr(error, "retry_after", None),
                max_delay_s=settings.retry_max_delay_s,
            )
            call.attempts.append(
                {"failure_class": error.failure_class, "latency_ms": round(latency, 2), "wait_s": wait}
            )
            log.warning(
                "%s attempt %d failed (%s): %s; %s",
                call.agent,
                len(call.attempts),
                error.failure_class,
                error,
                "giving up" if wait is None else f"retrying in {wait:.2f} s",
                extra={"trace_id": ctx.trace_id, "agent": call.agent, "failure_class": error.failure_class},
            )
            with ctx.ledger() as connection:
                # Count the failure now, so an outage trips the breaker while calls are still retrying.
                breakers.record_attempts(
                    connection,
                    breakers.provider_breaker(call.provider),
                    total=1,
                    failures=1,
                    trace_id=ctx.trace_id,
                    settings=settings,
                )
            if wait is None:
                raise
            ctx.sleep(wait)
            with ctx.ledger() as connection:
                controls.admit(
                    connection, provider=call.provider, trace_id=ctx.trace_id, drafting=ctx.drafting, settings=settings
                )
            continue
        latency = (time.perf_counter() - started) * 1000
        call.add_usage(result.input_tokens, result.output_tokens, result.cached_tokens, result.tokens_estimated)
        try:
            output = output_type.model_validate(result.output)
        except ValidationError as error:
            call.attempt_marks.append((started, None))
            call.attempts.append({"failure_class": "contract", "latency_ms": round(latency, 2), "wait_s": None})
            raise ContractError(
                f"The {call.agent} answer broke its JSON contract ({error.error_count()} problems, first: "
                f"{error.errors()[0]['msg']} at {'.'.join(str(p) for p in error.errors()[0]['loc']) or 'top level'}). "
                f"Nothing was saved; try again, or use another prompt version or provider."
            ) from error
        call.attempt_marks.append((started, None))
        call.attempts.append({"failure_class": None, "latency_ms": round(latency, 2), "wait_s": None})
        return result, output


def _error_class(error: WorkbenchError) -> str:
    """A provider failure's class (timeout, rate_limit, ...), else the error's name: GenerationPaused."""
    failure_class = getattr(error, "failure_class", None)
    return str(failure_class) if failure_class else type(error).__name__.removesuffix("Error")


def tool_call_aad(tenant_id: int, trace_id: str, usage_event_id: int, name: str) -> bytes:
    """What a sealed tool call is bound to: its tenant, run, agent call and tool."""
    return f"tool:{tenant_id}:{trace_id}:{usage_event_id}:{name}".encode()


def _record_tool_calls(connection: Connection, ctx: CallContext, event_id: int, calls: list[ToolCall]) -> None:
    if not calls:
        return
    ring = crypto.key_ring(get_settings())
    rows = []
    for c in calls:
        sealed = ring.seal_json(
            {"arguments": c.arguments, "result": c.result},
            aad=tool_call_aad(ctx.tenant_id, ctx.trace_id, event_id, c.name),
        )
        rows.append(
            {
                "tenant_id": ctx.tenant_id,
                "trace_id": ctx.trace_id,
                "usage_event_id": event_id,
                "name": c.name,
                "results": len(c.result) if isinstance(c.result, list) else 1,
                "content": sealed.blob,
                "key_id": sealed.key_id,
                "created_at": utcnow(),
            }
        )
    connection.execute(_TC.insert(), rows)


def trace_cost(ctx: CallContext) -> tuple[float | None, int]:
    """Total cost of the run so far and how many of its calls are unpriced (None when all are)."""
    tenant_id, trace_id = ctx.tenant_id, ctx.trace_id
    with ctx.ledger() as connection:
        row = connection.execute(
            select(func.sum(_U.c.cost_usd), func.count().filter(_U.c.cost_usd.is_(None))).where(
                _U.c.tenant_id == tenant_id, _U.c.trace_id == trace_id
            )
        ).one()
    return (float(row[0]) if row[0] is not None else None), int(row[1])
