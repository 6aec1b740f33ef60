"""Alert rules: what ops want to hear about, per tenant, and the events when a rule crosses.

The rules are code (``RULES``); a tenant's setting of each (enabled, threshold, parameters) is
an ``alert_rules`` row, and the defaults below until someone changes it. ``evaluate`` measures
every enabled rule of one tenant, each with one aggregate query (no event is loaded into
Python), and keeps ``alert_events`` in step:

- a rule that crosses its threshold opens one ``firing`` event;
- while it stays over, that same event is updated (``last_seen_at``, value, message);
- when it comes back (or is disabled) the event is ``resolved``; crossing again opens a new one.

========================  ==================================================  ============  ==============  ========
rule                      value                                               window        fires when      severity
========================  ==================================================  ============  ==============  ========
verification_pass_rate    verified share of drafted paragraph versions        last 24 h     < 95 %          warning
false_support             false support reports                               last 24 h     > 0             critical
cost_per_paragraph        spend / paragraph runs (traces with a paragraph)    last 24 h     > $0.50         warning
weekly_cost_spike         spend of the last 7 days / the 7 days before, - 1   14 days       > +30 %         warning
job_failure_rate          FAILED share of jobs that ended (cancelled aside)   last hour     > 5 %           warning
budget                    month-to-date spend / ``monthly_budget_usd``        this month    >= 80 %         critical
========================  ==================================================  ============  ==============  ========

Minimum samples, so that one bad paragraph or one failed job does not page anyone: the pass
rate is judged from ``min_paragraphs`` (10) drafted versions, the job failure rate from
``min_jobs`` (10) ended jobs, and a spike only against a previous week that spent at least
``min_previous_usd`` ($1). Under its minimum a rule has no value and stays quiet. The budget
rule does nothing until a monthly budget is set. Spend counts priced calls only: a call whose
model has no price (``cost_usd`` NULL) adds nothing, and a run with no priced call is not a run
for the cost per paragraph. Values are compared rounded to 1e-9, so a value exactly at its
threshold never fires through float noise (+30 % is not over +30 %).

Two evaluations of one tenant at once (two workers, a worker and a page) never open two firing
events for one rule: their writes are serialised (a transaction-scoped advisory lock on
PostgreSQL; SQLite has one writer at a time) and the event is opened by an insert conditional on
no firing event existing.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, DateTime, Engine, Float, Integer, String, and_, case, exists, func, literal, select
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from core import accounts, audit, authz, deployments, policy
from core.authz import Permission
from core.db import as_utc, insert_ignoring_duplicates
from core.errors import AlertRuleError, PermissionDeniedError
from core.job_records import FAILED, SUCCEEDED
from core.models import (
    AlertEvent,
    AlertRule,
    FalseSupportReport,
    Job,
    LlmUsageEvent,
    ParagraphVersion,
    Tenant,
    table_of,
    utcnow,
)
from core.settings import get_settings
from core.tenancy import Identity

log = logging.getLogger(__name__)

FIRING, RESOLVED = "firing", "resolved"
WARNING, CRITICAL = "warning", "critical"
HOUR, DAY, WEEK = timedelta(hours=1), timedelta(days=1), timedelta(days=7)

_R = table_of(AlertRule)
_E = table_of(AlertEvent)
_V = table_of(ParagraphVersion)
_U = table_of(LlmUsageEvent)
_J = table_of(Job)
_F = table_of(FalseSupportReport)

_LOCK_NAMESPACE = 0x414C5254
"""High 32 bits of the PostgreSQL advisory lock key of one tenant's alert evaluation ("ALRT")."""


# Formatting -----------------------------------------------------------------------------------


def share(value: float) -> str:
    return f"{value:.1%}"


def growth(value: float) -> str:
    return f"{value:+.1%}"


def usd(value: float) -> str:
    """Dollars with cents, or four decimals under a dollar (a paragraph often costs a fraction of a cent)."""
    return f"${value:,.2f}" if abs(value) >= 1 or value == 0 else f"${value:.4f}"


def count(value: float) -> str:
    return f"{value:g}"


# Rules ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """What a rule's query found: ``value`` is None when there is nothing to judge yet."""

    value: float | None
    detail: str


Measure = Callable[[Connection, int, datetime, Mapping[str, Any]], Reading]


@dataclass(frozen=True)
class Param:
    """A rule parameter a tenant may set; None is allowed only where the default is None."""

    default: float | None
    label: str
    minimum: float
    integer: bool = False


