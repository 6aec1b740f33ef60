"""The gateway end to end: the official OpenAI and Anthropic SDKs over real HTTP against the fake
server, with the retry policy, budgets, cache, usage events and tool-call records checked in the
database after each call.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core import crypto, db, gateway
from core.agents.contracts import CitedFact, VerifierInput, VerifierOutput, WriterInput, WriterOutput
from core.errors import (
    BudgetExceededError,
    ContractError,
    InvalidJsonError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
)
from core.models import LlmCacheEntry, LlmToolCall, LlmUsageEvent
from core.providers import ToolSpec
from core.settings import get_settings, reset_settings
from core.tenancy import Identity
from tests.fakellm import FakeLLM, Fault

REMOTE = ["openai", "anthropic"]
FACT = "Biochar raised maize yield by 12% in sandy soils."


def use_provider(monkeypatch: pytest.MonkeyPatch, fake: FakeLLM, name: str, **env: str) -> None:
    monkeypatch.setenv("WORKBENCH_PROVIDER", name)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.openai_base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-gateway")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.anthropic_base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-gateway")
    monkeypatch.setenv("WORKBENCH_PROVIDER_TIMEOUT_S", env.pop("timeout", "5"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_settings()


@pytest.fixture(autouse=True)
def _settings_back() -> Iterator[None]:
    yield
    reset_settings()


class Sleeps(list[float]):
    """Records the retry loop's waits instead of sleeping them."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def context(session: Session, identity: Identity, trace_id: str = "trace-1", **kwargs: Any) -> gateway.CallContext:
    return gateway.CallContext(
        session=session, tenant_id=identity.tenant_id, trace_id=trace_id, sleep=Sleeps(), **kwargs
    )


def verify(ctx: gateway.CallContext, sentence: str = FACT) -> VerifierOutput:
    payload = VerifierInput(sentence=sentence, facts=[CitedFact(id="F1", text=FACT)], cited=["F1"])
    return gateway.run_agent(
        "verifier",
        payload,
        VerifierOutput,
        ctx=ctx,
        render={"sentence": sentence, "cited": "F1", "facts": f"F1: {FACT}"},
    )


def events(engine: Engine, trace_id: str | None = None) -> list[LlmUsageEvent]:
    with db.session_scope(engine) as s:
        query = select(LlmUsageEvent).order_by(LlmUsageEvent.id)
        if trace_id:
            query = query.where(LlmUsageEvent.trace_id == trace_id)
        return list(s.scalars(query))


def calls(fake: FakeLLM) -> list[dict[str, Any]]:
    return [r.body for r in fake.requests]


# -- one call, each failure class, both SDKs ----------------------------------------------------------


@pytest.mark.parametrize("provider", REMOTE)
def test_a_normal_call_records_reported_usage_and_its_price(
    provider: str, fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, session: Session, identity: Identity
) -> None:
    use_provider(monkeypatch, fake, provider)
    ctx = context(session, identity)
    assert verify(ctx).verdict == "supported"
    assert len(fake.requests) == 1
    [event] = events(session.get_bind())  # type: ignore[arg-type]
    assert (event.provider, event.agent, event.prompt_version) == (provider, "verifier", "v1")
    assert event.model == ("gpt-4.1-mini" if provider == "openai" else "claude-haiku-4-5")
    assert event.input_tokens > 0 and event.output_tokens > 0 and not event.tokens_estimated
    assert event.pricing == "priced" and event.cost_usd is not None and float(event.cost_usd) > 0
    assert event.retries == 0 and event.error_class is None and not event.cache_hit
    assert len(event.input_hash) == 64 and event.trace_id == "trace-1"
    assert event.routing_tier == "default" and provider in (event.routing_reason or "")
    assert ctx.sleep == []


