"""Routes of the ops API: costs, cost alerts, routing and trajectories of the token's tenant.

Each route calls the ``core`` function its page calls (``core.dashboard``, ``core.alerts``,
``core.routing``, ``core.trajectories``); the tenant is the token's, always. The cost summary and
the trajectory list aggregate and page in the database, so they stay flat on a million events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy import ColumnElement, func, select

from api import ops_models as out
from api.auth import requires
from api.database import engine
from api.errors import ERROR_RESPONSES
from api.summary_cache import SingleFlightCache
from core import alerts, crypto, dashboard, db, routing
from core import trajectories as traj
from core.authz import Permission
from core.models import LlmUsageEvent, utcnow
from core.settings import get_settings
from core.tenancy import Identity

router = APIRouter(prefix="/api/v1/ops", responses=ERROR_RESPONSES)

MAX_LIMIT = 200
"""Most rows one page of a list returns."""

NAME_PATTERN = r"^[\w.:/@+-]{1,128}$"
"""An agent or model name as the gateway records them (so a filter never carries control bytes)."""

TRACE_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="rows per page (1..200)")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="rows to skip")]
Name = Annotated[str | None, Query(pattern=NAME_PATTERN, max_length=128)]


def _invalid(where: str, message: str) -> RequestValidationError:
    """A 422 with the one error body, for a check the query's types cannot state."""
    return RequestValidationError([{"loc": ("query", where), "msg": message, "type": "value_error"}])


def _utc(moment: datetime | None, where: str) -> datetime | None:
    if moment is None:
        return None
    try:
        return traj.as_utc(moment)
    except OverflowError:
        raise _invalid(where, "the time is out of range once moved to UTC") from None


# Costs -----------------------------------------------------------------------------------------


@router.get("/costs/summary", response_model=out.CostSummary, tags=["costs"])
def cost_summary(
    request: Request,
    identity: Annotated[Identity, Depends(requires(Permission.VIEW_COSTS))],
    window: Annotated[Literal["day", "week", "month"], Query(description="rolling window ending now")] = "day",
) -> out.CostSummary:
    """Spend, tokens, calls, unpriced calls, cache hits and errors (with the previous window), by agent and
    model, P50/P95 latency and cost per paragraph: the Costs page's figures, aggregated in the database.
    Computed at most once per ``WORKBENCH_API_SUMMARY_TTL_S`` per tenant and window (``end`` says when)."""
    cache: SingleFlightCache[out.CostSummary] = request.app.state.summary_cache
    return cache.get((identity.tenant_id, window), lambda: _cost_summary(identity.tenant_id, window))


def _cost_summary(tenant_id: int, window: Literal["day", "week", "month"]) -> out.CostSummary:
    now = utcnow()
    with db.session_scope(engine()) as s:
        totals = dashboard.totals(s, tenant_id=tenant_id, window=window, now=now)
        groups = dashboard.breakdowns(s, tenant_id=tenant_id, window=window, now=now)
        latency = dashboard.latency(s, tenant_id=tenant_id, window=window, now=now)
        paragraphs = dashboard.paragraph_costs(s, tenant_id=tenant_id, window=window, now=now)
    return out.CostSummary(
        window=window,
        start=totals.window.start,
        end=totals.window.end,
        current=out.Usage.of(totals.current),
        previous=out.Usage.of(totals.previous),
        spend_change=totals.spend_change,
        by_agent=[out.Breakdown(key=r.key, usage=out.Usage.of(r.usage)) for r in groups["agent"]],
        by_model=[out.Breakdown(key=r.key, usage=out.Usage.of(r.usage)) for r in groups["model"]],
        latency=[out.Latency(**vars(r)) for r in latency],
        paragraphs=out.ParagraphCosts.of(paragraphs),
    )


