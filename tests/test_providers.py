"""The remote providers, one ``complete`` call at a time, through the official SDKs against a
local fake server (real HTTP, both wire formats, scripted faults). No gateway here: these pin
what the seam promises (one attempt, a named failure class, tokens counted).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import pytest

from core import prompts
from core.agents.contracts import (
    CitedFact,
    VerifierInput,
    VerifierOutput,
    WriterInput,
    WriterOutput,
)
from core.errors import (
    ConfigurationError,
    InvalidJsonError,
    ProviderError,
    ProviderRejectedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
)
from core.providers import Provider, ProviderRequest, ToolCall, ToolSpec, get_provider
from core.providers.local import LocalProvider
from core.providers.remote import MAX_TOOL_ROUNDS, retry_after_seconds
from core.settings import reset_settings
from tests.fakellm import FakeLLM, Fault

KEY = "sk-test-DO-NOT-LEAK-1234567890"
REMOTE = ["openai", "anthropic"]
BRIEF = "Biochar and maize yield in sandy soils"
FACTS = [
    {"id": "F1", "text": "Biochar raised maize yield by 12% in sandy soils.", "score": 0.9},
    {"id": "F2", "text": "The effect was not significant in clay soils.", "score": 0.7},
    {"id": "F3", "text": "Soil carbon rose over three seasons.", "score": 0.2},
]


def _use(monkeypatch: pytest.MonkeyPatch, name: str, *, key: str | None, base_url: str | None) -> None:
    prefix = name.upper()
    for var, value in ((f"{prefix}_API_KEY", key), (f"{prefix}_BASE_URL", base_url)):
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, value)
    monkeypatch.setenv("WORKBENCH_PROVIDER", name)
    reset_settings()


@pytest.fixture
def settings_reset() -> Iterator[None]:
    yield
    reset_settings()  # monkeypatch has restored the environment by the time this runs again


@pytest.fixture(params=REMOTE)
def provider(
    request: pytest.FixtureRequest, fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, settings_reset: None
) -> Provider:
    name = request.param
    _use(monkeypatch, name, key=KEY, base_url=fake.openai_base_url if name == "openai" else fake.anthropic_base_url)
    return get_provider(name)


def verifier_request(timeout_s: float = 10.0) -> ProviderRequest:
    payload = VerifierInput(
        sentence="Biochar raised maize yield by 12%.",
        facts=[CitedFact(id="F1", text=str(FACTS[0]["text"]))],
        cited=["F1"],
    )
    prompt = prompts.load("verifier").render(
        sentence=payload.sentence, cited="F1", facts="\n".join(f"{f.id}: {f.text}" for f in payload.facts)
    )
    return ProviderRequest(
        agent="verifier",
        model="fake-judge-1",
        prompt=prompt,
        payload=payload,
        output_type=VerifierOutput,
        max_tokens=400,
        timeout_s=timeout_s,
    )


def writer_request(tools: dict[str, ToolSpec]) -> ProviderRequest:
    return ProviderRequest(
        agent="writer",
        model="fake-writer-1",
        prompt=prompts.load("writer").render(brief=BRIEF, max_sentences=5),
        payload=WriterInput(brief=BRIEF, facts=[], max_sentences=5),
        output_type=WriterOutput,
        temperature=0.2,
        max_tokens=1500,
        tools=tools,
    )


def search_spec(seen: list[dict[str, Any]]) -> ToolSpec:
    def search_corpus(query: str, top_k: int = 8) -> list[dict[str, Any]]:
        seen.append({"query": query, "top_k": top_k})
        return FACTS[:top_k]

    return ToolSpec(
        name="search_corpus",
        description="Find the manuscript's facts that match a query.",
        parameters={
            "type": "object",
            "properties": {"query": {"type": "string"}, "top_k": {"type": "integer"}},
            "required": ["query"],
        },
        fn=search_corpus,
        record=lambda hits: [{"id": h["id"], "score": h["score"]} for h in hits],
    )


# -- answers ----------------------------------------------------------------------------------------


def test_a_structured_answer_comes_back_with_the_usage_the_server_reported(provider: Provider, fake: FakeLLM) -> None:
    fake.cached_tokens = 7
    result = provider.complete(verifier_request())

    assert VerifierOutput.model_validate(result.output).verdict == "supported"
    assert result.tokens_estimated is False
    assert result.input_tokens > 7 and result.output_tokens > 0
    assert result.cached_tokens == 7
    assert result.model == "fake-judge-1"
    assert len(fake.requests) == 1


def test_without_reported_usage_the_tokens_are_estimated(provider: Provider, fake: FakeLLM) -> None:
    fake.report_usage = False
    result = provider.complete(writer_request({"search_corpus": search_spec([])}))
    assert result.tokens_estimated is True
    assert result.input_tokens > 0 and result.output_tokens > 0 and result.cached_tokens == 0


def test_the_contract_travels_the_way_each_wire_format_expects(provider: Provider, fake: FakeLLM) -> None:
    provider.complete(verifier_request())
    body = fake.requests[0].body
    schema = VerifierOutput.model_json_schema()
    if provider.name == "openai":
        assert body["response_format"]["json_schema"] == {"name": "verifier_output", "schema": schema, "strict": False}
        assert body["max_tokens"] == 400  # an OpenAI-compatible base URL gets the widely supported name
        assert body["messages"] == [{"role": "user", "content": verifier_request().prompt}]
    else:
        assert body["tools"] == [
            {"name": "submit_verifier", "description": body["tools"][0]["description"], "input_schema": schema}
        ]
        assert body["tool_choice"] == {"type": "tool", "name": "submit_verifier"}
        assert "temperature" not in body
    assert KEY in fake.requests[0].headers.get("authorization", "") + fake.requests[0].headers.get("x-api-key", "")


def test_a_tool_call_round_trip_runs_the_python_tool_and_sends_its_result_back(
    provider: Provider, fake: FakeLLM
) -> None:
    seen: list[dict[str, Any]] = []
    result = provider.complete(writer_request({"search_corpus": search_spec(seen)}))

    assert seen == [{"query": BRIEF, "top_k": 5}]
    assert result.tool_calls == [
        ToolCall("search_corpus", {"query": BRIEF, "top_k": 5}, [{"id": f["id"], "score": f["score"]} for f in FACTS])
    ]
    assert result.output == {"sentences": [{"text": f["text"], "cites": [f["id"]]} for f in FACTS[:2]]}
    assert len(fake.requests) == 2
    second = str(fake.requests[1].body["messages"])
    assert FACTS[0]["text"] in second  # the full result reached the model, not just what the log keeps
    first, last = fake.requests[0].body, fake.requests[1].body
    assert result.input_tokens > 0 and not result.tokens_estimated
    if provider.name == "anthropic":
        assert first["tool_choice"] == {"type": "any"}
        assert last["messages"][2]["content"][0]["type"] == "tool_result"
    else:
        assert last["messages"][1]["tool_calls"][0]["function"]["name"] == "search_corpus"
        assert last["messages"][2]["role"] == "tool"


def test_usage_is_summed_over_the_tool_rounds(provider: Provider, fake: FakeLLM) -> None:
    single = provider.complete(verifier_request())
    fake.reset()
    looped = provider.complete(writer_request({"search_corpus": search_spec([])}))
    assert looped.input_tokens > single.input_tokens  # two rounds, the second carrying the tool result


def test_an_unknown_tool_or_bad_arguments_go_back_to_the_model_as_an_error(provider: Provider, fake: FakeLLM) -> None:
    fake.push(
        Fault.tool_call("delete_everything", {"really": True}),
        Fault.tool_call("search_corpus", {"q": 1}),
        Fault.tool_call("search_corpus", {"query": BRIEF, "top_k": 5}),
    )
    seen: list[dict[str, Any]] = []
    result = provider.complete(writer_request({"search_corpus": search_spec(seen)}))

    assert [c.name for c in result.tool_calls] == ["delete_everything", "search_corpus", "search_corpus"]
    assert "no tool named 'delete_everything'" in result.tool_calls[0].result
    assert "does not take these arguments" in result.tool_calls[1].result
    assert seen == [{"query": BRIEF, "top_k": 5}]  # only the well-formed call ran
    assert "no tool named" in str(fake.requests[1].body["messages"])
    assert result.output["sentences"]


def test_a_model_that_keeps_calling_tools_is_stopped_at_the_cap(provider: Provider, fake: FakeLLM) -> None:
    fake.push(*[Fault.tool_call("search_corpus", {"query": "again"})] * (MAX_TOOL_ROUNDS + 1))
    with pytest.raises(ProviderError, match=f"after {MAX_TOOL_ROUNDS} rounds") as caught:
        provider.complete(writer_request({"search_corpus": search_spec([])}))
    assert len(fake.requests) == MAX_TOOL_ROUNDS + 1
    assert caught.value.input_tokens > 0


# -- failures -----------------------------------------------------------------------------------------


def test_a_timeout_is_one_attempt_that_ends_near_the_timeout(provider: Provider, fake: FakeLLM) -> None:
    fake.push(Fault.timeout(3.0))
    started = time.perf_counter()
    with pytest.raises(ProviderTimeoutError, match=r"did not answer within 0\.3 s"):
        provider.complete(verifier_request(timeout_s=0.3))
    assert time.perf_counter() - started < 2.0
    assert len(fake.requests) == 1  # the SDK's own retries are off


def test_a_rate_limit_carries_retry_after_and_is_not_retried_by_the_sdk(provider: Provider, fake: FakeLLM) -> None:
    fake.push(Fault.status(429, retry_after="2"))
    with pytest.raises(RateLimitedError) as caught:
        provider.complete(verifier_request())
    assert caught.value.retry_after == 2.0
    assert caught.value.failure_class == "rate_limit"
    assert len(fake.requests) == 1


def test_retry_after_ms_wins_over_retry_after(provider: Provider, fake: FakeLLM) -> None:
    fake.push(Fault.status(429, retry_after="2", retry_after_ms="1500"))
    with pytest.raises(RateLimitedError) as caught:
        provider.complete(verifier_request())
    assert caught.value.retry_after == 1.5


@pytest.mark.parametrize("status", [500, 503, 529])
def test_a_server_error_is_unavailable(provider: Provider, fake: FakeLLM, status: int) -> None:
    fake.push(Fault.status(status))
    with pytest.raises(ProviderUnavailableError, match=f"HTTP {status}"):
        provider.complete(verifier_request())
    assert len(fake.requests) == 1


def test_a_refused_key_is_rejected_without_repeating_the_key(provider: Provider, fake: FakeLLM) -> None:
    fake.push(Fault.status(401))
    with pytest.raises(ProviderRejectedError) as caught:
        provider.complete(verifier_request())
    message = str(caught.value)
    assert KEY not in message and KEY[:12] not in message
    assert f"{provider.name.upper()}_API_KEY" in message
    assert caught.value.failure_class == "rejected"


def test_an_unknown_model_names_the_setting_to_change(provider: Provider, fake: FakeLLM) -> None:
    fake.push(Fault.status(404))
    with pytest.raises(ProviderRejectedError, match=f"'fake-judge-1'.*{provider.name.upper()}_MODEL"):
        provider.complete(verifier_request())


def test_content_that_is_not_json_is_invalid_json_with_the_tokens_billed(provider: Provider, fake: FakeLLM) -> None:
    fake.push(Fault.invalid_json_content())
    with pytest.raises(InvalidJsonError) as caught:
        provider.complete(verifier_request())
    assert caught.value.input_tokens > 0 and caught.value.output_tokens > 0
    assert "not JSON" in str(caught.value) or "not a JSON object" in str(caught.value)


def test_valid_json_that_breaks_the_contract_is_returned_for_the_gateway_to_judge(
    provider: Provider, fake: FakeLLM
) -> None:
    fake.push(Fault.contract_violation())
    assert provider.complete(verifier_request()).output == {"verdict": "maybe"}


@pytest.mark.parametrize("content_type", ["application/json", "text/html"])
def test_a_body_that_is_not_json_is_a_server_error(provider: Provider, fake: FakeLLM, content_type: str) -> None:
    fake.push(Fault.broken_body(content_type))
    with pytest.raises(ProviderUnavailableError, match="not a"):
        provider.complete(verifier_request())


def test_an_unreachable_server_is_unavailable(monkeypatch: pytest.MonkeyPatch, settings_reset: None) -> None:
    for name in REMOTE:
        _use(monkeypatch, name, key=KEY, base_url="http://user:hunter2@127.0.0.1:9")  # nothing listens on 9
        with pytest.raises(ProviderUnavailableError, match="Could not reach") as caught:
            get_provider(name).complete(verifier_request(timeout_s=2))
        assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("name", REMOTE)
def test_a_missing_key_without_a_base_url_is_a_configuration_error(
    name: str, monkeypatch: pytest.MonkeyPatch, settings_reset: None
) -> None:
    _use(monkeypatch, name, key=None, base_url=None)
    with pytest.raises(ConfigurationError, match=f"set {name.upper()}_API_KEY"):
        get_provider(name)


@pytest.mark.parametrize("name", REMOTE)
def test_a_base_url_without_a_key_is_enough_for_a_local_server(
    name: str, fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, settings_reset: None
) -> None:
    base = fake.openai_base_url if name == "openai" else fake.anthropic_base_url
    _use(monkeypatch, name, key=None, base_url=base)
    assert get_provider(name).complete(verifier_request()).output["verdict"] == "supported"


# -- the registry and the helpers ---------------------------------------------------------------------------


def test_one_instance_per_provider_and_settings(monkeypatch: pytest.MonkeyPatch, settings_reset: None) -> None:
    _use(monkeypatch, "openai", key=KEY, base_url=None)
    first = get_provider("openai")
    assert get_provider("openai") is first
    assert get_provider("openai").default_model("writer", "drafting") == "gpt-4.1-mini"
    monkeypatch.setenv("OPENAI_MODEL", "gpt-4.1")
    reset_settings()
    second = get_provider("openai")
    assert second is not first
    assert second.default_model("writer", "drafting") == "gpt-4.1"


def test_an_unknown_provider_lists_the_available_ones() -> None:
    with pytest.raises(ProviderError, match="no provider called 'gemini'") as caught:
        get_provider("gemini")
    assert all(name in str(caught.value) for name in ("local", "openai", "anthropic"))


def test_the_local_writer_calls_the_tool_spec_and_logs_its_record() -> None:
    result = LocalProvider().complete(writer_request({"search_corpus": search_spec([])}))
    assert result.tool_calls[0].result == [{"id": f["id"], "score": f["score"]} for f in FACTS]
    assert result.output["sentences"]


def test_retry_after_reads_seconds_milliseconds_and_http_dates() -> None:
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "3"}) == 0.25
    in_ten = retry_after_seconds({"retry-after": formatdate(time.time() + 10, usegmt=True)})
    assert in_ten is not None and 8 <= in_ten <= 10
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None