@pytest.mark.parametrize("provider", REMOTE)
def test_timeouts_are_retried_twice_with_the_same_request_then_fail(
    provider: str, fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, session: Session, identity: Identity
) -> None:
    use_provider(monkeypatch, fake, provider, timeout="0.3")
    fake.push(Fault.timeout(1.0), Fault.timeout(1.0), Fault.timeout(1.0))
    ctx = context(session, identity)
    with pytest.raises(ProviderTimeoutError):
        verify(ctx)
    assert len(fake.requests) == 3
    assert calls(fake)[0] == calls(fake)[1] == calls(fake)[2]
    [event] = events(session.get_bind())  # type: ignore[arg-type]
    assert event.error_class == "timeout" and event.retries == 2
    assert [a["failure_class"] for a in event.attempts] == ["timeout"] * 3
    assert len(ctx.sleep) == 2 and all(0 <= s <= 2.0 for s in ctx.sleep)  # type: ignore[arg-type]


@pytest.mark.parametrize("provider", REMOTE)
def test_a_timeout_then_an_answer_succeeds_on_the_second_attempt(
    provider: str, fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, session: Session, identity: Identity
) -> None:
    use_provider(monkeypatch, fake, provider, timeout="0.3")
    fake.push(Fault.timeout(1.0))
    assert verify(context(session, identity)).verdict == "supported"
    [event] = events(session.get_bind())  # type: ignore[arg-type]
    assert len(fake.requests) == 2 and event.retries == 1 and event.error_class is None
    assert [a["failure_class"] for a in event.attempts] == ["timeout", None]


@pytest.mark.parametrize("provider", REMOTE)
def test_a_429_waits_what_retry_after_asks_then_succeeds(
    provider: str, fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, session: Session, identity: Identity
) -> None:
    use_provider(monkeypatch, fake, provider)
    fake.push(Fault.status(429, retry_after="2"))
    ctx = context(session, identity)
    assert verify(ctx).verdict == "supported"
    assert ctx.sleep == [2.0]
    assert len(fake.requests) == 2 and calls(fake)[0] == calls(fake)[1]
    [event] = events(session.get_bind())  # type: ignore[arg-type]
    assert event.retries == 1 and event.attempts[0]["failure_class"] == "rate_limit"
    assert event.attempts[0]["wait_s"] == 2.0


@pytest.mark.parametrize("provider", REMOTE)
def test_rate_limits_give_up_after_four_retries(
    provider: str, fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, session: Session, identity: Identity
) -> None:
    use_provider(monkeypatch, fake, provider)
    fake.push(*[Fault.status(429, retry_after="1")] * 5)
    ctx = context(session, identity)
    with pytest.raises(RateLimitedError):
        verify(ctx)
    assert len(fake.requests) == 5 and ctx.sleep == [1.0] * 4
    assert events(session.get_bind())[0].error_class == "rate_limit"  # type: ignore[arg-type]


@pytest.mark.parametrize("provider", REMOTE)
def test_server_errors_are_retried_twice(
    provider: str, fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, session: Session, identity: Identity
) -> None:
    use_provider(monkeypatch, fake, provider)
    fake.push(Fault.status(500), Fault.status(503), Fault.status(502))
    ctx = context(session, identity)
    with pytest.raises(ProviderUnavailableError):
        verify(ctx)
    assert len(fake.requests) == 3
    [event] = events(session.get_bind())  # type: ignore[arg-type]
    assert event.error_class == "server_error" and event.retries == 2 and event.input_tokens == 0


@pytest.mark.parametrize("provider", REMOTE)
def test_invalid_json_is_retried_once_and_its_tokens_are_counted(
    provider: str, fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, session: Session, identity: Identity
) -> None:
    use_provider(monkeypatch, fake, provider)
    fake.push(Fault.invalid_json_content(), Fault.invalid_json_content(), Fault.reply({"verdict": "supported"}))
    ctx = context(session, identity)
    with pytest.raises(InvalidJsonError):
        verify(ctx)
    assert len(fake.requests) == 2  # the third scripted answer is never asked for
    [event] = events(session.get_bind())  # type: ignore[arg-type]
    assert event.error_class == "invalid_json" and event.retries == 1
    assert event.output_tokens > 0 and float(event.cost_usd or 0) > 0  # billed, so counted
    assert ctx.sleep == [0.0]


