"""A workspace's token budgets: the environment's defaults, or the workspace's own where ops set one.

Ops tune spend per workspace without a deploy: a group drafting long review paragraphs needs a
larger paragraph budget than one drafting short abstracts. The gateway reads a run's limits once,
at the run's first call (``CallContext.limits``), so a change reaches the next run and never a run
half-way through. Every change is audited with before and after.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from core import audit, authz
from core.authz import Permission
from core.db import insert_ignoring_duplicates
from core.errors import BudgetConfigError, PermissionDeniedError
from core.models import TenantBudget, table_of, utcnow
from core.settings import Settings, get_settings
from core.tenancy import Identity

log = logging.getLogger(__name__)
_T = table_of(TenantBudget)

MINIMUM_TOKENS = 100
"""Below this no agent call fits, so a smaller budget would only refuse every run."""
MAXIMUM_TOKENS = 10_000_000


@dataclass(frozen=True)
class Budget:
    """One budget: its key (an agent, or ``paragraph``), column, label and environment default."""

    key: str
    column: str
    label: str
    setting: str
    variable: str


BUDGETS: tuple[Budget, ...] = (
    Budget("paragraph", "paragraph_tokens", "Per paragraph run", "budget_paragraph_tokens", "BUDGET_PARAGRAPH_TOKENS"),
    Budget(
        "librarian",
        "librarian_chunk_tokens",
        "Librarian, per chunk",
        "budget_librarian_chunk_tokens",
        "BUDGET_LIBRARIAN_CHUNK_TOKENS",
    ),
    Budget("writer", "writer_tokens", "Writer, per call", "budget_writer_tokens", "BUDGET_WRITER_TOKENS"),
    Budget("verifier", "verifier_tokens", "Verifier, per call", "budget_verifier_tokens", "BUDGET_VERIFIER_TOKENS"),
    Budget("rewriter", "rewriter_tokens", "Rewriter, per call", "budget_rewriter_tokens", "BUDGET_REWRITER_TOKENS"),
)
BY_KEY = {b.key: b for b in BUDGETS}
STAGES = tuple(b.key for b in BUDGETS if b.key != "paragraph")


@dataclass(frozen=True)
class Limits:
    """The limits one run draws on, in tokens, by budget key."""

    tokens: Mapping[str, int]

    @property
    def paragraph(self) -> int:
        return self.tokens["paragraph"]

    def stage(self, agent: str) -> int:
        return self.tokens[agent]


@dataclass(frozen=True)
class BudgetSetting:
    """What the Operations page shows of one budget."""

    budget: Budget
    default: int
    own: int | None
    """The workspace's own value, or None when it uses the environment's default."""

    @property
    def effective(self) -> int:
        return self.default if self.own is None else self.own


def _defaults(settings: Settings) -> dict[str, int]:
    return {b.key: int(getattr(settings, b.setting)) for b in BUDGETS}


def _own(connection: Connection, tenant_id: int) -> dict[str, int | None]:
    row = connection.execute(select(_T).where(_T.c.tenant_id == tenant_id)).mappings().first()
    return {b.key: (row[b.column] if row is not None else None) for b in BUDGETS}


def defaults(settings: Settings | None = None) -> Limits:
    """The environment's limits, which a workspace without its own budgets draws on."""
    return Limits(_defaults(settings or get_settings()))


def limits(connection: Connection, tenant_id: int, settings: Settings | None = None) -> Limits:
    """The limits a run of this tenant draws on (one indexed read; the gateway calls it once per run)."""
    defaults = _defaults(settings or get_settings())
    return Limits(_effective(defaults, _own(connection, tenant_id)))


def _effective(defaults: Mapping[str, int], own: Mapping[str, int | None]) -> dict[str, int]:
    return {key: default if (value := own[key]) is None else value for key, default in defaults.items()}


def budget_settings(session: Session, *, tenant_id: int, settings: Settings | None = None) -> list[BudgetSetting]:
    """Every budget of this tenant, in ``BUDGETS`` order, with its default and the tenant's own value."""
    defaults = _defaults(settings or get_settings())
    own = _own(session.connection(), tenant_id)
    return [BudgetSetting(b, defaults[b.key], own[b.key]) for b in BUDGETS]


def _checked(budget: Budget, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
        raise BudgetConfigError(f"{budget.label}: give a whole number of tokens, not {value!r}.")
    tokens = int(value)
    if not MINIMUM_TOKENS <= tokens <= MAXIMUM_TOKENS:
        raise BudgetConfigError(
            f"{budget.label} must be between {MINIMUM_TOKENS:,} and {MAXIMUM_TOKENS:,} tokens; got {tokens:,}."
        )
    return tokens


def update_budgets(
    session: Session,
    *,
    tenant_id: int,
    values: Mapping[str, int | None],
    actor: Identity,
    settings: Settings | None = None,
) -> list[BudgetSetting]:
    """Set this tenant's own budgets; only the keys given change, and None returns a budget to the
    environment's default. Raises ``BudgetConfigError`` naming the value to fix (nothing saved).
    Requires ``MANAGE_BUDGETS`` in the actor's own tenant; audited (before and after) in the same
    transaction. The next run uses them."""
    authz.require(actor, Permission.MANAGE_BUDGETS)
    if actor.tenant_id != tenant_id:
        raise PermissionDeniedError("Token budgets can only be changed in your own workspace.")
    unknown = sorted(set(values) - set(BY_KEY))
    if unknown:
        raise BudgetConfigError(f"There is no budget {unknown[0]!r}; the budgets are: {', '.join(BY_KEY)}.")
    settings = settings or get_settings()
    connection = session.connection()
    defaults = _defaults(settings)
    before = _own(connection, tenant_id)
    after = dict(before)
    for key, value in values.items():
        after[key] = _checked(BY_KEY[key], value)
    effective = _effective(defaults, after)
    for stage in STAGES:
        if effective[stage] > effective["paragraph"]:
            raise BudgetConfigError(
                f"{BY_KEY[stage].label} ({effective[stage]:,} tokens) is above the paragraph budget "
                f"({effective['paragraph']:,}), so no run could ever spend it; lower it or raise the paragraph budget."
            )
    if after == before:
        return budget_settings(session, tenant_id=tenant_id, settings=settings)
    columns = {BY_KEY[k].column: v for k, v in after.items()}
    row = {**columns, "actor": actor.name, "updated_at": utcnow()}
    # Insert-or-ignore then update: two people saving at once both succeed, the later one wins.
    insert_ignoring_duplicates(connection, _T, {"tenant_id": tenant_id, **row})
    connection.execute(_T.update().where(_T.c.tenant_id == tenant_id).values(**row))
    audit.record(
        connection,
        audit.BUDGET_CHANGED,
        actor=actor,
        tenant_id=tenant_id,
        subject="token budgets",
        details={"before": before, "after": after, "effective": effective},
    )
    log.info("token budgets of tenant %s set by %s: %s", tenant_id, actor.name, after)
    return budget_settings(session, tenant_id=tenant_id, settings=settings)
