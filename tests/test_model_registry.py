"""The model registry: seeded built-ins, the lifecycle (authorised and audited), the gateway refusing
retired and unregistered models before anything is sent (the fake OpenAI server counts requests),
deprecated models warned and their remaining usage counted per tenant, routing that never picks a
model it may not, registry prices in the cost, the CLI and the Models page.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, select
from sqlalchemy.orm import Session

from core import audit, authz, db, model_registry, pricing, routing, ui
from core.complexity import SourceFact, paragraph_complexity
from core.errors import ModelRegistryError, ModelRetiredError, PermissionDeniedError, RoutingConfigError
from core.models import AuditEntry, utcnow
from core.prompts import load
from core.providers import get_provider
from core.settings import get_settings, reset_settings
from core.tenancy import Identity, bootstrap, create_tenant
from tests.fakellm import FakeLLM
from tests.test_cli import run_cli
from tests.test_gateway import context, events, use_provider, verify
from tests.ui_helpers import MakeApp

SIMPLE_BRIEF = "Summarise the effect of biochar on maize yield."
SIMPLE = paragraph_complexity(SIMPLE_BRIEF, [SourceFact("Biochar raised maize yield by 12% in sandy soils.", 1)])


@pytest.fixture(autouse=True)
def _settings_back() -> Iterator[None]:
    yield
    reset_settings()


def admin(tenant_id: int) -> Identity:
    return authz.cli_identity(tenant_id)


def as_role(identity: Identity, role: str) -> Identity:
    return Identity(tenant_id=identity.tenant_id, user_id=identity.user_id, role=role, name=f"{role} <{role}@x>")


def register_models(
    db_: Connection | Session, *models: str, provider: str = "local", tenant_id: int = 1, **prices: float
) -> None:
    """Register ``models`` as an admin (other test modules use this for models of their own)."""
    for model in models:
        spec = model_registry.ModelSpec(model, provider, **prices)  # type: ignore[arg-type]
        model_registry.register(db_, by=admin(tenant_id), spec=spec)


def audit_entries(session: Session) -> list[AuditEntry]:
    return list(session.scalars(select(AuditEntry).where(AuditEntry.event_type == audit.MODEL_CHANGED)))


# -- the registry and its lifecycle -----------------------------------------------------------------


def test_the_built_in_models_are_seeded_once_with_their_prices(session: Session, identity: Identity) -> None:
    entries = {e.model: e for e in model_registry.list_models(session)}
    assert set(pricing.PRICES) | {f"local-{a}-1" for a in routing.AGENTS} <= set(entries)
    mini = entries["gpt-4.1-mini"]
    assert (mini.spec.provider, mini.status, mini.price) == ("openai", "active", pricing.PRICES["gpt-4.1-mini"])
    assert entries["claude-haiku-4-5"].spec.provider == "anthropic"
    writer = entries["local-writer-1"]
    assert (writer.spec.provider, writer.spec.risk_tier, writer.spec.governance["pii_allowed"]) == (
        "local",
        "low",
        True,
    )
    assert set(model_registry.GOVERNANCE_FLAGS) <= set(mini.spec.governance)
    assert len(model_registry.list_models(session)) == len(entries), "reading again seeds nothing twice"


def test_every_lifecycle_change_is_refused_without_manage_models(session: Session, identity: Identity) -> None:
    later = utcnow().date() + timedelta(days=30)
    spec = model_registry.ModelSpec("house-model-1", "openai")
    for role in (authz.RESEARCHER, authz.PROMPT_ENGINEER, authz.OPS):
        who = as_role(identity, role)
        for change, kwargs in (
            (model_registry.register, {"spec": spec}),
            (model_registry.deprecate, {"model": "gpt-4o", "removal_date": later}),
            (model_registry.retire, {"model": "gpt-4o"}),
            (model_registry.reactivate, {"model": "gpt-4o"}),
        ):
            with pytest.raises(PermissionDeniedError, match="may not change the model registry"):
                change(session, by=who, **kwargs)
    assert model_registry.snapshot(session).status("gpt-4o") == "active"
    assert model_registry.snapshot(session).status("house-model-1") == "unregistered"
    assert audit_entries(session) == []


def test_each_lifecycle_change_by_an_admin_is_audited_with_before_and_after(
    session: Session, identity: Identity
) -> None:
    boss = as_role(identity, authz.ADMIN)
    later = utcnow().date() + timedelta(days=30)
    spec = model_registry.ModelSpec("house-model-1", "openai", "2025-01", "high", 1.0, 4.0, None, {"eu_hosted": True})
    assert model_registry.register(session, by=boss, spec=spec).status == "active"
    model_registry.deprecate(session, by=boss, model="house-model-1", removal_date=later, reason="replaced")
    model_registry.retire(session, by=boss, model="house-model-1", reason="gone")
    model_registry.reactivate(session, by=boss, model="house-model-1")
    session.commit()
    entries = audit_entries(session)
    assert [(e.subject, e.details["action"]) for e in entries] == [
        ("house-model-1", action) for action in ("register", "deprecate", "retire", "reactivate")
    ]
    assert [e.details["after"]["status"] for e in entries] == ["active", "deprecated", "retired", "active"]
    assert [e.details["before"]["status"] for e in entries] == ["unregistered", "active", "deprecated", "retired"]
    assert entries[1].details["after"]["removal_date"] == later.isoformat()
    assert entries[1].details["reason"] == "replaced"
    assert all(e.actor == boss.name and e.tenant_id is None for e in entries)
    assert audit.verify(session.connection()).intact

    updated = model_registry.register(session, by=boss, spec=spec.__class__(**{**vars(spec), "input_per_mtok": 2.0}))
    assert updated.price == pricing.Price(2.0, 4.0, 2.0) and updated.spec.governance == {"eu_hosted": True}
    assert audit_entries(session)[-1].details["changed"] == ["input_per_mtok"]


def test_lifecycle_mistakes_are_refused_with_what_to_do(session: Session, identity: Identity) -> None:
    boss = admin(identity.tenant_id)
    with pytest.raises(ModelRegistryError, match="not registered; add it first"):
        model_registry.retire(session, by=boss, model="nobody-knows-me")
    with pytest.raises(ModelRegistryError, match="not in the future"):
        model_registry.deprecate(session, by=boss, model="gpt-4o", removal_date=utcnow().date())
    model_registry.retire(session, by=boss, model="gpt-4o")
    with pytest.raises(ModelRegistryError, match="reactivate it first"):
        model_registry.deprecate(session, by=boss, model="gpt-4o", removal_date=date(2999, 1, 1))
    for bad, match in (
        (model_registry.ModelSpec("gpt 5", "openai"), "is not a model id"),
        (model_registry.ModelSpec("m-1", "Open AI"), "is not a provider name"),
        (model_registry.ModelSpec("m-1", "openai", risk_tier="extreme"), "Risk tier"),
        (model_registry.ModelSpec("m-1", "openai", input_per_mtok=-1.0, output_per_mtok=1.0), "0 or more"),
        (model_registry.ModelSpec("m-1", "openai", input_per_mtok=1.0), "both an input and an output price"),
    ):
        with pytest.raises(ModelRegistryError, match=match):
            model_registry.register(session, by=boss, spec=bad)


def test_a_deprecated_model_counts_as_retired_from_its_removal_date(session: Session, identity: Identity) -> None:
    removal = utcnow().date() + timedelta(days=3)
    model_registry.deprecate(session, by=admin(identity.tenant_id), model="gpt-4o", removal_date=removal)
    assert model_registry.snapshot(session).status("gpt-4o") == "deprecated"
    on_the_day = model_registry.snapshot(session, now=utcnow() + timedelta(days=3))
    assert on_the_day.status("gpt-4o") == "retired" and not on_the_day.usable("gpt-4o")
    refusal = on_the_day.refusal("gpt-4o")
    assert refusal is not None and f"Model gpt-4o was retired on {removal.isoformat()}" in str(refusal)


# -- the gateway ----------------------------------------------------------------------------------


def test_a_retired_model_is_refused_before_anything_is_sent(
    fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, session: Session, identity: Identity
) -> None:
    use_provider(monkeypatch, fake, "openai")  # a compatible server: the default model gpt-4.1-mini
    model_registry.retire(session, by=admin(identity.tenant_id), model="gpt-4.1-mini", reason="test")
    session.commit()
    today = utcnow().date().isoformat()
    with pytest.raises(ModelRetiredError) as refused:
        verify(context(session, identity))
    assert str(refused.value) == (
        f"Model gpt-4.1-mini was retired on {today}; pick another in Routing, or ask an admin to reactivate it."
    )
    assert len(fake.requests) == 0, "nothing reached the provider"
    [event] = events(session.get_bind())  # type: ignore[arg-type]
    assert (event.model, event.error_class, event.input_tokens, event.output_tokens) == (
        "gpt-4.1-mini",
        "ModelRetired",
        0,
        0,
    )


@pytest.mark.parametrize(("model", "says"), [("gpt-4o", "was retired on"), ("house-model-7", "not in the model")])
def test_a_workbench_models_override_to_a_retired_or_unregistered_model_is_refused_at_call_time(
    model: str, says: str, fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, session: Session, identity: Identity
) -> None:
    use_provider(monkeypatch, fake, "openai", WORKBENCH_MODELS=f'{{"verifier": "{model}"}}')
    if model == "gpt-4o":
        model_registry.retire(session, by=admin(identity.tenant_id), model=model)
        session.commit()
    with pytest.raises(ModelRetiredError, match=says):
        verify(context(session, identity))
    assert len(fake.requests) == 0
    [event] = events(session.get_bind())  # type: ignore[arg-type]
    assert (event.model, event.error_class, event.routing_tier) == (model, "ModelRetired", "override")


def test_a_deprecated_model_works_warns_once_per_run_and_its_remaining_usage_is_counted_per_tenant(
    fake: FakeLLM,
    monkeypatch: pytest.MonkeyPatch,
    session: Session,
    identity: Identity,
    caplog: pytest.LogCaptureFixture,
) -> None:
    use_provider(monkeypatch, fake, "openai")
    removal = utcnow().date() + timedelta(days=10)
    model_registry.deprecate(session, by=admin(identity.tenant_id), model="gpt-4.1-mini", removal_date=removal)
    other = create_tenant(session, slug="other", name="Other")
    session.commit()
    ctx = context(session, identity)
    with caplog.at_level(logging.WARNING, logger="core.model_registry"):
        verify(ctx, "First sentence.")
        verify(ctx, "Second sentence.")
    warnings = [r.getMessage() for r in caplog.records if r.name == "core.model_registry"]
    assert warnings == [f"model gpt-4.1-mini is deprecated and will be removed on {removal}; pick another in Routing"]
    verify(context(session, other, trace_id="other-run"))
    assert len(fake.requests) == 3

    [mine] = model_registry.remaining_usage(session, identity=identity)
    own = [e for e in events(session.get_bind()) if e.tenant_id == identity.tenant_id]  # type: ignore[arg-type]
    assert (mine.model, mine.calls, mine.days_left, mine.removal_date) == ("gpt-4.1-mini", 2, 10, removal)
    assert mine.input_tokens == sum(e.input_tokens for e in own) and mine.output_tokens > 0
    assert mine.cost_usd == pytest.approx(sum(float(e.cost_usd or 0) for e in own))
    assert mine.line() == f"gpt-4.1-mini: deprecated, removed on {removal} (10 days left), 2 calls in the last 7 days"
    [everyone] = model_registry.remaining_usage(session, identity=as_role(identity, authz.ADMIN))
    assert everyone.calls == 3, "an admin sees every workspace's calls"
    [ops] = model_registry.remaining_usage(session, identity=as_role(identity, authz.OPS))
    assert ops.calls == 2, "ops sees its own workspace only"


def test_the_registry_price_wins_over_the_table_and_an_unpriced_model_stays_unpriced(
    fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, session: Session, identity: Identity
) -> None:
    use_provider(monkeypatch, fake, "openai", WORKBENCH_MODELS='{"verifier": "house-model-7"}')
    register_models(session, "house-model-7", provider="openai")  # no price, not in the table
    session.commit()
    verify(context(session, identity, trace_id="unpriced"))
    [unpriced] = events(session.get_bind(), "unpriced")  # type: ignore[arg-type]
    assert (unpriced.cost_usd, unpriced.pricing) == (None, "unknown_model")

    register_models(session, "house-model-7", provider="openai", input_per_mtok=100.0, output_per_mtok=200.0)
    session.commit()
    verify(context(session, identity, trace_id="priced"), "Another sentence.")
    [priced] = events(session.get_bind(), "priced")  # type: ignore[arg-type]
    expected = (priced.input_tokens * 100.0 + priced.output_tokens * 200.0) / 1e6
    assert priced.pricing == "priced" and float(priced.cost_usd or 0) == pytest.approx(expected)


# -- routing --------------------------------------------------------------------------------------


def choose(session: Session, config: routing.RoutingConfig) -> routing.Route:
    settings = get_settings()
    return routing.choose(
        get_provider(settings.provider),
        load("writer"),
        settings,
        config=routing.StoredConfig(1, config),
        complexity=SIMPLE,
        models=model_registry.snapshot(session),
    )


def local_config(simple: str, override: str | None = None) -> routing.RoutingConfig:
    return routing.RoutingConfig(
        models={"local": {"writer": {"simple": simple}}},
        overrides={"local": {"writer": override}} if override else {},
    )


def test_choose_skips_retired_and_unregistered_models_and_says_so(session: Session, identity: Identity) -> None:
    boss = admin(identity.tenant_id)
    register_models(session, "local-writer-lite", "local-writer-forced")
    assert choose(session, local_config("local-writer-lite", "local-writer-forced")).model == "local-writer-forced"

    model_registry.retire(session, by=boss, model="local-writer-forced")
    route = choose(session, local_config("local-writer-lite", "local-writer-forced"))
    assert (route.model, route.tier) == ("local-writer-lite", "simple")
    assert route.reason.startswith("skipped local-writer-forced (retired); score")

    route = choose(session, local_config("local-writer-unknown"))
    assert (route.model, route.tier) == ("local-writer-1", "simple")
    assert route.reason.startswith("skipped local-writer-unknown (unregistered); ")

    model_registry.retire(session, by=boss, model="local-writer-1")
    with pytest.raises(
        ModelRetiredError, match=r"Model local-writer-1 was retired on .* also skipped local-writer-unk"
    ):
        choose(session, local_config("local-writer-unknown"))


def test_save_config_refuses_a_model_it_may_not_route_to(session: Session, identity: Identity) -> None:
    settings, boss = get_settings(), admin(identity.tenant_id)
    register_models(session, "local-writer-lite", "local-writer-old")
    model_registry.retire(session, by=boss, model="local-writer-old")
    for model, status in (("local-writer-old", "retired"), ("local-writer-nope", "unregistered")):
        with pytest.raises(RoutingConfigError, match=f"names {model}, which is {status} in the model registry"):
            routing.save_config(
                session,
                tenant_id=identity.tenant_id,
                config=local_config(model),
                actor=boss,
                note="",
                settings=settings,
            )
    saved = routing.save_config(
        session,
        tenant_id=identity.tenant_id,
        config=local_config("local-writer-lite"),
        actor=boss,
        note="",
        settings=settings,
    )
    assert saved.version == 1

    # Retired after it was saved: the configuration stays saveable for other changes, and choose skips it.
    model_registry.retire(session, by=boss, model="local-writer-lite")
    lower = local_config("local-writer-lite").model_copy(update={"simple_below": 20.0})
    assert (
        routing.save_config(
            session, tenant_id=identity.tenant_id, config=lower, actor=boss, note="", settings=settings
        ).version
        == 2
    )


# -- the command line and the page -----------------------------------------------------------------


def lines(text: str) -> Iterable[list[str]]:
    return (line.split("\t") for line in text.splitlines())


def test_the_cli_lists_adds_deprecates_retires_activates_and_reports_usage(tmp_path: Path) -> None:
    listed = run_cli("models", "list", data_dir=tmp_path)
    assert listed.returncode == 0, listed.stderr
    mini = next(row[:7] for row in lines(listed.stdout) if row[0] == "gpt-4.1-mini")
    assert mini == ["gpt-4.1-mini", "openai", "-", "medium", "active", "-", "0.4/1.6/0.1"]
    added = run_cli(
        "models", "add", "llama3:8b", "--provider", "openai", "--input-price", "0.2", "--output-price", "0.8",
        "--flag", "pii_allowed=false", "--flag", "approved_by=jane", data_dir=tmp_path,
    )  # fmt: skip
    assert added.returncode == 0 and added.stdout.strip() == "registered llama3:8b (openai, active)", added.stderr
    later = (utcnow().date() + timedelta(days=20)).isoformat()
    deprecated = run_cli("models", "deprecate", "llama3:8b", "--removal-date", later, data_dir=tmp_path)
    assert deprecated.returncode == 0, deprecated.stderr
    usage = run_cli("models", "usage", data_dir=tmp_path)
    assert usage.stdout.startswith(f"llama3:8b: deprecated, removed on {later} (20 days left), 0 calls")
    assert run_cli("models", "retire", "gpt-4o", data_dir=tmp_path).returncode == 0
    rows = {row[0]: row for row in lines(run_cli("models", "list", data_dir=tmp_path).stdout)}
    assert rows["gpt-4o"][4] == "retired" and rows["llama3:8b"][4:7] == ["deprecated", later, "0.2/0.8/-"]
    assert "approved_by=jane" in rows["llama3:8b"][7] and "pii_allowed=False" in rows["llama3:8b"][7]
    assert run_cli("models", "activate", "gpt-4o", data_dir=tmp_path).returncode == 0
    bad = run_cli("models", "deprecate", "gpt-4o", "--removal-date", "31/01/2030", data_dir=tmp_path)
    assert bad.returncode == 1 and "is not a date like" in bad.stderr


def test_the_page_shows_the_registry_and_lets_an_admin_deprecate(make_app: MakeApp, clean_db: Engine) -> None:
    at = make_app("pages/models.py")
    registry = at.dataframe[0].value
    assert "gpt-4.1-mini" in set(registry["Model"]) and set(registry["Status"]) == {"active"}
    at.selectbox(key="models_lifecycle_model").set_value("gpt-4o")
    at.radio(key="models_action").set_value("deprecate")
    at.button(key="FormSubmitter:models_lifecycle-Apply").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [s.value for s in at.success] == ["gpt\\-4o is now deprecated."]
    assert any("gpt\\-4o" in w.value and "deprecated, removed on" in w.value for w in at.warning)

    ops = make_app("pages/models.py", role="ops")
    assert not ops.exception and "gpt-4o" in set(ops.dataframe[0].value["Model"])
    assert "models_lifecycle_model" not in [box.key for box in ops.selectbox], "no lifecycle form for ops"
    assert any("Only admins" in c.value for c in ops.caption)


def test_the_routing_page_names_deprecated_and_retired_models_it_routes_to(make_app: MakeApp, clean_db: Engine) -> None:
    removal = utcnow().date() + timedelta(days=5)
    with db.session_scope(clean_db) as s:
        boss = admin(bootstrap(s).tenant_id)
        model_registry.deprecate(s, by=boss, model="local-writer-1", removal_date=removal)
        model_registry.retire(s, by=boss, model="local-verifier-1")
    at = make_app("pages/routing.py", role="ops")
    warnings = [w.value for w in at.warning]
    line = f"local-writer-1: deprecated, removed on {removal} (5 days left), 0 calls in the last 7 days"
    assert ui.md_escape(line) in warnings
    assert any(w.startswith("local\\-verifier\\-1\\: retired, skipped by routing") for w in warnings)