@pytest.mark.parametrize("provider", REMOTE)
def test_invalid_json_once_then_a_good_answer_succeeds(
    provider: str, fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, session: Session, identity: Identity
) -> None:
    use_provider(monkeypatch, fake, provider)
    fake.push(Fault.invalid_json_content())
    assert verify(context(session, identity)).verdict == "supported"
    [event] = events(session.get_bind())  # type: ignore[arg-type]
    assert len(fake.requests) == 2 and event.retries == 1 and event.error_class is None


@pytest.mark.parametrize("provider", REMOTE)
def test_a_contract_violation_is_never_retried(
    provider: str, fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, session: Session, identity: Identity
) -> None:
    use_provider(monkeypatch, fake, provider)
    fake.push(Fault.contract_violation())
    ctx = context(session, identity)
    with pytest.raises(ContractError, match="broke its JSON contract"):
        verify(ctx)
    assert len(fake.requests) == 1 and ctx.sleep == []
    [event] = events(session.get_bind())  # type: ignore[arg-type]
    assert event.error_class == "contract" and event.retries == 0 and event.output_tokens > 0
    with db.session_scope(session.get_bind()) as s:  # type: ignore[arg-type]
        assert s.scalar(select(LlmCacheEntry.id)) is None  # a broken answer is never cached


@pytest.mark.parametrize("provider", REMOTE)
def test_a_tool_call_is_answered_and_recorded(
    provider: str, fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, session: Session, identity: Identity
) -> None:
    use_provider(monkeypatch, fake, provider)
    asked: list[str] = []

    def search(query: str, top_k: int = 5) -> list[dict[str, object]]:
        asked.append(query)
        return [{"id": "F7", "text": FACT, "score": 3.2, "source": "a.pdf", "page": 2}][:top_k]

    tool = ToolSpec(
        name="search_corpus",
        description="search",
        parameters={"type": "object", "properties": {"query": {"type": "string"}, "top_k": {"type": "integer"}}},
        fn=search,
        record=lambda result: [{"id": r["id"], "score": r["score"]} for r in result],
    )
    ctx = context(session, identity)
    brief = "Biochar and maize yield"
    draft = gateway.run_agent(
        "writer",
        WriterInput(brief=brief, facts=[], corpus="1:7:7"),
        WriterOutput,
        ctx=ctx,
        render={"brief": brief, "max_sentences": 5},
        tools={"search_corpus": tool},
    )
    assert draft.sentences[0].cites == ["F7"] and asked == [brief]
    assert len(fake.requests) == 2  # the tool call, then the answer with the tool's result
    assert "F7" in json.dumps(calls(fake)[1])
    [event] = events(session.get_bind())  # type: ignore[arg-type]
    with db.session_scope(session.get_bind()) as s:  # type: ignore[arg-type]
        [recorded] = s.scalars(select(LlmToolCall)).all()
    assert recorded.usage_event_id == event.id and recorded.name == "search_corpus"
    assert recorded.results == 1 and brief.encode() not in recorded.content  # sealed at rest
    opened = crypto.key_ring(get_settings()).open_json(
        recorded.key_id,
        recorded.content,
        aad=gateway.tool_call_aad(recorded.tenant_id, recorded.trace_id, event.id, "search_corpus"),
    )
    assert opened["arguments"] == {"query": brief, "top_k": 5}
    assert opened["result"] == [{"id": "F7", "score": 3.2}]  # ids and scores; the text stays in facts
    assert event.input_tokens > 0 and event.retries == 0
    assert [c.name for c in ctx.tool_calls] == ["search_corpus"]


# -- budgets ------------------------------------------------------------------------------------------


