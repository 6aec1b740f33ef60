"""Routing by complexity: the score and tier of sample briefs, the configuration with its history,
which rule wins, and the decision as the usage events and the trace record it after real drafts
(offline, and over HTTP to the fake OpenAI server).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core import db, routing
from core.complexity import TIERS, SourceFact, chunk_complexity, paragraph_complexity
from core.errors import RoutingConfigError
from core.manuscripts import add_paragraph, create_manuscript
from core.models import LlmUsageEvent, ParagraphVersion, TrajectoryEvent
from core.models import RoutingConfig as RoutingConfigRow
from core.pipeline import draft_paragraph
from core.prompts import load
from core.providers import get_provider
from core.settings import Settings, get_settings, reset_settings
from core.sources import add_source
from core.tenancy import Identity, bootstrap, create_tenant
from tests.fakellm import FakeLLM
from tests.test_cli import run_cli
from tests.test_gateway import use_provider
from tests.test_model_registry import register_models
from tests.ui_helpers import BRIEF, MakeApp, paper_pdf, seed_drafted

SIMPLE_BRIEF = "Summarise the effect of biochar on maize yield."
SIMPLE_FACTS = [SourceFact("Biochar raised maize yield by 12% in sandy soils.", 1)]
COMPLEX_BRIEF = (
    "Compare the drought benefit of the Bacillus inoculant alone with its combination with biochar across the "
    "three trials, explain why the effect differs between sandy and clay soils, and state how large each effect was."
)
COMPLEX_FACTS = [
    SourceFact("Nitrate leaching fell by 32% at 20 t/ha biochar in sandy soil.", 1),
    SourceFact("At 10 t ha-1 leaching did not differ from the control (p = 0.41).", 1),
    SourceFact("The Bacillus inoculant raised yield by 8% under drought.", 2),
    SourceFact("In clay loam the inoculant had no effect on yield.", 2),
    SourceFact("Combined with biochar, yield rose 19% relative to the control.", 3),
    SourceFact("Soil moisture was 4.2 percentage points higher in amended plots.", 3),
]
# Distinct models per tier, none of them the provider's default, so a test can tell routing from defaults.
LOCAL_TIERS = {"simple": "local-{agent}-lite", "medium": "local-{agent}-mid", "complex": "local-{agent}-max"}
OPENAI_TIERS = {"simple": "gpt-4.1-nano", "medium": "gpt-4o-mini", "complex": "gpt-4.1"}


@pytest.fixture(autouse=True)
def _settings_back() -> Iterator[None]:
    yield
    reset_settings()


def tiered(provider: str, tiers: dict[str, str], **fields: Any) -> routing.RoutingConfig:
    models = {agent: {tier: m.format(agent=agent) for tier, m in tiers.items()} for agent in routing.AGENTS}
    return routing.RoutingConfig(models={provider: models}, **fields)


def stored(config: routing.RoutingConfig, version: int = 1) -> routing.StoredConfig:
    return routing.StoredConfig(version, config)


def decide(
    config: routing.StoredConfig | None, brief: str, facts: list[SourceFact], agent: str = "writer"
) -> routing.Route:
    settings = get_settings()
    return routing.choose(
        get_provider(settings.provider),
        load(agent),
        settings,
        config=config,
        complexity=paragraph_complexity(brief, facts),
    )


# -- the score ---------------------------------------------------------------------------------------


def test_a_one_fact_brief_is_simple_and_a_comparative_numeric_brief_over_three_sources_is_complex() -> None:
    simple = paragraph_complexity(SIMPLE_BRIEF, SIMPLE_FACTS)
    complex_ = paragraph_complexity(COMPLEX_BRIEF, COMPLEX_FACTS)
    assert routing.RoutingConfig().tier(simple.score) == "simple" and simple.score < 30
    assert routing.RoutingConfig().tier(complex_.score) == "complex" and complex_.score >= 60
    assert simple.breakdown["sources"] == 0 and simple.breakdown["facts"] == 0
    assert complex_.breakdown["sources"] > 0 and complex_.breakdown["reasoning"] == 25  # saturated: compare, why, ...
    assert complex_.breakdown["numbers"] == 15


def test_the_score_is_deterministic_and_its_breakdown_adds_up_to_it() -> None:
    for brief, facts in ((SIMPLE_BRIEF, SIMPLE_FACTS), (COMPLEX_BRIEF, COMPLEX_FACTS), (BRIEF, [])):
        first, again = paragraph_complexity(brief, facts), paragraph_complexity(brief, list(facts))
        assert first == again
        assert sum(first.breakdown.values()) == pytest.approx(first.score)
        assert sum(c.weight for c in first.components) == 100
        assert all(0 <= c.contribution <= c.weight for c in first.components)


def test_a_chunk_is_scored_by_length_and_number_density() -> None:
    prose = "The soil was sampled in spring and described by texture and colour. " * 20
    numeric = "Leaching fell 32% at 20 t/ha; yield rose 8% (p = 0.04) with 12 mg/kg nitrate. " * 20
    plain, dense = chunk_complexity(prose), chunk_complexity(numeric)
    assert plain.breakdown["number_density"] == 0 and dense.breakdown["number_density"] == 40
    assert dense.score > plain.score
    assert sum(dense.breakdown.values()) == pytest.approx(dense.score)


def test_text_the_score_cannot_judge_is_flagged_not_hidden() -> None:
    german = paragraph_complexity(
        "Beschreiben Sie, wie wiederholte Dürre die Bakteriengemeinschaft im Boden verändert und welche Rolle "
        "Pflanzenkohle dabei spielt."
    )
    maths = paragraph_complexity("Derive E = mc^2 from ∂L/∂q and show ∑ p_i = 1, with λ ≥ 0 and σ^2 ≤ θ.")
    assert any("English" in c for c in german.caveats)
    assert any("math" in c for c in maths.caveats)
    assert paragraph_complexity(COMPLEX_BRIEF, COMPLEX_FACTS).caveats == ()


def test_thresholds_change_the_tier() -> None:
    score = paragraph_complexity(SIMPLE_BRIEF, SIMPLE_FACTS).score
    assert routing.RoutingConfig().tier(score) == "simple"
    assert routing.RoutingConfig(simple_below=5, complex_from=50).tier(score) == "medium"
    assert routing.RoutingConfig(simple_below=5, complex_from=score).tier(score) == "complex"


# -- the decision ------------------------------------------------------------------------------------


def test_each_tier_gets_its_model_and_a_tier_without_one_the_provider_default() -> None:
    config = stored(tiered("local", LOCAL_TIERS))
    simple, complex_ = decide(config, SIMPLE_BRIEF, SIMPLE_FACTS), decide(config, COMPLEX_BRIEF, COMPLEX_FACTS)
    assert (simple.model, simple.tier) == ("local-writer-lite", "simple")
    assert (complex_.model, complex_.tier) == ("local-writer-max", "complex")
    assert complex_.score == paragraph_complexity(COMPLEX_BRIEF, COMPLEX_FACTS).score and complex_.breakdown
    assert f"score {complex_.score:g}" in complex_.reason and "routing v1" in complex_.reason

    without = stored(routing.RoutingConfig(models={"local": {"writer": {"simple": "local-writer-lite"}}}))
    fallback = decide(without, COMPLEX_BRIEF, COMPLEX_FACTS)
    assert (fallback.model, fallback.tier) == ("local-writer-1", "complex")
    assert "names no complex model for writer" in fallback.reason


def test_overrides_win_in_order_env_then_configuration_then_tier(monkeypatch: pytest.MonkeyPatch) -> None:
    config = stored(
        tiered("local", LOCAL_TIERS).model_copy(update={"overrides": {"local": {"writer": "local-writer-forced"}}})
    )
    forced = decide(config, SIMPLE_BRIEF, SIMPLE_FACTS)
    assert (forced.model, forced.tier) == ("local-writer-forced", "override")
    assert "override for writer on local" in forced.reason
    assert decide(config, SIMPLE_BRIEF, SIMPLE_FACTS, agent="verifier").model == "local-verifier-lite"

    monkeypatch.setenv("WORKBENCH_MODELS", '{"writer": "local-writer-env"}')
    reset_settings()
    from_env = decide(config, SIMPLE_BRIEF, SIMPLE_FACTS)
    assert (from_env.model, from_env.tier) == ("local-writer-env", "override")
    assert from_env.reason.startswith("WORKBENCH_MODELS[writer]") and f"score {from_env.score:g}" in from_env.reason


def test_routing_switched_off_or_no_score_means_the_provider_default() -> None:
    off = stored(tiered("local", LOCAL_TIERS, enabled=False))
    route = decide(off, COMPLEX_BRIEF, COMPLEX_FACTS)
    assert (route.model, route.tier) == ("local-writer-1", "default") and "is off" in route.reason
    settings = get_settings()
    unscored = routing.choose(
        get_provider("local"), load("writer"), settings, config=stored(tiered("local", LOCAL_TIERS))
    )
    assert (unscored.model, unscored.tier, unscored.score) == ("local-writer-1", "default", None)


def test_the_built_in_configuration_keeps_offline_models_and_tiers_vendor_models_only_for_the_vendor() -> None:
    builtin = routing.builtin_config(Settings())
    assert {builtin.tier_model("local", "writer", t) for t in TIERS} == {"local-writer-1"}
    assert [builtin.tier_model("openai", "verifier", t) for t in TIERS] == ["gpt-4.1-nano", "gpt-4.1-mini", "gpt-4.1"]
    assert builtin.tier_model("anthropic", "writer", "complex") == "claude-sonnet-4-5"
    assert routing.unpriced_models(builtin, Settings()) == [], "every built-in model has a price"
    # Against a compatible server, or beside a model the operator chose, vendor ids would be wrong.
    assert "openai" not in routing.builtin_config(Settings(OPENAI_BASE_URL="http://127.0.0.1:1/v1")).models
    assert "anthropic" not in routing.builtin_config(Settings(ANTHROPIC_MODEL="claude-opus-4-1")).models


def test_invalid_configurations_are_refused_with_what_to_fix() -> None:
    with pytest.raises(RoutingConfigError, match=r"complex threshold .* is below the simple one"):
        routing.parse_config({"simple_below": 60, "complex_from": 40})
    with pytest.raises(RoutingConfigError, match="is not a model id"):
        routing.parse_config({"models": {"openai": {"writer": {"simple": "gpt 4 mini"}}}})
    with pytest.raises(RoutingConfigError, match="unknown agent 'editor'"):
        routing.parse_config({"overrides": {"openai": {"editor": "gpt-4.1"}}})
    with pytest.raises(RoutingConfigError, match="unknown tier 'hard'"):
        routing.parse_config({"models": {"openai": {"writer": {"hard": "gpt-4.1"}}}})
    # A blank model is no model: the provider's default.
    blank = routing.parse_config(
        {"models": {"openai": {"writer": {"simple": "  "}}}, "overrides": {"openai": {"writer": ""}}}
    )
    assert blank.tier_model("openai", "writer", "simple") is None and blank.override("openai", "writer") is None
    # A model the price table does not know is allowed, and named so the page can warn.
    odd = routing.parse_config({"models": {"openai": {"writer": {"complex": "llama3:70b"}}}})
    assert routing.unpriced_models(odd, get_settings()) == ["llama3:70b"]


# -- configuration history ---------------------------------------------------------------------------


def test_each_save_is_a_new_version_and_old_versions_stay_as_they_were(session: Session, identity: Identity) -> None:
    settings, tenant = get_settings(), identity.tenant_id
    ops = replace(identity, role="ops", name="Ops <ops@x>")
    assert routing.current_config(session, tenant_id=tenant, settings=settings).version == 0
    first = tiered("local", LOCAL_TIERS)
    second = first.model_copy(update={"simple_below": 20.0})
    register_models(session, *routing.named_models(first))  # routing may name registered models only
    routing.save_config(session, tenant_id=tenant, config=first, actor=ops, note="tiers", settings=settings)
    routing.save_config(session, tenant_id=tenant, config=second, actor=ops, note="lower", settings=settings)
    session.commit()

    current = routing.current_config(session, tenant_id=tenant, settings=settings)
    assert (current.version, current.config, current.note) == (2, second, "lower")
    history = routing.config_history(session, tenant_id=tenant)
    assert [(h.version, h.config, h.actor) for h in history] == [(2, second, "Ops <ops@x>"), (1, first, "Ops <ops@x>")]
    assert routing.changes(history[1].config, history[0].config) == ["simple below: 30 → 20"]
    with pytest.raises(RoutingConfigError, match="Nothing changed"):
        routing.save_config(session, tenant_id=tenant, config=second, actor=ops, note="", settings=settings)

    with db.session_scope(session.get_bind()) as other_session:  # type: ignore[arg-type]
        other = create_tenant(other_session, slug="other", name="Other")
    assert routing.current_config(session, tenant_id=other.tenant_id, settings=settings).version == 0
    assert routing.config_history(session, tenant_id=other.tenant_id) == []
    rows = session.scalars(select(RoutingConfigRow).where(RoutingConfigRow.tenant_id == tenant)).all()
    assert sorted(r.version for r in rows) == [1, 2]


# -- the decision in usage events and the trace, after real drafts -----------------------------------------


def seeded(engine: Engine) -> tuple[Identity, int, int]:
    """A manuscript with the first demo paper ingested (offline Librarian) and one paragraph."""
    with db.session_scope(engine) as s:
        ident = bootstrap(s)
        manuscript = create_manuscript(s, tenant_id=ident.tenant_id, title="Routing", user_id=ident.user_id)
    with db.session_scope(engine) as s:
        add_source(s, identity=ident, manuscript_id=manuscript.id, filename="paper.pdf", data=paper_pdf())
    with db.session_scope(engine) as s:
        paragraph = add_paragraph(s, tenant_id=ident.tenant_id, manuscript_id=manuscript.id, brief=BRIEF)
    return ident, manuscript.id, paragraph.id


def draft(engine: Engine, ident: Identity, paragraph_id: int) -> str:
    with db.session_scope(engine) as s:
        return str(
            draft_paragraph(s, tenant_id=ident.tenant_id, user_id=ident.user_id, paragraph_id=paragraph_id).trace_id
        )


def usage(engine: Engine, **where: Any) -> list[LlmUsageEvent]:
    with db.session_scope(engine) as s:
        query = select(LlmUsageEvent).filter_by(**where).order_by(LlmUsageEvent.id)
        return list(s.scalars(query))


def save(engine: Engine, ident: Identity, config: routing.RoutingConfig) -> None:
    with db.session_scope(engine) as s:
        ops = replace(ident, role="ops", name="test")
        register_models(s, *(m for m in routing.named_models(config) if m.startswith("local-")))
        routing.save_config(s, tenant_id=ident.tenant_id, config=config, actor=ops, note="", settings=get_settings())


def test_an_offline_draft_records_tier_score_and_reason_on_every_usage_event(clean_db: Engine) -> None:
    ident, manuscript_id, paragraph_id = seeded(clean_db)
    librarian = usage(clean_db, agent="librarian")
    assert librarian and all(e.routing_tier in TIERS and e.routing_score is not None for e in librarian)
    assert all(e.model == "local-librarian-1" for e in librarian), "the built-in offline tiers keep one model"

    save(clean_db, ident, tiered("local", LOCAL_TIERS))
    trace_id = draft(clean_db, ident, paragraph_id)
    events = usage(clean_db, trace_id=trace_id)
    assert {e.agent for e in events} >= {"writer", "verifier"}
    with db.session_scope(clean_db) as s:
        judged = routing.judge_paragraph(s, tenant_id=ident.tenant_id, manuscript_id=manuscript_id, brief=BRIEF)
    config = routing.RoutingConfig()
    [writer] = [e for e in events if e.agent == "writer"]
    assert writer.routing_score == judged.score
    assert writer.routing_tier == config.tier(judged.score)
    assert writer.model == LOCAL_TIERS[writer.routing_tier].format(agent="writer")
    for event in events:
        assert event.routing_tier in TIERS and event.routing_score is not None
        assert event.model == LOCAL_TIERS[event.routing_tier].format(agent=event.agent)
        assert f"score {event.routing_score:g}" in (event.routing_reason or "") and "routing v1" in (
            event.routing_reason or ""
        )

    with db.session_scope(clean_db) as s:
        decisions = routing.recent_decisions(s, tenant_id=ident.tenant_id, limit=len(events))
    assert [(d.agent, d.model, d.tier, d.score, d.trace_id) for d in decisions] == [
        (e.agent, e.model, e.routing_tier, e.routing_score, e.trace_id) for e in reversed(events)
    ]


def test_openai_receives_the_model_of_the_paragraphs_tier(
    fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, clean_db: Engine
) -> None:
    ident, _manuscript_id, paragraph_id = seeded(clean_db)  # ingested offline
    use_provider(monkeypatch, fake, "openai")
    save(clean_db, ident, tiered("openai", OPENAI_TIERS, simple_below=20, complex_from=40))
    trace_id = draft(clean_db, ident, paragraph_id)
    events = usage(clean_db, trace_id=trace_id)
    sent = [r.body["model"] for r in fake.requests]  # the Writer's tool rounds are requests of one call
    assert events and all(not e.cache_hit for e in events)
    for event in events:
        assert event.provider == "openai" and event.routing_tier in TIERS
        assert event.model == OPENAI_TIERS[event.routing_tier]
    assert set(sent) == {e.model for e in events}
    assert "gpt-4.1-mini" not in sent, "no call fell through to the provider's default"


def test_the_routing_decision_reaches_the_trace(clean_db: Engine) -> None:
    seeded_run = seed_drafted(clean_db)
    with db.session_scope(clean_db) as s:
        trace_id = s.scalar(select(ParagraphVersion.trace_id).where(ParagraphVersion.id == seeded_run.version_id))
        spans = list(
            s.scalars(
                select(TrajectoryEvent)
                .where(TrajectoryEvent.trace_id == trace_id, TrajectoryEvent.kind == "routing")
                .order_by(TrajectoryEvent.id)
            )
        )
    events = usage(clean_db, trace_id=trace_id)
    assert len(spans) == len(events) > 0
    for span, event in zip(spans, events, strict=True):
        assert span.attributes["tier"] == event.routing_tier
        assert span.attributes["reason"] == event.routing_reason
        assert span.attributes["score"] == event.routing_score
        assert set(span.attributes["breakdown"]) == {
            "brief_length",
            "facts",
            "sources",
            "numbers",
            "reasoning",
            "hedging",
        }


# -- the page ----------------------------------------------------------------------------------------


def test_the_page_saves_versions_dry_runs_a_brief_and_lists_history(make_app: MakeApp, clean_db: Engine) -> None:
    at = make_app("pages/routing.py")
    assert any("Non\\-English text" in m.value for m in at.markdown), "the page says what the score cannot judge"
    assert any("Built-in configuration" in c.value for c in at.caption)

    with db.session_scope(clean_db) as s:
        register_models(s, "local-writer-lite")  # routing may name registered models only
    at.text_input(key="routing_v0_writer_simple").input("local-writer-lite")
    at.text_input(key="routing_v0_note").input("cheaper writer for simple briefs")
    at.button(key="FormSubmitter:routing_config_v0-Save as version 1").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [s.value for s in at.success] == ["Saved routing version 1."]

    at.number_input(key="routing_v1_complex").set_value(70.0)
    at.text_input(key="routing_v1_writer_complex").input("gpt 4")  # not a model id
    at.button(key="FormSubmitter:routing_config_v1-Save as version 2").click().run()
    assert any("is not a model id" in e.value for e in at.error)
    at.text_input(key="routing_v1_writer_complex").input("local-writer-1")
    at.button(key="FormSubmitter:routing_config_v1-Save as version 2").click().run()
    assert [s.value for s in at.success] == ["Saved routing version 2."]

    history = at.dataframe[0].value
    assert list(history["Version"]) == [2, 1]
    assert list(history["What changed"]) == [
        "complex from: 60 → 70",
        "local writer simple: local-writer-1 → local-writer-lite",
    ]
    assert history["Note"][1] == "cheaper writer for simple briefs"

    at.text_area(key="routing_dry_brief").input(SIMPLE_BRIEF)
    at.button(key="FormSubmitter:routing_dry_run-Show tier and models").click().run()
    assert not at.exception
    assert [m.value for m in at.metric] == ["simple", f"{paragraph_complexity(SIMPLE_BRIEF).score:g} of 100"]
    breakdown, routes = at.dataframe[1].value, at.dataframe[2].value
    assert breakdown["Points"].sum() == pytest.approx(paragraph_complexity(SIMPLE_BRIEF).score)
    writer = routes[routes["Agent"] == "writer"].iloc[0]
    assert (writer["Tier"], writer["Model"]) == ("simple", "local-writer-lite")


def test_the_page_lists_recent_decisions(make_app: MakeApp, clean_db: Engine) -> None:
    seed_drafted(clean_db)
    at = make_app("pages/routing.py")
    decisions = at.dataframe[-1].value
    assert set(decisions["Agent"]) >= {"librarian", "writer", "verifier"}
    assert set(decisions["Tier"]) <= set(TIERS) and decisions["Score"].notna().all()


def test_the_cli_shows_the_configuration_and_dry_runs_a_brief(tmp_path: Path) -> None:
    shown = run_cli("routing", "show", data_dir=tmp_path)
    assert shown.returncode == 0 and shown.stdout.startswith("built-in routing")
    assert "writer: local-writer-1 / local-writer-1 / local-writer-1; override none" in shown.stdout
    dry = run_cli("routing", "dry-run", SIMPLE_BRIEF, data_dir=tmp_path)
    score = paragraph_complexity(SIMPLE_BRIEF).score
    assert dry.returncode == 0 and dry.stdout.startswith(f"score {score:g} of 100 -> simple (0 facts)")
    assert any(line.startswith("writer\tsimple\tlocal-writer-1\t") for line in dry.stdout.splitlines())