@dataclass(frozen=True)
class Rule:
    name: str
    title: str
    description: str
    window: str
    threshold: float
    """Default threshold, in the unit ``show`` formats (a share as a fraction: 0.95 is 95 %)."""
    bounds: tuple[float, float]
    """Thresholds a tenant may set, inclusive."""
    fires: str
    """``below``, ``above`` or ``at_or_above`` the threshold."""
    severity: str
    show: Callable[[float], str]
    measure: Measure
    params: Mapping[str, Param] = field(default_factory=dict)
    integer_threshold: bool = False

    def crosses(self, value: float, threshold: float) -> bool:
        v, t = round(value, 9), round(threshold, 9)
        if self.fires == "below":
            return v < t
        if self.fires == "above":
            return v > t
        return v >= t

    @property
    def relation(self) -> str:
        return {"below": "under", "above": "over", "at_or_above": "at or over"}[self.fires]

    @property
    def scale(self) -> float:
        """Factor between the stored threshold and the one people type: shares are typed in percent."""
        return 100.0 if self.show in (share, growth) else 1.0

    @property
    def unit(self) -> str:
        return "%" if self.scale == 100.0 else "USD" if self.show is usd else "reports"


def _in_window(column: Any, since: datetime, now: datetime) -> Any:
    return and_(column > since, column <= now)


def _sum_cost(condition: Any = None) -> Any:
    cost = _U.c.cost_usd if condition is None else case((condition, _U.c.cost_usd))
    return func.coalesce(func.sum(cost), 0)


def _pass_rate(c: Connection, tenant_id: int, now: datetime, params: Mapping[str, Any]) -> Reading:
    drafted, verified = c.execute(
        select(func.count(), func.coalesce(func.sum(case((_V.c.status == "verified", 1), else_=0)), 0)).where(
            _V.c.tenant_id == tenant_id, _V.c.origin == "drafted", _in_window(_V.c.created_at, now - DAY, now)
        )
    ).one()
    minimum = int(params["min_paragraphs"])
    if drafted < minimum:
        return Reading(None, f"{drafted} drafted paragraph(s) in the last 24 h; judged from {minimum}")
    return Reading(verified / drafted, f"{verified} of {drafted} drafted paragraphs verified in the last 24 h")


def _false_supports(c: Connection, tenant_id: int, now: datetime, _params: Mapping[str, Any]) -> Reading:
    reports = c.scalar(
        select(func.count()).where(_F.c.tenant_id == tenant_id, _in_window(_F.c.created_at, now - DAY, now))
    )
    return Reading(float(reports or 0), f"{reports} false support report(s) in the last 24 h")


def _cost_per_paragraph(c: Connection, tenant_id: int, now: datetime, _params: Mapping[str, Any]) -> Reading:
    spent, runs = c.execute(
        select(_sum_cost(), func.count(case((_U.c.cost_usd.is_not(None), _U.c.trace_id)).distinct())).where(
            _U.c.tenant_id == tenant_id,
            _U.c.paragraph_id.is_not(None),
            _in_window(_U.c.created_at, now - DAY, now),
        )
    ).one()
    if not runs:
        return Reading(None, "no priced paragraph run in the last 24 h")
    return Reading(float(spent) / runs, f"{usd(float(spent))} over {runs} paragraph run(s) in the last 24 h")


def _weekly_spike(c: Connection, tenant_id: int, now: datetime, params: Mapping[str, Any]) -> Reading:
    week_ago = now - WEEK
    last, previous = (
        float(v)
        for v in c.execute(
            select(_sum_cost(_U.c.created_at > week_ago), _sum_cost(_U.c.created_at <= week_ago)).where(
                _U.c.tenant_id == tenant_id, _in_window(_U.c.created_at, now - 2 * WEEK, now)
            )
        ).one()
    )
    minimum = float(params["min_previous_usd"])
    if previous <= 0 or previous < minimum:
        return Reading(
            None, f"the 7 days before spent {usd(previous)}; a spike is judged against {usd(minimum)} or more"
        )
    return Reading(last / previous - 1, f"{usd(last)} in the last 7 days against {usd(previous)} in the 7 before")


