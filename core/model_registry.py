"""The model registry: which models the workbench may call, at what price, under which governance.

Each model id has a provider, a version, a risk tier (low, medium, high), prices in USD per
million tokens, a status and governance flags (``pii_allowed``, ``eu_hosted``,
``data_retention_days``, ``approved_by``). Status is a lifecycle:

    active ──deprecate(removal date)──> deprecated ──(removal date reached)──> retired
       ^                                    │                                     │
       └──────────────reactivate────────────┴────────────retire──────────────────>┘

A deprecated model whose removal date has come counts as retired without anyone touching it.
The gateway refuses retired and unregistered models (``ModelRetiredError``, nothing sent),
warns once per run about deprecated ones, and prices a call by the registry when it holds a
price (so an admin corrects a price without a release); routing skips models it may not pick.

Seeding: the built-in models (the price table of ``core.pricing`` and the offline provider's
models) are inserted when missing, idempotently, by ``snapshot`` (every reader goes through it),
never by a migration. Rows a migration inserted would be wiped with the test tables, collide
with a restored backup's rows, and could not follow a release that adds a model to the price
table; an insert-if-missing on read does all three right and never changes a row an admin
edited. Seeding is not audited: it is the workbench stating its defaults, not anyone's change.

Every change (``register``, ``deprecate``, ``retire``, ``reactivate``) needs
``Permission.MANAGE_MODELS`` and writes an audit entry in the same transaction.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.orm import Session

from core import audit, authz, pricing
from core.db import as_utc, insert_ignoring_duplicates
from core.errors import ModelRegistryError, ModelRetiredError
from core.models import LlmUsageEvent, RegisteredModel, table_of, utcnow
from core.prompts import AGENTS
from core.tenancy import Identity

log = logging.getLogger(__name__)
_R = table_of(RegisteredModel)
_U = table_of(LlmUsageEvent)

ACTIVE, DEPRECATED, RETIRED, UNREGISTERED = "active", "deprecated", "retired", "unregistered"
STATUSES = (ACTIVE, DEPRECATED, RETIRED)
RISK_TIERS = ("low", "medium", "high")
USAGE_WINDOW_DAYS = 7
"""Remaining usage of a deprecated model is counted over this many days, up to now."""
GOVERNANCE_FLAGS = ("pii_allowed", "eu_hosted", "data_retention_days", "approved_by")
"""The governance flags the forms offer; ``governance`` may hold further keys."""
BUILTIN_ACTOR = "workbench (built-in)"
_MODEL_RE = re.compile(r"^[\w.:/@+-]{1,120}$")
_PROVIDER_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class ModelSpec:
    """What ``register`` stores for a model (its status is the lifecycle's business)."""

    model: str
    provider: str
    version: str = ""
    risk_tier: str = "medium"
    input_per_mtok: float | None = None
    output_per_mtok: float | None = None
    cached_input_per_mtok: float | None = None
    governance: Mapping[str, Any] = field(default_factory=dict)
    notes: str = ""


@dataclass(frozen=True)
class ModelEntry:
    """One registry row as read."""

    spec: ModelSpec
    status: str
    """As stored; ``status_on`` says what it means today."""
    removal_date: date | None
    """Deprecated: the day it is retired; retired: the day it was."""
    updated_by: str = ""
    updated_at: datetime | None = None

    @property
    def model(self) -> str:
        return self.spec.model

    def status_on(self, today: date) -> str:
        """Active, deprecated or retired on ``today``: a deprecated model is retired from its removal date."""
        if self.status == DEPRECATED and self.removal_date is not None and self.removal_date <= today:
            return RETIRED
        return self.status

    @property
    def price(self) -> pricing.Price | None:
        """The registry's price, when it holds input and output prices (cached input defaults to input)."""
        s = self.spec
        if s.input_per_mtok is None or s.output_per_mtok is None:
            return None
        cached = s.cached_input_per_mtok if s.cached_input_per_mtok is not None else s.input_per_mtok
        return pricing.Price(s.input_per_mtok, s.output_per_mtok, cached)


# -- the built-in models -------------------------------------------------------------------------

_VENDOR_GOVERNANCE: dict[str, Any] = {
    "pii_allowed": False,
    "eu_hosted": False,
    "data_retention_days": 30,
    "approved_by": "",
}
_LOCAL_GOVERNANCE: dict[str, Any] = {
    "pii_allowed": True,
    "eu_hosted": None,
    "data_retention_days": 0,
    "approved_by": "",
}


@cache
def builtin_specs() -> tuple[ModelSpec, ...]:
    """The vendor models of the price table and the offline provider's model per agent."""
    specs = [
        ModelSpec(
            model,
            "anthropic" if model.startswith("claude") else "openai",
            risk_tier="medium",
            input_per_mtok=price.input,
            output_per_mtok=price.output,
            cached_input_per_mtok=price.cached_input,
            governance=_VENDOR_GOVERNANCE,
            notes="Built in: list price; text leaves the machine for the vendor. Review the flags.",
        )
        for model, price in pricing.PRICES.items()
    ]
    # The offline provider's model ids (core.providers.local: f"local-{agent}-1").
    specs += [
        ModelSpec(
            f"local-{agent}-1",
            "local",
            version="1",
            risk_tier="low",
            input_per_mtok=0.0,
            output_per_mtok=0.0,
            cached_input_per_mtok=0.0,
            governance=_LOCAL_GOVERNANCE,
            notes="Built in: the offline provider; runs on this machine, sends nothing.",
        )
        for agent in AGENTS
    ]
    return tuple(specs)


def _row(spec: ModelSpec, *, by: str, now: datetime) -> dict[str, Any]:
    return {
        "model": spec.model,
        "provider": spec.provider,
        "version": spec.version,
        "risk_tier": spec.risk_tier,
        "input_per_mtok": spec.input_per_mtok,
        "output_per_mtok": spec.output_per_mtok,
        "cached_input_per_mtok": spec.cached_input_per_mtok,
        "governance": dict(spec.governance),
        "notes": spec.notes,
        "updated_by": by,
        "updated_at": now,
    }


def _seed_missing(connection: Connection, present: Iterable[str]) -> bool:
    """Insert the built-in models not in the registry yet; True when any was missing, so the caller
    reads again (another process may have inserted it meanwhile: then this insert did nothing)."""
    known = set(present)
    missing = [s for s in builtin_specs() if s.model not in known]
    now = utcnow()
    for spec in missing:
        row = {**_row(spec, by=BUILTIN_ACTOR, now=now), "status": ACTIVE, "removal_date": None, "created_at": now}
        insert_ignoring_duplicates(connection, _R, row)
    return bool(missing)


# -- reading -------------------------------------------------------------------------------------


def _entry(row: Any) -> ModelEntry:
    spec = ModelSpec(
        row.model,
        row.provider,
        row.version or "",
        row.risk_tier,
        row.input_per_mtok,
        row.output_per_mtok,
        row.cached_input_per_mtok,
        dict(row.governance or {}),
        row.notes or "",
    )
    removal = as_utc(row.removal_date).date() if row.removal_date is not None else None
    updated = as_utc(row.updated_at) if row.updated_at is not None else None
    return ModelEntry(spec, row.status, removal, row.updated_by or "", updated)


@dataclass
class Snapshot:
    """The registry as read once (a gateway run keeps one on its ``CallContext``). Rows are turned
    into entries when first asked for: a run looks at a few models, not at every one."""

    rows: dict[str, Any]
    today: date
    _parsed: dict[str, ModelEntry] = field(default_factory=dict)
    _warned: set[str] = field(default_factory=set)

    @property
    def entries(self) -> dict[str, ModelEntry]:
        """Every registered model by id."""
        return {model: self._parse(model, row) for model, row in self.rows.items()}

    def _parse(self, model: str, row: Any) -> ModelEntry:
        entry = self._parsed.get(model)
        if entry is None:
            entry = self._parsed[model] = _entry(row)
        return entry

    def entry(self, model: str) -> ModelEntry | None:
        row = self.rows.get(model)
        return self._parse(model, row) if row is not None else None

    def status(self, model: str) -> str:
        """active, deprecated, retired, or unregistered."""
        entry = self.entry(model)
        return entry.status_on(self.today) if entry is not None else UNREGISTERED

    def usable(self, model: str) -> bool:
        """Routing may pick it and the gateway sends to it (a deprecated model still works)."""
        return self.status(model) in (ACTIVE, DEPRECATED)

    def price(self, model: str) -> pricing.Price | None:
        entry = self.entry(model)
        return entry.price if entry is not None else None

    def refusal(self, model: str) -> ModelRetiredError | None:
        """The error a call to ``model`` is refused with, or None when it may be called."""
        status = self.status(model)
        if status == UNREGISTERED:
            return ModelRetiredError(
                f"Model {model} is not in the model registry, so nothing was sent; pick another in Routing, or ask "
                f"an admin to register it (Models page, or `python -m core models add {model} --provider NAME`)."
            )
        if status == RETIRED:
            entry = self.entry(model)
            on = f" on {entry.removal_date.isoformat()}" if entry and entry.removal_date else ""
            return ModelRetiredError(
                f"Model {model} was retired{on}; pick another in Routing, or ask an admin to reactivate it."
            )
        return None

    def other_provider(self, model: str, provider: str) -> str | None:
        """Why ``model`` cannot be pinned under ``provider``, or None. The gateway sends every call to
        the configured provider whatever the pin says, so a pin of another provider's model would be
        answered by this one and recorded and priced as the other."""
        entry = self.entry(model)
        if entry is None or entry.spec.provider == provider:
            return None
        return f"Model {model} is served by {entry.spec.provider}, but this workbench calls {provider}"

    def warn_deprecated(self, model: str, *, trace_id: str) -> None:
        """Log once per snapshot (per run) that a deprecated model was called."""
        entry = self.entry(model)
        if entry is None or entry.status_on(self.today) != DEPRECATED or model in self._warned:
            return
        self._warned.add(model)
        removal = entry.removal_date.isoformat() if entry.removal_date else "a date not set"
        log.warning(
            "model %s is deprecated and will be removed on %s; pick another in Routing",
            model,
            removal,
            extra={"trace_id": trace_id, "model": model},
        )


def _connection(db: Connection | Session) -> Connection:
    return db.connection() if isinstance(db, Session) else db


def snapshot(db: Connection | Session, *, now: datetime | None = None) -> Snapshot:
    """Every registered model, the built-in ones inserted first if missing (one SELECT when none is)."""
    connection = _connection(db)
    rows = connection.execute(select(_R)).all()
    if _seed_missing(connection, (r.model for r in rows)):
        rows = connection.execute(select(_R)).all()
    return Snapshot({r.model: r for r in rows}, (now or utcnow()).date())


def list_models(db: Connection | Session, *, now: datetime | None = None) -> list[ModelEntry]:
    """The registry, by provider and model id."""
    return sorted(snapshot(db, now=now).entries.values(), key=lambda e: (e.spec.provider, e.model))


# -- changing ------------------------------------------------------------------------------------


def _validate(spec: ModelSpec) -> ModelSpec:
    spec = replace(spec, model=spec.model.strip(), provider=spec.provider.strip().lower(), version=spec.version.strip())
    if not _MODEL_RE.match(spec.model):
        raise ModelRegistryError(
            f"{spec.model!r} is not a model id: use up to 120 letters, digits and . - _ : / @ + only."
        )
    if not _PROVIDER_RE.match(spec.provider):
        raise ModelRegistryError(
            f"{spec.provider!r} is not a provider name: use lower-case letters, digits, - and _ (e.g. openai)."
        )
    if spec.risk_tier not in RISK_TIERS:
        raise ModelRegistryError(f"Risk tier {spec.risk_tier!r} is unknown; use one of {', '.join(RISK_TIERS)}.")
    for label, value in (
        ("input", spec.input_per_mtok),
        ("output", spec.output_per_mtok),
        ("cached input", spec.cached_input_per_mtok),
    ):
        if value is not None and not 0 <= value < 10_000:
            raise ModelRegistryError(f"The {label} price of {spec.model} must be 0 or more USD per 1M tokens.")
    if (spec.input_per_mtok is None) != (spec.output_per_mtok is None):
        raise ModelRegistryError(
            f"Give {spec.model} both an input and an output price, or neither (then the price table applies)."
        )
    return spec


def _state(entry: ModelEntry | None, today: date) -> dict[str, Any]:
    if entry is None:
        return {"status": UNREGISTERED}
    removal = entry.removal_date.isoformat() if entry.removal_date else None
    return {"status": entry.status_on(today), "removal_date": removal}


def _current(connection: Connection, model: str) -> ModelEntry | None:
    row = connection.execute(select(_R).where(_R.c.model == model)).first()
    return _entry(row) if row is not None else None


def _registered(connection: Connection, model: str) -> ModelEntry:
    entry = _current(connection, model)
    if entry is None and _seed_missing(connection, connection.execute(select(_R.c.model)).scalars()):
        entry = _current(connection, model)  # a built-in model on a registry nobody had read yet
    if entry is None:
        raise ModelRegistryError(
            f"Model {model} is not registered; add it first (Models page, or `python -m core models add`)."
        )
    return entry


def _audit(
    connection: Connection,
    by: Identity,
    model: str,
    action: str,
    before: dict[str, Any],
    after: dict[str, Any],
    **extra: Any,
) -> None:
    details = {"action": action, "before": before, "after": after, **extra}
    audit.record(connection, audit.MODEL_CHANGED, actor=by, tenant_id=None, subject=model, details=details)


def register(db: Connection | Session, *, by: Identity, spec: ModelSpec) -> ModelEntry:
    """Add ``spec.model`` (active) or update its provider, version, risk tier, prices, flags and notes."""
    authz.require(by, authz.Permission.MANAGE_MODELS)
    connection, spec, now = _connection(db), _validate(spec), utcnow()
    _seed_missing(connection, connection.execute(select(_R.c.model)).scalars())
    before = _current(connection, spec.model)
    values = _row(spec, by=by.name, now=now)
    if before is None:
        connection.execute(_R.insert().values(**values, status=ACTIVE, removal_date=None, created_at=now))
    else:
        connection.execute(update(_R).where(_R.c.model == spec.model).values(**values))
    after = _registered(connection, spec.model)
    changed = sorted(k for k, v in vars(spec).items() if before is None or vars(before.spec)[k] != v)
    action = "register" if before is None else "update"
    _audit(connection, by, spec.model, action, _state(before, now.date()), _state(after, now.date()), changed=changed)
    return after


def _set_status(
    db: Connection | Session, *, by: Identity, model: str, action: str, status: str, removal: date | None, reason: str
) -> ModelEntry:
    authz.require(by, authz.Permission.MANAGE_MODELS)
    connection, now = _connection(db), utcnow()
    before = _registered(connection, model)
    if action == "deprecate" and before.status_on(now.date()) == RETIRED:
        raise ModelRegistryError(f"Model {model} is retired; reactivate it first, then deprecate it with a date.")
    removal_at = datetime.combine(removal, time(), tzinfo=UTC) if removal is not None else None
    connection.execute(
        update(_R)
        .where(_R.c.model == model)
        .values(status=status, removal_date=removal_at, updated_by=by.name, updated_at=now)
    )
    after = _registered(connection, model)
    _audit(connection, by, model, action, _state(before, now.date()), _state(after, now.date()), reason=reason.strip())
    return after


def deprecate(
    db: Connection | Session, *, by: Identity, model: str, removal_date: date, reason: str = ""
) -> ModelEntry:
    """Mark ``model`` deprecated: it keeps working, with a warning, until ``removal_date`` (then retired)."""
    authz.require(by, authz.Permission.MANAGE_MODELS)
    if removal_date <= utcnow().date():
        raise ModelRegistryError(
            f"The removal date {removal_date.isoformat()} is not in the future; pick a later day, "
            f"or retire {model} now."
        )
    return _set_status(
        db, by=by, model=model, action="deprecate", status=DEPRECATED, removal=removal_date, reason=reason
    )


def retire(db: Connection | Session, *, by: Identity, model: str, reason: str = "") -> ModelEntry:
    """Retire ``model`` today: every call to it is refused and routing skips it."""
    return _set_status(db, by=by, model=model, action="retire", status=RETIRED, removal=utcnow().date(), reason=reason)


def reactivate(db: Connection | Session, *, by: Identity, model: str, reason: str = "") -> ModelEntry:
    """Make ``model`` active again (from deprecated or retired), its removal date cleared."""
    return _set_status(db, by=by, model=model, action="reactivate", status=ACTIVE, removal=None, reason=reason)


# -- remaining usage of deprecated models --------------------------------------------------------


@dataclass(frozen=True)
class RemainingUsage:
    """A deprecated model's calls over the last ``USAGE_WINDOW_DAYS`` days, and the days it has left."""

    model: str
    provider: str
    removal_date: date | None
    days_left: int | None
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    """None when calls were made and none of them was priced."""

    def line(self) -> str:
        """``gpt-4o: deprecated, removed on 2027-01-31 (20 days left), 12 calls in the last 7 days``."""
        if self.removal_date is None:
            when = "no removal date set"
        else:
            when = f"removed on {self.removal_date.isoformat()} ({self.days_left} days left)"
        return f"{self.model}: deprecated, {when}, {self.calls} calls in the last {USAGE_WINDOW_DAYS} days"


def remaining_usage(
    db: Connection | Session, *, identity: Identity, now: datetime | None = None, models: Iterable[str] | None = None
) -> list[RemainingUsage]:
    """Usage of every deprecated model (or of those of ``models`` that are), soonest removal first.

    Counted in the caller's tenant; across all tenants for a role with ``VIEW_ALL_TENANTS``.
    """
    now = now or utcnow()
    registry = snapshot(db, now=now)
    wanted = set(models) if models is not None else None
    deprecated = [
        e
        for e in registry.entries.values()
        if e.status_on(registry.today) == DEPRECATED and (wanted is None or e.model in wanted)
    ]
    if not deprecated:
        return []
    query = (
        select(
            _U.c.model,
            func.count(),
            func.coalesce(func.sum(_U.c.input_tokens), 0),
            func.coalesce(func.sum(_U.c.output_tokens), 0),
            func.sum(_U.c.cost_usd),
        )
        .where(
            _U.c.model.in_([e.model for e in deprecated]), _U.c.created_at >= now - timedelta(days=USAGE_WINDOW_DAYS)
        )
        .group_by(_U.c.model)
    )
    if not authz.allowed(identity, authz.Permission.VIEW_ALL_TENANTS):
        query = query.where(_U.c.tenant_id == identity.tenant_id)
    used = {row[0]: row for row in _connection(db).execute(query)}
    out = []
    for e in deprecated:
        row = used.get(e.model)
        days_left = (e.removal_date - registry.today).days if e.removal_date else None
        out.append(
            RemainingUsage(
                e.model,
                e.spec.provider,
                e.removal_date,
                days_left,
                int(row[1]) if row else 0,
                int(row[2]) if row else 0,
                int(row[3]) if row else 0,
                0.0 if row is None else float(row[4]) if row[4] is not None else None,
            )
        )
    return sorted(out, key=lambda u: (u.removal_date or date.max, u.model))


def routing_notes(registry: Snapshot, named: Iterable[str], usage: Iterable[RemainingUsage]) -> list[str]:
    """One line per model routing names that is not plainly active: deprecated (with its usage) or
    retired/unregistered (routing skips it)."""
    by_model = {u.model: u for u in usage}
    lines = []
    for model in sorted(set(named)):
        status = registry.status(model)
        if status == DEPRECATED and model in by_model:
            lines.append(by_model[model].line())
        elif status in (RETIRED, UNREGISTERED):
            lines.append(f"{model}: {status}, skipped by routing; name another model or ask an admin")
    return lines
