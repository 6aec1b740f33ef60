"""The Anthropic provider: the Messages API through the official SDK.

The JSON contract travels as a tool: ``submit_<agent>``, whose input schema is the output
model's JSON schema, and the answer is the input the model gives it. With no other tools the
model is forced to call it; with other tools (the Writer's ``search_corpus``) it must call one
of them each turn and ends by calling ``submit_<agent>``.

No temperature is sent: the SDK (1.0 and later) dropped the parameter and newer Claude models
answer 400 to it; the forced tool, not sampling, keeps the answer in shape. The SDK's own
retries are off; the gateway owns the only retry loop.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
from anthropic.types import (
    AssistantMessageParam,
    Message,
    TextBlock,
    TextBlockParam,
    ToolResultBlockParam,
    ToolUseBlock,
    ToolUseBlockParam,
    UserMessageParam,
)

from core.errors import (
    ConfigurationError,
    InvalidJsonError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from core.providers.base import ProviderRequest, ProviderResult, ToolCall, output_schema
from core.providers.remote import (
    MAX_TOOL_ROUNDS,
    Usage,
    Vendor,
    display_url,
    json_object,
    run_tool,
    scrub,
    status_error,
)
from core.settings import Settings, get_settings
from core.tokens import count_tokens

VENDOR = Vendor("Anthropic", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL")
PLACEHOLDER_KEY = "not-needed"
"""Sent to a compatible server behind ANTHROPIC_BASE_URL that wants no key."""


def submit_tool_name(agent: str) -> str:
    return f"submit_{agent}"


class AnthropicProvider:
    name = "anthropic"

    def __init__(self, settings: Settings | None = None) -> None:
        settings = settings or get_settings()
        key = settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else ""
        if not key and not settings.anthropic_base_url:
            raise ConfigurationError(
                "No Anthropic key: set ANTHROPIC_API_KEY (or ANTHROPIC_BASE_URL for a compatible server or proxy)."
            )
        self._settings = settings
        self._key = key
        self._base_url = display_url(settings.anthropic_base_url or "https://api.anthropic.com")  # for messages
        # An explicit api_key also keeps the SDK from looking for profiles and federation settings.
        self._client = anthropic.Anthropic(
            api_key=key or PLACEHOLDER_KEY,
            base_url=settings.anthropic_base_url,
            max_retries=0,
            timeout=settings.provider_timeout_s,
        )

    def default_model(self, agent: str, profile: str) -> str:
        return self._settings.anthropic_model

    def complete(self, request: ProviderRequest) -> ProviderResult:
        submit = submit_tool_name(request.agent)
        tools: list[dict[str, Any]] = [
            {"name": spec.name, "description": spec.description, "input_schema": spec.parameters}
            for spec in request.tools.values()
        ]
        tools.append(
            {
                "name": submit,
                "description": f"Submit the {request.agent}'s answer. Call this exactly once, with the final answer.",
                "input_schema": output_schema(request.output_type),
            }
        )
        options: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "tools": tools,
            "tool_choice": {"type": "any"} if request.tools else {"type": "tool", "name": submit},
            "timeout": request.timeout_s,
        }
        messages: list[UserMessageParam | AssistantMessageParam] = [{"role": "user", "content": request.prompt}]
        usage = Usage()
        calls: list[ToolCall] = []
        for round_ in range(MAX_TOOL_ROUNDS + 1):
            response = self._create(messages, options, request)
            blocks = _blocks(response)
            _count(usage, response, messages, request.model)
            submitted = next((b for b in blocks if isinstance(b, ToolUseBlock) and b.name == submit), None)
            tool_uses = [b for b in blocks if isinstance(b, ToolUseBlock)]
            if submitted is not None or not tool_uses:
                return ProviderResult(
                    output=_output(submitted, blocks, response, request, usage),
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    tokens_estimated=usage.estimated,
                    cached_tokens=usage.cached_tokens,
                    tool_calls=calls,
                    model=getattr(response, "model", None),
                )
            if round_ == MAX_TOOL_ROUNDS:
                break  # no point running tools whose results nobody will read
            messages.append({"role": "assistant", "content": _echo(blocks)})
            results: list[ToolResultBlockParam] = []
            for use in tool_uses:
                answer = run_tool(request.tools, use.name, use.input)
                calls.append(answer.call)
                results.append(
                    {"type": "tool_result", "tool_use_id": use.id, "content": answer.text, "is_error": answer.failed}
                )
            messages.append({"role": "user", "content": results})
        raise ProviderError(
            f"The {request.agent} model ({request.model}) was still calling tools after {MAX_TOOL_ROUNDS} rounds, "
            f"the cap; its answer was abandoned. Try a stronger model for this agent (WORKBENCH_MODELS).",
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
        )

    def _create(
        self,
        messages: list[UserMessageParam | AssistantMessageParam],
        options: dict[str, Any],
        request: ProviderRequest,
    ) -> Message:
        """One HTTP call, every SDK failure turned into the ``ProviderError`` that names its class."""
        try:
            response: object = self._client.messages.create(**options, messages=messages)
        except anthropic.APITimeoutError:
            raise ProviderTimeoutError(
                f"Anthropic did not answer within {request.timeout_s:g} s (model {request.model}); a slow model may "
                "need a longer WORKBENCH_PROVIDER_TIMEOUT_S."
            ) from None
        except anthropic.APIConnectionError as error:
            cause = type(error.__cause__).__name__ if error.__cause__ else "connection error"
            raise ProviderUnavailableError(
                f"Could not reach Anthropic at {self._base_url} ({cause}): check ANTHROPIC_BASE_URL and the network."
            ) from None
        except anthropic.APIStatusError as error:
            # 529 (overloaded) is a subclass of InternalServerError and lands in the >= 500 branch.
            raise status_error(
                VENDOR,
                error.status_code,
                detail=scrub(error.api_message or "", self._key),
                code=error.error_code or error.type,
                model=request.model,
                headers=error.response.headers,
            ) from None
        except (anthropic.APIResponseValidationError, json.JSONDecodeError):
            raise _unreadable(self._base_url) from None
        # With a Content-Type that is not JSON the SDK hands back the body as a string.
        if not isinstance(response, Message):
            raise _unreadable(self._base_url)
        return response


def _unreadable(base_url: str) -> ProviderUnavailableError:
    return ProviderUnavailableError(
        f"The server at {base_url} answered with a body that is not a Messages API response (a proxy or gateway "
        "error page?); check ANTHROPIC_BASE_URL."
    )


def _blocks(response: Message) -> list[Any]:
    # The SDK builds models without validating them: an odd body shows up as a missing attribute.
    content = getattr(response, "content", None)
    if not isinstance(content, list):
        raise ProviderUnavailableError("Anthropic answered without content blocks; check ANTHROPIC_BASE_URL.")
    return content


def _count(
    usage: Usage, response: Message, messages: list[UserMessageParam | AssistantMessageParam], model: str
) -> None:
    reported = getattr(response, "usage", None)
    if reported is None or not isinstance(getattr(reported, "input_tokens", None), int):
        # A compatible server may report no usage: estimate this round so nothing goes uncounted.
        answer = json.dumps(_echo(_blocks(response)))
        usage.add(count_tokens(json.dumps(messages), model), count_tokens(answer, model), estimated=True)
        return
    # Anthropic's input_tokens leaves out what the prompt cache served or stored; all of it was billed.
    read = getattr(reported, "cache_read_input_tokens", None) or 0
    written = getattr(reported, "cache_creation_input_tokens", None) or 0
    usage.add(reported.input_tokens + read + written, getattr(reported, "output_tokens", None) or 0, read)


def _echo(blocks: list[Any]) -> list[TextBlockParam | ToolUseBlockParam]:
    """The model's turn as it is sent back: its text and tool calls (we enable no other block kinds)."""
    echoed: list[TextBlockParam | ToolUseBlockParam] = []
    for block in blocks:
        if isinstance(block, ToolUseBlock):
            echoed.append({"type": "tool_use", "id": block.id, "name": block.name, "input": block.input})
        elif isinstance(block, TextBlock):
            echoed.append({"type": "text", "text": block.text})
    return echoed


def _output(
    answer: ToolUseBlock | None, blocks: list[Any], response: Message, request: ProviderRequest, usage: Usage
) -> dict[str, Any]:
    stop_reason = getattr(response, "stop_reason", None)
    # A tool call cut off by max_tokens arrives with partial (often empty) input: not an answer.
    if answer is not None and isinstance(answer.input, dict) and stop_reason != "max_tokens":
        return dict(answer.input)
    # A model may still answer in text despite tool_choice (a compatible server, say): take JSON if it is JSON.
    text = "".join(b.text for b in blocks if isinstance(b, TextBlock))
    output = json_object(text)
    if output is not None:
        return output
    if stop_reason == "max_tokens":
        problem = f"was cut off at max_tokens ({request.max_tokens}) before its answer was complete"
    elif stop_reason == "refusal":
        problem = "was a refusal"
    elif answer is not None:
        problem = f"called {answer.name} with no answer"
    elif not text.strip():
        problem = "was empty"
    else:
        problem = f"is text, not JSON: {scrub(text, None)[:80]!r}"
    raise InvalidJsonError(
        f"The {request.agent} answer from Anthropic ({request.model}) {problem}.",
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
    )