def _job_failure_rate(c: Connection, tenant_id: int, now: datetime, params: Mapping[str, Any]) -> Reading:
    ended, failed = c.execute(
        select(func.count(), func.coalesce(func.sum(case((_J.c.state == FAILED, 1), else_=0)), 0)).where(
            _J.c.tenant_id == tenant_id,
            _J.c.state.in_((SUCCEEDED, FAILED)),
            _in_window(_J.c.finished_at, now - HOUR, now),
        )
    ).one()
    minimum = int(params["min_jobs"])
    if ended < minimum:
        return Reading(None, f"{ended} job(s) ended in the last hour; judged from {minimum}")
    return Reading(failed / ended, f"{failed} of {ended} jobs failed in the last hour")


def _budget(c: Connection, tenant_id: int, now: datetime, params: Mapping[str, Any]) -> Reading:
    budget = params.get("monthly_budget_usd")
    if not budget:
        return Reading(None, "no monthly budget set")
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    spent = float(
        c.scalar(
            select(_sum_cost()).where(_U.c.tenant_id == tenant_id, _U.c.created_at >= month, _U.c.created_at <= now)
        )
        or 0
    )
    return Reading(spent / budget, f"{usd(spent)} of the {usd(budget)} monthly budget spent since {month:%Y-%m-%d}")


def _policy_violations(c: Connection, tenant_id: int, now: datetime, params: Mapping[str, Any]) -> Reading:
    rate = policy.policy_violation_rate(c, tenant_id=tenant_id, since=now - DAY, until=now)
    minimum = int(params["min_calls"])
    if rate.calls < minimum:
        return Reading(None, f"{rate.calls} agent call(s) in the last 24 h; judged from {minimum}")
    top = ", ".join(f"{rule} {n}" for rule, n in list(rate.by_rule.items())[:3]) or "none"
    return Reading(
        rate.violations / rate.calls,
        f"{rate.violations} policy violation(s) in {rate.calls} agent calls in the last 24 h ({top}; "
        f"{rate.blocked} blocked)",
    )


RULES: dict[str, Rule] = {
    rule.name: rule
    for rule in (
        Rule(
            name="verification_pass_rate",
            title="Verification pass rate",
            description="Share of paragraphs drafted in the last 24 h whose every sentence was verified.",
            window="last 24 h",
            threshold=0.95,
            bounds=(0.0, 1.0),
            fires="below",
            severity=WARNING,
            show=share,
            measure=_pass_rate,
            params={"min_paragraphs": Param(10, "Minimum drafted paragraphs", 1, integer=True)},
        ),
        Rule(
            name="false_support",
            title="False support reports",
            description="Sentences shown as supported that a researcher or a golden run found unsupported.",
            window="last 24 h",
            threshold=0,
            bounds=(0, 1000),
            fires="above",
            severity=CRITICAL,
            show=count,
            measure=_false_supports,
            integer_threshold=True,
        ),
        Rule(
            name="cost_per_paragraph",
            title="Cost per paragraph",
            description="Average spend of the paragraph runs (drafts, edits, re-verifications) of the last 24 h.",
            window="last 24 h",
            threshold=0.50,
            bounds=(0.0001, 1000.0),
            fires="above",
            severity=WARNING,
            show=usd,
            measure=_cost_per_paragraph,
        ),
        Rule(
            name="weekly_cost_spike",
            title="Week-over-week spend",
            description="Spend of the last 7 days against the 7 days before.",
            window="last 14 days",
            threshold=0.30,
            bounds=(0.01, 100.0),
            fires="above",
            severity=WARNING,
            show=growth,
            measure=_weekly_spike,
            params={"min_previous_usd": Param(1.0, "Minimum spend of the previous week, USD", 0)},
        ),
        Rule(
            name="job_failure_rate",
            title="Job failure rate",
            description="Share of the jobs that ended in the last hour which failed (cancelled jobs aside).",
            window="last hour",
            threshold=0.05,
            bounds=(0.0, 1.0),
            fires="above",
            severity=WARNING,
            show=share,
            measure=_job_failure_rate,
            params={"min_jobs": Param(10, "Minimum ended jobs", 1, integer=True)},
        ),
        Rule(
            name="budget",
            title="Monthly budget used",
            description="Month-to-date spend against the workspace's monthly budget (off until one is set).",
            window="this month (UTC)",
            threshold=0.80,
            bounds=(0.01, 1.0),
            fires="at_or_above",
            severity=CRITICAL,
            show=share,
            measure=_budget,
            params={"monthly_budget_usd": Param(None, "Monthly budget, USD", 0.01)},
        ),
        Rule(
            name="policy_violation_rate",
            title="Policy violations per agent call",
            description="Violations the policy gateway recorded (hostile source text, PII, unknown sources, "
            "harmful output) per agent call of the last 24 h.",
            window="last 24 h",
            threshold=0.05,
            bounds=(0.0, 10.0),
            fires="above",
            severity=WARNING,
            show=share,
            measure=_policy_violations,
            params={"min_calls": Param(20, "Minimum agent calls", 1, integer=True)},
        ),
    )
}
"""Every rule, by name, in the order pages show them."""


