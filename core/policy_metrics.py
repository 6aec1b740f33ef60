"""``policy_violation_rate``: what the policy gateway found, per agent call (pages and alerts)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from core.models import LlmUsageEvent, PolicyViolation, table_of

_V = table_of(PolicyViolation)
_U = table_of(LlmUsageEvent)


@dataclass(frozen=True)
class PolicyRate:
    calls: int
    violations: int
    blocked: int
    by_rule: dict[str, int]

    @property
    def rate(self) -> float | None:
        """Violations per agent call in the window (None without calls)."""
        return self.violations / self.calls if self.calls else None


def policy_violation_rate(
    session: Session | Connection, *, tenant_id: int, since: datetime, until: datetime
) -> PolicyRate:
    """Policy violations per agent call of the tenant in ``[since, until)``, and how many by rule.

    Takes a session (pages) or a connection (``core.alerts``, which evaluates on one)."""
    calls = session.scalar(
        select(func.count()).where(_U.c.tenant_id == tenant_id, _U.c.created_at >= since, _U.c.created_at < until)
    )
    window = (_V.c.tenant_id == tenant_id, _V.c.created_at >= since, _V.c.created_at < until)
    by_rule = {
        str(rule): int(n)
        for rule, n in session.execute(
            select(_V.c.rule, func.count()).where(*window).group_by(_V.c.rule).order_by(func.count().desc(), _V.c.rule)
        )
    }
    blocked = session.scalar(select(func.count()).where(*window, _V.c.action == "blocked"))
    return PolicyRate(int(calls or 0), sum(by_rule.values()), int(blocked or 0), by_rule)