@router.get("/costs/events", response_model=out.UsageEventPage, tags=["costs"])
def cost_events(
    identity: Annotated[Identity, Depends(requires(Permission.VIEW_COSTS))],
    since: Annotated[datetime | None, Query(description="created at or after (ISO 8601; naive means UTC)")] = None,
    until: Annotated[datetime | None, Query(description="created before")] = None,
    agent: Name = None,
    model: Name = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> out.UsageEventPage:
    """The tenant's gateway calls, newest first: ids, agent, model, tokens, cost, latency, cache hit, error
    class and trace id (never a prompt or an output)."""
    e = LlmUsageEvent
    conditions: list[ColumnElement[bool]] = [e.tenant_id == identity.tenant_id]
    if (start := _utc(since, "since")) is not None:
        conditions.append(e.created_at >= start)
    if (end := _utc(until, "until")) is not None:
        conditions.append(e.created_at < end)
    if agent:
        conditions.append(e.agent == agent)
    if model:
        conditions.append(e.model == model)
    with db.session_scope(engine()) as s:
        total = int(s.scalar(select(func.count()).select_from(e).where(*conditions)) or 0)
        rows = s.scalars(
            select(e).where(*conditions).order_by(e.created_at.desc(), e.id.desc()).offset(offset).limit(limit)
        )
        items = [out.UsageEvent.of(row) for row in rows]
    return out.UsageEventPage(items=items, total=total, limit=limit, offset=offset)


@router.get("/costs/alerts", response_model=list[out.AlertRule], tags=["costs"])
def cost_alert_rules(identity: Annotated[Identity, Depends(requires(Permission.VIEW_COSTS))]) -> list[out.AlertRule]:
    """Every alert rule as the tenant has it (its defaults until someone changed it)."""
    with db.session_scope(engine()) as s:
        return [out.AlertRule.of(r) for r in alerts.rule_settings(s, tenant_id=identity.tenant_id)]


@router.post("/costs/alerts", response_model=out.AlertRule, tags=["costs"])
def change_cost_alert(
    change: out.AlertRuleChange, identity: Annotated[Identity, Depends(requires(Permission.MANAGE_ALERTS))]
) -> out.AlertRule:
    """Set one alert rule's threshold, switch and parameters (audited); an unknown rule or a value out of
    its bounds is a 422 saying what to fix."""
    with db.session_scope(engine()) as s:
        setting = alerts.update_rule(
            s,
            tenant_id=identity.tenant_id,
            rule=change.rule,
            enabled=change.enabled,
            threshold=change.threshold,
            params=change.params,
            actor=identity,
        )
        return out.AlertRule.of(setting)


# Routing ---------------------------------------------------------------------------------------


@router.get("/routing/config", response_model=out.RoutingState, tags=["routing"])
def routing_config(identity: Annotated[Identity, Depends(requires(Permission.VIEW_ROUTING))]) -> out.RoutingState:
    """The tenant's current routing configuration (version 0 is the built-in one)."""
    with db.session_scope(engine()) as s:
        stored = routing.current_config(s, tenant_id=identity.tenant_id, settings=get_settings())
    return out.RoutingState.of(stored)


@router.post("/routing/config", response_model=out.RoutingState, tags=["routing"])
def change_routing_config(
    change: out.RoutingChange, identity: Annotated[Identity, Depends(requires(Permission.CHANGE_ROUTING))]
) -> out.RoutingState:
    """Save a new routing version (audited with its changes); a configuration that cannot be used, or one
    that changes nothing, is a 422 saying what to fix."""
    config = routing.parse_config(change.config)
    with db.session_scope(engine()) as s:
        stored = routing.save_config(
            s, tenant_id=identity.tenant_id, config=config, actor=identity, note=change.note, settings=get_settings()
        )
    return out.RoutingState.of(stored)


# Trajectories ----------------------------------------------------------------------------------


@router.get("/trajectories", response_model=out.TrajectoryPage, tags=["trajectories"])
def trajectories(
    identity: Annotated[Identity, Depends(requires(Permission.VIEW_TRACES))],
    status: Annotated[Literal["ok", "error", "running"] | None, Query()] = None,
    agent_type: Annotated[
        str | None, Query(pattern=NAME_PATTERN, max_length=128, description="runs with a span of this agent")
    ] = None,
    limit: Limit = traj.DEFAULT_PAGE_SIZE,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="rows to skip: a multiple of limit")] = 0,
) -> out.TrajectoryPage:
    """The tenant's runs, newest first, with their totals (no content)."""
    if offset % limit:
        raise _invalid("offset", f"offset must be a multiple of limit ({limit}): pages are whole")
    page = offset // limit + 1
    filters = traj.TrajectoryFilter(status=status, agent=agent_type)
    with db.session_scope(engine()) as s:
        found = traj.list_trajectories(s, tenant_id=identity.tenant_id, filters=filters, page=page, page_size=limit)
        # core clamps a page past the end to the last one; an API reader asked for rows past the end.
        items = [out.TrajectorySummary.of(r) for r in found.rows] if found.page == page else []
    return out.TrajectoryPage(items=items, total=found.total, limit=limit, offset=offset)


@router.get("/trajectories/{trace_id}", response_model=out.TraceDetail, tags=["trajectories"])
def trajectory(
    trace_id: Annotated[str, Path(pattern=TRACE_ID_PATTERN, max_length=64)],
    identity: Annotated[Identity, Depends(requires(Permission.VIEW_TRACES))],
) -> out.TraceDetail:
    """One run with its spans (timings, tokens, cost); span content and the paragraph produced only when the
    token's role may read content (each such view is audited). Another tenant's trace is a 404."""
    with db.session_scope(engine()) as s:
        trace = traj.get_trace(s, viewer=identity, trace_id=trace_id, ring=crypto.key_ring(get_settings()))
        return out.TraceDetail.of(trace)