# Settings -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleSetting:
    """A rule as one tenant has it: the defaults until someone changed it (``updated_at`` None)."""

    rule: Rule
    enabled: bool
    threshold: float
    params: dict[str, float | None]
    actor: str = ""
    updated_at: datetime | None = None

    @property
    def name(self) -> str:
        return self.rule.name


def _defaults(rule: Rule) -> RuleSetting:
    return RuleSetting(rule, True, rule.threshold, {k: p.default for k, p in rule.params.items()})


def _load_settings(connection: Connection, tenant_id: int) -> dict[str, RuleSetting]:
    settings = {name: _defaults(rule) for name, rule in RULES.items()}
    for row in connection.execute(select(_R).where(_R.c.tenant_id == tenant_id)):
        rule = RULES.get(row.rule)
        if rule is None:  # a rule since removed from the code
            continue
        stored = dict(row.params or {})
        params = {k: stored.get(k, p.default) for k, p in rule.params.items()}
        settings[rule.name] = RuleSetting(
            rule, bool(row.enabled), float(row.threshold), params, row.actor, as_utc(row.updated_at)
        )
    return settings


def rule_settings(session: Session, *, tenant_id: int) -> list[RuleSetting]:
    """Every rule as this tenant has it, in ``RULES`` order."""
    return list(_load_settings(session.connection(), tenant_id).values())


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AlertRuleError(f"{what} must be a number; got {value!r}.")
    return float(value)


def _check_threshold(rule: Rule, threshold: object) -> float:
    value = _number(threshold, f"The threshold of {rule.title}")
    low, high = rule.bounds
    if rule.integer_threshold and not value.is_integer():
        raise AlertRuleError(f"The threshold of {rule.title} is a count: give a whole number, not {value:g}.")
    if not low <= value <= high:
        raise AlertRuleError(
            f"The threshold of {rule.title} must be between {rule.show(low)} and {rule.show(high)}; "
            f"got {rule.show(value)}."
        )
    return value


def _check_param(rule: Rule, key: str, value: object) -> float | None:
    param = rule.params.get(key)
    if param is None:
        known = ", ".join(rule.params) or "none"
        raise AlertRuleError(f"{rule.title} has no parameter {key!r} (its parameters: {known}).")
    if value is None:
        if param.default is not None:
            raise AlertRuleError(f"{param.label} ({rule.title}) cannot be empty.")
        return None
    number = _number(value, f"{param.label} ({rule.title})")
    if param.integer and not number.is_integer():
        raise AlertRuleError(f"{param.label} ({rule.title}) is a count: give a whole number, not {number:g}.")
    if number < param.minimum:
        raise AlertRuleError(f"{param.label} ({rule.title}) must be at least {param.minimum:g}; got {number:g}.")
    return int(number) if param.integer else number


