"""The OpenAI provider: Chat Completions through the official SDK, for OpenAI itself or any
OpenAI-compatible server (Ollama, vLLM, llama.cpp) named by ``OPENAI_BASE_URL``.

The JSON contract travels as ``response_format`` (a JSON schema, not strict: strict mode refuses
the optional fields and ``$defs`` our pydantic schemas use). The SDK's own retries are off; the
gateway owns the only retry loop.
"""

from __future__ import annotations

import json
from typing import Any

import openai
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionAssistantMessageParam,
    ChatCompletionMessage,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
    ChatCompletionMessageToolCallUnionParam,
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
    refuse,
    run_tool,
    scrub,
    status_error,
)
from core.settings import Settings, get_settings
from core.tokens import count_tokens

VENDOR = Vendor("OpenAI", "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL")
PLACEHOLDER_KEY = "not-needed"
"""Sent to a local OpenAI-compatible server that wants no key (the SDK refuses an empty one)."""


class OpenAIProvider:
    name = "openai"

    def __init__(self, settings: Settings | None = None) -> None:
        settings = settings or get_settings()
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
        if not key and not settings.openai_base_url:
            raise ConfigurationError(
                "No OpenAI key: set OPENAI_API_KEY (or OPENAI_BASE_URL for a local OpenAI-compatible server such "
                "as Ollama or vLLM)."
            )
        self._settings = settings
        self._key = key
        self._base_url = display_url(settings.openai_base_url or "https://api.openai.com/v1")  # for messages
        # OpenAI's reasoning models refuse the older ``max_tokens``; compatible servers (Ollama,
        # llama.cpp, older vLLM) only know ``max_tokens``. So: the new name for OpenAI itself only.
        self._max_tokens_param = "max_tokens" if settings.openai_base_url else "max_completion_tokens"
        self._client = openai.OpenAI(
            api_key=key or PLACEHOLDER_KEY,
            base_url=settings.openai_base_url,
            max_retries=0,
            timeout=settings.provider_timeout_s,
        )

    def default_model(self, agent: str, profile: str) -> str:
        return self._settings.openai_model

    def complete(self, request: ProviderRequest) -> ProviderResult:
        messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": request.prompt}]
        options: dict[str, Any] = {
            "model": request.model,
            "temperature": request.temperature,
            self._max_tokens_param: request.max_tokens,
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": f"{request.agent}_output",
                    "schema": output_schema(request.output_type),
                    "strict": False,
                },
            },
            "timeout": request.timeout_s,
        }
        if request.tools:
            options["tools"] = [{"type": "function", "function": spec.definition()} for spec in request.tools.values()]
        usage = Usage()
        calls: list[ToolCall] = []
        for round_ in range(MAX_TOOL_ROUNDS + 1):
            response = self._create(messages, options, request)
            message, finish_reason = _first_choice(response)
            _count(usage, response, messages, message, request.model)
            if not message.tool_calls:
                return ProviderResult(
                    output=_output(message, finish_reason, request, usage),
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    tokens_estimated=usage.estimated,
                    cached_tokens=usage.cached_tokens,
                    tool_calls=calls,
                    model=getattr(response, "model", None),
                )
            if round_ == MAX_TOOL_ROUNDS:
                break  # no point running tools whose results nobody will read
            messages.append(_assistant_turn(message))
            for tool_call in message.tool_calls:
                if isinstance(tool_call, ChatCompletionMessageFunctionToolCall):
                    answer = run_tool(request.tools, tool_call.function.name, tool_call.function.arguments)
                else:  # a free-form "custom" tool call: we declare only function tools
                    answer = refuse(
                        tool_call.custom.name, {"raw": tool_call.custom.input}, "that is not a function tool"
                    )
                calls.append(answer.call)
                messages.append({"role": "tool", "tool_call_id": tool_call.id, "content": answer.text})
        raise ProviderError(
            f"The {request.agent} model ({request.model}) was still calling tools after {MAX_TOOL_ROUNDS} rounds, "
            f"the cap; its answer was abandoned. Try a stronger model for this agent (WORKBENCH_MODELS).",
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
        )

    def _create(
        self, messages: list[ChatCompletionMessageParam], options: dict[str, Any], request: ProviderRequest
    ) -> ChatCompletion:
        """One HTTP call, every SDK failure turned into the ``ProviderError`` that names its class."""
        try:
            response: object = self._client.chat.completions.create(**options, messages=messages)
        except openai.APITimeoutError:
            raise ProviderTimeoutError(
                f"OpenAI did not answer within {request.timeout_s:g} s (model {request.model}); a slow model may "
                "need a longer WORKBENCH_PROVIDER_TIMEOUT_S."
            ) from None
        except openai.APIConnectionError as error:
            cause = type(error.__cause__).__name__ if error.__cause__ else "connection error"
            raise ProviderUnavailableError(
                f"Could not reach OpenAI at {self._base_url} ({cause}): check OPENAI_BASE_URL and the network."
            ) from None
        except openai.APIStatusError as error:
            raise status_error(
                VENDOR,
                error.status_code,
                detail=scrub(_server_message(error), self._key),
                code=error.code,
                model=request.model,
                headers=error.response.headers,
            ) from None
        except (openai.APIResponseValidationError, json.JSONDecodeError):
            raise _unreadable(self._base_url) from None
        # With a Content-Type that is not JSON the SDK hands back the body as a string.
        if not isinstance(response, ChatCompletion):
            raise _unreadable(self._base_url)
        return response


