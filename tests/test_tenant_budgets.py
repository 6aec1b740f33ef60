"""A workspace's own token budgets: set by ops on the Operations page, audited with before and
after, checked before they are saved, enforced by the gateway before a call is sent, and never
reaching another workspace."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import Engine

from core import audit, authz, db, gateway, tenant_budgets
from core.errors import BudgetConfigError, BudgetExceededError, PermissionDeniedError
from core.settings import get_settings, reset_settings
from core.tenancy import Identity, bootstrap, create_tenant
from tests.fakellm import FakeLLM
from tests.test_gateway import context, events, use_provider, verify
from tests.ui_helpers import MakeApp


@pytest.fixture(autouse=True)
def _settings_back() -> Iterator[None]:
    yield
    reset_settings()


def _ops(ident: Identity) -> Identity:
    return replace(ident, role=authz.OPS, name="ops user")


def _own(engine: Engine, tenant_id: int) -> dict[str, int | None]:
    with db.session_scope(engine) as s:
        return {b.budget.key: b.own for b in tenant_budgets.budget_settings(s, tenant_id=tenant_id)}


def _set(engine: Engine, actor: Identity, **values: int | None) -> list[tenant_budgets.BudgetSetting]:
    with db.session_scope(engine) as s:
        return tenant_budgets.update_budgets(s, tenant_id=actor.tenant_id, values=values, actor=actor)


def _budget_entries(engine: Engine) -> list[audit.Entry]:
    with engine.connect() as connection:
        found = audit.search(connection, viewer=authz.cli_identity(0), event_types=[audit.BUDGET_CHANGED], limit=100)
    return list(reversed(found))


def test_a_workspace_starts_on_the_environments_defaults(clean_db: Engine, identity: Identity) -> None:
    settings = get_settings()
    with db.session_scope(clean_db) as s:
        shown = tenant_budgets.budget_settings(s, tenant_id=identity.tenant_id)
    assert [(b.budget.key, b.own, b.effective) for b in shown] == [
        ("paragraph", None, settings.budget_paragraph_tokens),
        ("librarian", None, settings.budget_librarian_chunk_tokens),
        ("writer", None, settings.budget_writer_tokens),
        ("verifier", None, settings.budget_verifier_tokens),
        ("rewriter", None, settings.budget_rewriter_tokens),
    ]
    with clean_db.connect() as connection:
        limits = tenant_budgets.limits(connection, identity.tenant_id)
    assert limits.paragraph == settings.budget_paragraph_tokens
    assert limits.stage("writer") == settings.budget_writer_tokens


def test_a_change_is_saved_audited_with_before_and_after_and_can_return_to_the_default(
    clean_db: Engine, identity: Identity
) -> None:
    ops = _ops(identity)
    default_writer = get_settings().budget_writer_tokens
    shown = {b.budget.key: b for b in _set(clean_db, ops, writer=5_000, paragraph=20_000)}
    assert (shown["writer"].own, shown["writer"].effective) == (5_000, 5_000)
    assert (shown["verifier"].own, shown["verifier"].effective) == (None, get_settings().budget_verifier_tokens)
    [entry] = _budget_entries(clean_db)
    assert (entry.actor, entry.tenant_id, entry.subject) == ("ops user", identity.tenant_id, "token budgets")
    assert entry.details["before"]["writer"] is None and entry.details["after"]["writer"] == 5_000
    assert entry.details["effective"]["paragraph"] == 20_000

    _set(clean_db, ops, writer=5_000)  # the same values again: nothing to record
    assert len(_budget_entries(clean_db)) == 1

    _set(clean_db, ops, writer=None)  # only the keys given change
    assert _own(clean_db, identity.tenant_id) == {
        "paragraph": 20_000,
        "librarian": None,
        "writer": None,
        "verifier": None,
        "rewriter": None,
    }
    last = _budget_entries(clean_db)[-1]
    assert (last.details["before"]["writer"], last.details["after"]["writer"]) == (5_000, None)
    assert last.details["effective"]["writer"] == default_writer
    with clean_db.connect() as connection:
        assert audit.verify(connection).intact


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"writer": 50}, "Writer, per call must be between 100 and 10,000,000 tokens; got 50."),
        ({"paragraph": 20_000_000}, "Per paragraph run must be between 100 and 10,000,000 tokens; got 20,000,000."),
        ({"verifier": 1500.5}, "Verifier, per call: give a whole number of tokens, not 1500.5."),
        ({"verifier": True}, "give a whole number of tokens, not True"),
        ({"translator": 1_000}, "There is no budget 'translator'; the budgets are: paragraph, librarian, writer"),
        ({"paragraph": 5_000}, "Writer, per call (8,000 tokens) is above the paragraph budget (5,000)"),
    ],
)
def test_a_budget_that_cannot_work_is_refused_naming_it_and_nothing_is_saved(
    clean_db: Engine, identity: Identity, values: dict[str, object], says: str
) -> None:
    with pytest.raises(BudgetConfigError) as refused:
        _set(clean_db, _ops(identity), **values)  # type: ignore[arg-type]
    assert says in str(refused.value)
    assert set(_own(clean_db, identity.tenant_id).values()) == {None}
    assert _budget_entries(clean_db) == []


def test_a_researcher_or_another_workspace_is_refused(clean_db: Engine, identity: Identity) -> None:
    with pytest.raises(PermissionDeniedError, match=r"Your role \(researcher\) may not change token budgets"):
        _set(clean_db, replace(identity, role=authz.RESEARCHER), writer=5_000)
    with db.session_scope(clean_db) as s:
        other = create_tenant(s, slug="other", name="Other lab")
    with (
        pytest.raises(PermissionDeniedError, match="only be changed in your own workspace"),
        db.session_scope(clean_db) as s,
    ):
        tenant_budgets.update_budgets(s, tenant_id=other.tenant_id, values={"writer": 5_000}, actor=_ops(identity))
    assert set(_own(clean_db, identity.tenant_id).values()) == {None}
    assert set(_own(clean_db, other.tenant_id).values()) == {None}
    assert _budget_entries(clean_db) == []


def test_the_gateway_holds_each_workspace_to_its_own_budget_before_sending(
    fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, clean_db: Engine, identity: Identity
) -> None:
    use_provider(monkeypatch, fake, "openai")
    with db.session_scope(clean_db) as s:
        other = create_tenant(s, slug="other", name="Other lab")
    _set(clean_db, _ops(identity), verifier=100)  # the verifier's prompt alone is more than that

    with pytest.raises(BudgetExceededError) as refused, db.session_scope(clean_db) as s:
        verify(context(s, identity, trace_id="tight"))
    assert "over its stage budget of 100" in str(refused.value)
    assert "Token budgets on the Operations page" in str(refused.value)
    assert fake.requests == []  # refused before anything was sent
    [event] = events(clean_db, "tight")
    assert event.error_class == "BudgetExceeded" and event.tenant_id == identity.tenant_id

    with db.session_scope(clean_db) as s:  # the other workspace still has the default
        assert verify(context(s, other, trace_id="roomy")).verdict == "supported"
    assert len(fake.requests) == 1


def test_a_paragraph_run_draws_on_the_workspaces_paragraph_budget(clean_db: Engine, identity: Identity) -> None:
    _set(clean_db, _ops(identity), paragraph=30_000)
    with db.session_scope(clean_db) as s:
        ctx = context(s, identity, trace_id="run-1")
        budget = gateway.open_paragraph_budget(ctx, settings=get_settings())
    assert budget.limit == 30_000 and ctx.limits is not None and ctx.limits.paragraph == 30_000
    _set(clean_db, _ops(identity), paragraph=40_000)
    assert ctx.limits.paragraph == 30_000, "a run keeps the limits it started with"


def test_the_operations_page_shows_and_saves_the_budgets(make_app: MakeApp, clean_db: Engine) -> None:
    with db.session_scope(clean_db) as s:
        ident = bootstrap(s)
    at = make_app("pages/operations.py", role="ops")
    assert "Token budgets" in [h.value for h in at.subheader]
    writer = at.number_input(key="operations_budget_writer")
    assert writer.value is None and "default 8,000, BUDGET_WRITER_TOKENS" in writer.label
    writer.set_value(6_000)
    at.button(key="FormSubmitter:operations_budgets-Save budgets").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert _own(clean_db, ident.tenant_id)["writer"] == 6_000
    [entry] = _budget_entries(clean_db)
    assert entry.details["after"]["writer"] == 6_000 and entry.actor.startswith("Ops")
    assert at.number_input(key="operations_budget_writer").value == 6_000

    at.number_input(key="operations_budget_paragraph").set_value(5_000)
    at.button(key="FormSubmitter:operations_budgets-Save budgets").click().run()
    assert any("is above the paragraph budget" in e.value for e in at.error), [e.value for e in at.error]
    assert _own(clean_db, ident.tenant_id)["paragraph"] is None