def update_rule(
    session: Session,
    *,
    tenant_id: int,
    rule: str,
    enabled: bool,
    threshold: float,
    params: Mapping[str, float | None] | None = None,
    actor: Identity,
) -> RuleSetting:
    """Save this tenant's setting of ``rule``; ``params`` change only the keys given. Raises
    ``AlertRuleError`` naming the value to fix. The next evaluation uses it. Requires
    ``MANAGE_ALERTS`` in the actor's own tenant; audited (before and after) in the same transaction."""
    authz.require(actor, Permission.MANAGE_ALERTS)
    if actor.tenant_id != tenant_id:
        raise PermissionDeniedError("Alert rules can only be changed in your own workspace.")
    definition = RULES.get(rule)
    if definition is None:
        raise AlertRuleError(f"There is no alert rule {rule!r}; the rules are: {', '.join(RULES)}.")
    value = _check_threshold(definition, threshold)
    connection = session.connection()
    before = _load_settings(connection, tenant_id)[rule]
    merged = dict(before.params)
    for key, given in (params or {}).items():
        merged[key] = _check_param(definition, key, given)
    now = utcnow()
    values = {"enabled": bool(enabled), "threshold": value, "params": merged, "actor": actor.name, "updated_at": now}
    # Insert-or-ignore then update: two people saving at once both succeed, the later one wins.
    insert_ignoring_duplicates(connection, _R, {"tenant_id": tenant_id, "rule": rule, **values})
    connection.execute(_R.update().where(_R.c.tenant_id == tenant_id, _R.c.rule == rule).values(**values))
    audit.record(
        connection,
        audit.ALERT_RULE_CHANGED,
        actor=actor,
        tenant_id=tenant_id,
        subject=rule,
        details={
            "before": {"enabled": before.enabled, "threshold": before.threshold, "params": before.params},
            "after": {"enabled": bool(enabled), "threshold": value, "params": merged},
        },
    )
    log.info("alert rule %s of tenant %s set by %s: %s", rule, tenant_id, actor.name, values)
    return _load_settings(connection, tenant_id)[rule]


# Evaluation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleResult:
    rule: str
    title: str
    severity: str
    enabled: bool
    value: float | None
    threshold: float
    firing: bool
    message: str


def _judge(connection: Connection, tenant_id: int, now: datetime, setting: RuleSetting) -> RuleResult:
    rule = setting.rule
    if not setting.enabled:
        return RuleResult(
            rule.name, rule.title, rule.severity, False, None, setting.threshold, False, f"{rule.title}: off."
        )
    reading = rule.measure(connection, tenant_id, now, setting.params)
    firing = reading.value is not None and rule.crosses(reading.value, setting.threshold)
    if reading.value is None:
        message = f"{rule.title}: not judged, {reading.detail}."
    else:
        relation = rule.relation if firing else "threshold"
        message = (
            f"{rule.title}: {rule.show(reading.value)}, {relation} {rule.show(setting.threshold)} ({reading.detail})."
        )
    return RuleResult(rule.name, rule.title, rule.severity, True, reading.value, setting.threshold, firing, message)


def _serialise(connection: Connection, tenant_id: int) -> None:
    """Hold this tenant's evaluation lock until the transaction ends (PostgreSQL). On SQLite the
    first write below takes the database's one write lock, which serialises just the same."""
    if connection.dialect.name == "postgresql":
        connection.execute(sql_text("SELECT pg_advisory_xact_lock(:key)"), {"key": (_LOCK_NAMESPACE << 32) | tenant_id})


def _record(connection: Connection, tenant_id: int, now: datetime, result: RuleResult) -> None:
    firing_now = and_(_E.c.tenant_id == tenant_id, _E.c.rule == result.rule, _E.c.state == FIRING)
    if not result.firing:
        if connection.execute(_E.update().where(firing_now).values(state=RESOLVED, resolved_at=now)).rowcount:
            log.info("alert %s of tenant %s resolved: %s", result.rule, tenant_id, result.message)
        return
    seen = {"value": result.value, "threshold": result.threshold, "message": result.message, "last_seen_at": now}
    if connection.execute(_E.update().where(firing_now).values(severity=result.severity, **seen)).rowcount:
        return
    columns: dict[str, ColumnElement[Any]] = {
        "tenant_id": literal(tenant_id, Integer),
        "rule": literal(result.rule, String),
        "state": literal(FIRING, String),
        "severity": literal(result.severity, String),
        "value": literal(result.value, Float),
        "threshold": literal(result.threshold, Float),
        "message": literal(result.message, String),
        "fired_at": literal(now, DateTime(timezone=True)),
        "last_seen_at": literal(now, DateTime(timezone=True)),
    }
    opened = connection.execute(
        _E.insert().from_select(list(columns), select(*columns.values()).where(~exists().where(firing_now)))
    ).rowcount
    if opened:
        log.warning("alert %s of tenant %s firing (%s): %s", result.rule, tenant_id, result.severity, result.message)


def _evaluate(connection: Connection, tenant_id: int, now: datetime) -> list[RuleResult]:
    settings = _load_settings(connection, tenant_id)
    results = [_judge(connection, tenant_id, now, setting) for setting in settings.values()]
    _serialise(connection, tenant_id)
    for result in results:
        _record(connection, tenant_id, now, result)
    return results


