"""``release check``: the seed's release checklist run against the live configuration and database.

Items, in the checklist's order (``core.release_items.ITEMS``): migrations applied, golden
regression passed, cost estimates reviewed, prompt versions pinned, secrets verified, rollback plan
ready. Each is checked on its own connection, so one that cannot be read (a schema too old for its
table) fails with the reason and the others still run. The check never migrates: a pending
migration must stay observable. It runs in any environment; only the development-key rule depends
on it (``core.release_secrets``).

``record`` keeps the outcome (``release_checks``) and its audit entry in one transaction, unless the
schema is so old that those tables do not exist yet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, inspect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core import audit, authz, release_costs, release_items, release_secrets
from core.authz import Permission
from core.errors import WorkbenchError
from core.models import ReleaseCheck, table_of
from core.release_items import ITEMS, ItemResult
from core.settings import Settings
from core.tenancy import Identity

__all__ = ["ITEMS", "ItemResult", "ReleaseReport", "cost_lines", "record", "run_check", "table_lines"]


@dataclass(frozen=True)
class ReleaseReport:
    environment: str
    results: list[ItemResult]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[str]:
        return [r.item for r in self.results if not r.passed]

    def result(self, item: str) -> ItemResult:
        return next(r for r in self.results if r.item == item)

    def as_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "passed": self.passed,
            "failed": self.failed,
            "results": [{**r.as_dict(), "details": r.details} for r in self.results],
        }


def _guarded(item: str, check: Callable[[], ItemResult]) -> ItemResult:
    """The item's result, or a failure saying why it could not be checked."""
    try:
        return check()
    except SQLAlchemyError as error:
        return ItemResult(
            item,
            False,
            f"Could not be checked: the database cannot answer it ({type(error).__name__}); bring the schema to "
            "head first (`python -m core migrate`) and check that DATABASE_URL is right.",
        )
    except WorkbenchError as error:
        return ItemResult(item, False, f"Could not be checked: {error}")


def run_check(engine: Engine, settings: Settings) -> ReleaseReport:
    """Every checklist item against ``engine`` and ``settings``; nothing is changed."""
    results = [_guarded(release_items.MIGRATIONS, lambda: release_items.migrations_item(engine))]
    found: list[release_items.ServingRun] = []

    def golden() -> ItemResult:
        with Session(engine) as session:
            found.append(release_items.serving_run(session))
        return release_items.golden_item(found[0])

    def costs() -> ItemResult:
        with engine.connect() as connection:
            return release_costs.costs_item(connection, settings, found[0].run if found else None)

    def pinned() -> ItemResult:
        with Session(engine) as session:
            return release_items.pinned_item(session, settings)

    def secrets() -> ItemResult:
        with engine.connect() as connection:
            models = {m for named in release_costs.configured_models(connection, settings).values() for m in named}
            return release_secrets.secrets_item(connection, settings, models)

    def rollback() -> ItemResult:
        with Session(engine) as session:
            return release_items.rollback_item(session, settings)

    results.append(_guarded(release_items.GOLDEN, golden))
    results.append(_guarded(release_items.COSTS, costs))
    results.append(_guarded(release_items.PINNED, pinned))
    results.append(_guarded(release_items.SECRETS, secrets))
    results.append(_guarded(release_items.ROLLBACK, rollback))
    return ReleaseReport(settings.environment, results)


def record(engine: Engine, report: ReleaseReport, *, actor: Identity) -> int | None:
    """Store the check and its audit entry together; None (nothing stored) when the schema predates
    the ``release_checks`` table or the audit log."""
    authz.require(actor, Permission.VIEW_OPERATIONS)
    tables = set(inspect(engine).get_table_names())
    if not {"release_checks", "audit_log", "audit_head"} <= tables:
        return None
    with engine.begin() as connection:
        inserted = connection.execute(
            table_of(ReleaseCheck)
            .insert()
            .values(
                environment=report.environment,
                passed=report.passed,
                actor=actor.name[:320],
                results=[r.as_dict() for r in report.results],
            )
        ).inserted_primary_key
        assert inserted is not None  # an INSERT of one row always has one
        check_id = int(inserted[0])
        audit.record(
            connection,
            audit.RELEASE_CHECK,
            actor=actor,
            tenant_id=None,
            subject=f"release check #{check_id}: {'passed' if report.passed else 'failed'}",
            details={
                "release_check_id": check_id,
                "environment": report.environment,
                "passed": report.passed,
                "failed": report.failed,
            },
        )
    return check_id


def table_lines(report: ReleaseReport) -> list[str]:
    """The pass/fail table: item, PASS or FAIL, reason."""
    width = max(len(item) for item in ITEMS)
    lines = [f"{'item':<{width}}  result  reason"]
    lines += [f"{r.item:<{width}}  {'PASS' if r.passed else 'FAIL':<6}  {r.reason}" for r in report.results]
    return lines


def cost_lines(report: ReleaseReport) -> list[str]:
    """The cost estimate: USD per paragraph of the golden run under each configured model."""
    details = report.result(release_items.COSTS).details
    rows = details.get("table") or []
    if not rows:
        return []
    width = max(len("model"), *(len(r["model"]) for r in rows))
    lines = [
        f"cost per paragraph, golden run #{details['run_id']} ({details['paragraphs']} paragraphs, "
        f"cap ${details['cap_usd']:g}):",
        f"  {'model':<{width}}  {'mean USD':>10}  {'max USD':>10}  agents",
    ]
    for r in rows:
        mean = "no price" if r["mean_usd"] is None else f"{r['mean_usd']:.6f}"
        top = "no price" if r["max_usd"] is None else f"{r['max_usd']:.6f}"
        lines.append(f"  {r['model']:<{width}}  {mean:>10}  {top:>10}  {', '.join(r['agents'])}")
    return lines