def test_concurrent_calls_never_send_past_the_paragraph_budget(
    fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, clean_db: Engine, identity: Identity
) -> None:
    use_provider(monkeypatch, fake, "openai")
    threads_n = 8
    # Every call waits at the server, so all eight reserve while the first three are still in flight.
    fake.push(*[Fault.timeout(0.4)] * threads_n)
    with db.session_scope(clean_db) as s:
        probe = context(s, identity, trace_id="budget-run")
        sentence = f"{FACT} (case 0)"
        rendered_tokens = gateway.count_tokens(
            gateway.prompts.load("verifier").render(sentence=sentence, cited="F1", facts=f"F1: {FACT}"), "gpt-4.1-mini"
        )
        estimate = rendered_tokens + gateway.prompts.load("verifier").max_tokens
        budget = gateway.TokenBudget.open(
            s.connection(), key="paragraph:budget-run", tenant_id=identity.tenant_id, limit=3 * estimate + 5
        )
        del probe
    barrier = threading.Barrier(threads_n)
    outcomes: list[str] = []

    def one(number: int) -> None:
        with db.session_scope(clean_db) as s:
            ctx = context(s, identity, trace_id="budget-run", budget=budget)
            barrier.wait()
            try:
                verify(ctx, f"{FACT} (case {number})")
                outcomes.append("sent")
            except BudgetExceededError:
                outcomes.append("refused")

    workers = [threading.Thread(target=one, args=(n,)) for n in range(threads_n)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(outcomes) == ["refused"] * 5 + ["sent"] * 3
    assert len(fake.requests) == 3
    recorded = events(clean_db, "budget-run")
    assert sum(e.error_class == "BudgetExceeded" for e in recorded) == 5
    spent = sum(e.input_tokens + e.output_tokens for e in recorded)
    assert spent <= budget.limit


def test_a_stage_over_its_budget_is_refused_before_sending(
    fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, session: Session, identity: Identity
) -> None:
    use_provider(monkeypatch, fake, "openai", BUDGET_VERIFIER_TOKENS="50")
    with pytest.raises(BudgetExceededError, match="BUDGET_VERIFIER_TOKENS"):
        verify(context(session, identity))
    assert fake.requests == []
    assert events(session.get_bind())[0].error_class == "BudgetExceeded"  # type: ignore[arg-type]


# -- records survive a failed run ----------------------------------------------------------------------


def test_usage_of_a_failed_run_outlives_its_rollback(
    fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, clean_db: Engine, identity: Identity
) -> None:
    use_provider(monkeypatch, fake, "openai")
    fake.push(Fault.status(401))
    with pytest.raises(Exception, match="refused"), db.session_scope(clean_db) as s:
        verify(context(s, identity, trace_id="failed-run"))
    [event] = events(clean_db, "failed-run")
    assert event.error_class == "rejected" and event.retries == 0


# -- the cache, on whole paragraph runs ------------------------------------------------------------------


def _run_paragraph(engine: Engine, identity: Identity) -> tuple[str, str]:
    """Sources, facts and one drafted paragraph for ``identity``'s tenant; returns both trace ids."""
    from core.demo_corpus import DEMO_BRIEFS, demo_pdfs
    from core.manuscripts import add_paragraph, create_manuscript
    from core.pipeline import draft_paragraph
    from core.sources import add_source

    with db.session_scope(engine) as s:
        manuscript = create_manuscript(s, tenant_id=identity.tenant_id, title="Cache", user_id=identity.user_id)
        paragraph = add_paragraph(s, tenant_id=identity.tenant_id, manuscript_id=manuscript.id, brief=DEMO_BRIEFS[0])
    filename, data = demo_pdfs()[0]
    with db.session_scope(engine) as s:
        add_source(s, identity=identity, manuscript_id=manuscript.id, filename=filename, data=data, trace_id="ingest")
    traces = []
    for run in ("first", "second"):
        trace = f"{run}-{identity.tenant_id}"
        with db.session_scope(engine) as s:
            version = draft_paragraph(
                s, tenant_id=identity.tenant_id, user_id=identity.user_id, paragraph_id=paragraph.id, trace_id=trace
            )
            assert version.status == "verified"
        traces.append(trace)
    return traces[0], traces[1]


def test_a_repeated_paragraph_run_is_served_from_the_cache_of_its_own_tenant_only(
    fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, clean_db: Engine, identity: Identity
) -> None:
    from core.tenancy import create_tenant

    use_provider(monkeypatch, fake, "openai")
    first, second = _run_paragraph(clean_db, identity)
    first_events, second_events = events(clean_db, first), events(clean_db, second)
    assert first_events and not any(e.cache_hit for e in first_events)
    requests_after_first = len(fake.requests)

    # The second run of the same paragraph: no provider call, every call a zero-cost cache hit.
    assert len(second_events) == len(first_events)
    assert all(e.cache_hit and float(e.cost_usd or 0) == 0 and e.pricing == "cache_hit" for e in second_events)
    assert [e.input_hash for e in second_events] == [e.input_hash for e in first_events]
    librarian_calls = len(events(clean_db, "ingest"))

    # Another tenant with the very same PDF and brief pays for its own calls.
    with db.session_scope(clean_db) as s:
        other = create_tenant(s, slug="other-lab", name="Other lab")
    fake.reset()
    _run_paragraph(clean_db, other)
    other_ingest = [e for e in events(clean_db, "ingest") if e.tenant_id == other.tenant_id]
    assert len(other_ingest) == librarian_calls and not any(e.cache_hit for e in other_ingest)
    assert len(fake.requests) >= librarian_calls + len(first_events)
    assert requests_after_first > 0


def test_a_cached_draft_is_not_served_after_the_corpus_changed(
    fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, clean_db: Engine, identity: Identity
) -> None:
    from core.demo_corpus import demo_pdfs
    from core.manuscripts import list_manuscripts
    from core.sources import add_source

    use_provider(monkeypatch, fake, "openai")
    _run_paragraph(clean_db, identity)
    with db.session_scope(clean_db) as s:
        [manuscript] = list_manuscripts(s, tenant_id=identity.tenant_id)
        filename, data = demo_pdfs()[1]
        add_source(s, identity=identity, manuscript_id=manuscript.id, filename=filename, data=data, trace_id="more")
    fake.reset()
    from core.models import Paragraph
    from core.pipeline import draft_paragraph

    with db.session_scope(clean_db) as s:
        paragraph_id = s.scalar(select(Paragraph.id).where(Paragraph.tenant_id == identity.tenant_id))
        assert paragraph_id is not None
        draft_paragraph(s, tenant_id=identity.tenant_id, user_id=None, paragraph_id=paragraph_id, trace_id="third")
    writer = [e for e in events(clean_db, "third") if e.agent == "writer"]
    assert len(writer) == 1 and not writer[0].cache_hit
    assert any(r.body.get("tools") for r in fake.requests)


# -- prompts ---------------------------------------------------------------------------------------------


def test_a_changed_prompt_file_under_a_locked_version_is_refused_naming_the_file(
    fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, session: Session, identity: Identity
) -> None:
    import shutil

    from core import prompts
    from core.errors import PromptError

    copy = tmp_path / "prompts"
    shutil.copytree(prompts.PROMPTS_DIR, copy)
    verifier_file = copy / "verifier" / "v1.md"
    verifier_file.write_bytes(verifier_file.read_bytes().replace(b"Decide whether", b"Decide, generously, whether"))
    use_provider(monkeypatch, fake, "openai", WORKBENCH_PROMPTS_DIR=str(copy))
    with pytest.raises(PromptError, match=r"prompts/verifier/v1\.md changed after it was locked"):
        verify(context(session, identity))
    assert fake.requests == []  # nothing was sent with the altered prompt
    monkeypatch.setenv("WORKBENCH_PROMPTS_DIR", str(prompts.PROMPTS_DIR))
    reset_settings()
    assert verify(context(session, identity)).verdict == "supported"