def evaluate(target: Session | Engine, *, tenant_id: int, now: datetime | None = None) -> list[RuleResult]:
    """Measure every rule of ``tenant_id`` at ``now`` and open, update or resolve its events.

    Given an engine it commits; given a session the caller's commit does (and, on PostgreSQL,
    the tenant's evaluation lock is held until then: commit soon)."""
    moment = as_utc(now) if now else utcnow()
    if isinstance(target, Engine):
        with target.begin() as connection:
            return _evaluate(connection, tenant_id, moment)
    return _evaluate(target.connection(), tenant_id, moment)


def evaluate_all(engine: Engine, *, now: datetime | None = None) -> dict[int, list[RuleResult]]:
    """Evaluate every tenant, each in its own transaction."""
    with engine.connect() as connection:
        tenant_ids = list(connection.scalars(select(Tenant.id).order_by(Tenant.id)))
    return {tenant_id: evaluate(engine, tenant_id=tenant_id, now=now) for tenant_id in tenant_ids}


class AlertSchedule:
    """Evaluates every tenant at most once per ``alert_interval_s``, and the prompt canaries with them
    (``core.deployments.evaluate_canaries``), and deletes stale sign-in rows (``core.accounts.forget_stale``):
    maintenance loops call ``tick`` on each of their (much more frequent) rounds."""

    def __init__(
        self, engine: Engine, *, interval_s: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.engine = engine
        self.interval_s = get_settings().alert_interval_s if interval_s is None else interval_s
        self._clock = clock
        self._due = clock()

    def tick(self) -> bool:
        """Evaluate if due; True when it did (or tried). A failure is logged, never raised: the
        loop calling this also keeps workers alive, and the next interval tries again."""
        now = self._clock()
        if now < self._due:
            return False
        self._due = now + self.interval_s
        try:
            evaluate_all(self.engine)
        except Exception:  # a worker's maintenance loop must outlive a bad round; the next interval retries
            log.warning("evaluating alert rules failed; trying again in %g s", self.interval_s, exc_info=True)
        try:  # prompt canaries on the same beat: one rolls back automatically when its figures say so
            deployments.evaluate_canaries(self.engine)
        except Exception:  # same reason as above: never take the maintenance loop down
            log.warning("evaluating prompt canaries failed; trying again in %g s", self.interval_s, exc_info=True)
        try:  # and housekeeping: old sign-in sessions and idle failed-login counters
            accounts.forget_stale(self.engine)
        except Exception:  # same reason as above; nothing is lost by deleting them a minute later
            log.warning("sign-in housekeeping failed; trying again in %g s", self.interval_s, exc_info=True)
        return True


# Reading events -------------------------------------------------------------------------------


def active_alerts(session: Session, *, tenant_id: int) -> list[AlertEvent]:
    """This tenant's firing alerts, critical first, newest first."""
    return list(
        session.scalars(
            select(AlertEvent)
            .where(AlertEvent.tenant_id == tenant_id, AlertEvent.state == FIRING)
            .order_by(case((AlertEvent.severity == CRITICAL, 0), else_=1), AlertEvent.fired_at.desc(), AlertEvent.id)
        )
    )


def alert_history(session: Session, *, tenant_id: int, limit: int = 50) -> list[AlertEvent]:
    """This tenant's alert events, firing and resolved, newest first."""
    return list(
        session.scalars(
            select(AlertEvent)
            .where(AlertEvent.tenant_id == tenant_id)
            .order_by(AlertEvent.fired_at.desc(), AlertEvent.id.desc())
            .limit(limit)
        )
    )


def event_rows(events: list[AlertEvent]) -> list[dict[str, Any]]:
    """Alert events as table rows, values formatted in their rule's unit."""
    rows = []
    for e in events:
        rule = RULES.get(e.rule)
        show = rule.show if rule else count
        rows.append(
            {
                "Fired": as_utc(e.fired_at),
                "Rule": rule.title if rule else e.rule,
                "Severity": e.severity,
                "State": e.state,
                "Value": "" if e.value is None else show(e.value),
                "Threshold": show(e.threshold),
                "Last seen": as_utc(e.last_seen_at),
                "Resolved": as_utc(e.resolved_at) if e.resolved_at else None,
                "Message": e.message,
            }
        )
    return rows


def firing_count(session: Session, *, tenant_id: int) -> int:
    return int(
        session.scalar(select(func.count()).where(AlertEvent.tenant_id == tenant_id, AlertEvent.state == FIRING)) or 0
    )