def _unreadable(base_url: str) -> ProviderUnavailableError:
    return ProviderUnavailableError(
        f"The server at {base_url} answered with a body that is not a Chat Completions response (a proxy or gateway "
        "error page?); check OPENAI_BASE_URL."
    )


def _server_message(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return body if isinstance(body, str) else ""


def _first_choice(response: ChatCompletion) -> tuple[ChatCompletionMessage, str | None]:
    # The SDK builds models without validating them, so a compatible server's odd answer shows up
    # here as a missing attribute rather than as an SDK error.
    try:
        choice = response.choices[0]
        message = choice.message
        _ = message.content, message.tool_calls
    except (AttributeError, IndexError, TypeError):
        raise ProviderUnavailableError(
            "The OpenAI-compatible server answered without a message (no choices); check OPENAI_BASE_URL."
        ) from None
    return message, getattr(choice, "finish_reason", None)


def _count(
    usage: Usage,
    response: ChatCompletion,
    messages: list[ChatCompletionMessageParam],
    message: ChatCompletionMessage,
    model: str,
) -> None:
    reported = getattr(response, "usage", None)
    if reported is not None and isinstance(getattr(reported, "prompt_tokens", None), int):
        details = getattr(reported, "prompt_tokens_details", None)
        cached = getattr(details, "cached_tokens", None) or 0
        usage.add(reported.prompt_tokens, reported.completion_tokens or 0, cached)
        return
    # Some compatible servers report no usage: estimate this round so nothing goes uncounted.
    answer = message.content or json.dumps([c.model_dump() for c in message.tool_calls or []])
    usage.add(count_tokens(json.dumps(messages), model), count_tokens(answer, model), estimated=True)


def _assistant_turn(message: ChatCompletionMessage) -> ChatCompletionAssistantMessageParam:
    """The model's tool-calling turn as it must be sent back, built by hand: ``model_dump`` would
    carry fields (``refusal``, ``annotations``) some compatible servers reject."""
    calls: list[ChatCompletionMessageToolCallUnionParam] = []
    for call in message.tool_calls or []:
        if isinstance(call, ChatCompletionMessageFunctionToolCall):
            calls.append(
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
            )
        else:
            calls.append(
                {"id": call.id, "type": "custom", "custom": {"name": call.custom.name, "input": call.custom.input}}
            )
    return {"role": "assistant", "content": message.content, "tool_calls": calls}


def _output(
    message: ChatCompletionMessage, finish_reason: str | None, request: ProviderRequest, usage: Usage
) -> dict[str, Any]:
    output = json_object(message.content)
    if output is not None:
        return output
    if message.refusal:
        problem = f"refused: {scrub(message.refusal, None)}"
    elif finish_reason == "length":
        problem = f"was cut off at max_tokens ({request.max_tokens}) before its JSON was complete"
    elif not (message.content or "").strip():
        problem = "was empty"
    else:
        problem = f"is not a JSON object: {scrub(message.content or '', None)[:80]!r}"
    raise InvalidJsonError(
        f"The {request.agent} answer from OpenAI ({request.model}) {problem}.",
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
    )
