"""What the two remote providers share: running the tools a model asks for, adding up usage,
reading ``Retry-After``, and turning an HTTP status into a ``ProviderError`` a person can act on.

Nothing here imports an SDK, so it costs nothing to import.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from core.errors import (
    ProviderError,
    ProviderRejectedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
)
from core.providers.base import ToolCall, ToolSpec

MAX_TOOL_ROUNDS = 6
"""Model turns that may ask for tools in one call; a model still asking after that is looping."""

DETAIL_CHARS = 200
"""Longest piece of a server's own error message repeated in ours."""


@dataclass
class Usage:
    """Tokens billed over every round of one call (tool rounds included)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    estimated: bool = False

    def add(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0, *, estimated: bool = False) -> None:
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cached_tokens += cached_tokens
        self.estimated = self.estimated or estimated


class ToolAnswer(NamedTuple):
    call: ToolCall  # what the call log keeps
    text: str  # what the model reads back
    failed: bool  # the model's call was unusable; ``text`` says why


def run_tool(tools: Mapping[str, ToolSpec], name: str, arguments: str | Mapping[str, Any] | None) -> ToolAnswer:
    """Answer one tool call a model made.

    A model can name a tool that does not exist or send arguments that do not fit; it gets an error
    text back (and may try again) rather than the whole call failing. An exception raised *inside*
    the tool is ours, not the model's, and propagates.
    """
    parsed: Any = arguments
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as error:
            return refuse(name, {"raw": arguments}, f"the arguments are not valid JSON ({error.msg})")
    if parsed is None:
        parsed = {}
    if not isinstance(parsed, Mapping):
        return refuse(name, {"raw": parsed}, f"the arguments must be a JSON object, not {type(parsed).__name__}")
    parsed = dict(parsed)
    spec = tools.get(name)
    if spec is None:
        return refuse(
            name, parsed, f"there is no tool named {name!r}; the tools are: {', '.join(sorted(tools)) or 'none'}"
        )
    try:
        inspect.signature(spec.fn).bind(**parsed)
    except TypeError as error:
        return refuse(name, parsed, f"{name} does not take these arguments ({error})")
    except ValueError:
        pass  # no inspectable signature (a builtin): let the call itself decide
    result = spec.fn(**parsed)
    text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)
    return ToolAnswer(ToolCall(name, parsed, spec.record(result)), text, failed=False)


def refuse(name: str, arguments: dict[str, Any], why: str) -> ToolAnswer:
    """The answer to a tool call the model should not have made; ``why`` tells it what was wrong."""
    message = f"Error: {why}. Call a listed tool again with a JSON object of its parameters."
    return ToolAnswer(ToolCall(name, arguments, message), message, failed=True)


def json_object(text: str | None) -> dict[str, Any] | None:
    """The JSON object in ``text``, or None when it is not one (prose, a list, nothing)."""
    if not text or not text.strip():
        return None
    stripped = text.strip()
    if stripped.startswith("```"):
        # Some OpenAI-compatible servers wrap JSON mode answers in a Markdown fence.
        stripped = stripped.strip("`").removeprefix("json").strip()
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks us to wait: ``retry-after-ms``, else ``Retry-After`` (seconds or an HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def display_url(url: str) -> str:
    """``url`` fit for a message: any ``user:password@`` in it is left out."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def scrub(text: str, secret: str | None) -> str:
    """``text`` without the secret in it, cut to a readable length (servers echo keys in 401 bodies)."""
    if secret:
        text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 1] + "…"


@dataclass(frozen=True)
class Vendor:
    """How messages name a remote provider and the settings a person would change."""

    label: str  # "OpenAI", "Anthropic"
    key_env: str
    base_url_env: str
    model_env: str


def status_error(
    vendor: Vendor,
    status: int,
    *,
    detail: str,
    code: str | None,
    model: str,
    headers: Mapping[str, str],
) -> ProviderError:
    """The ``ProviderError`` for an HTTP error status; ``detail`` must already be scrubbed."""
    said = f": {detail}" if detail else ""
    if status == 429 and code == "insufficient_quota":
        # OpenAI answers 429 when the account is out of credit; waiting will not help.
        return ProviderRejectedError(
            f"{vendor.label} says this account has no quota left: add credit or use another key."
        )
    if status == 429:
        wait = retry_after_seconds(headers)
        when = f"; it asks to wait {wait:g} s" if wait is not None else ""
        return RateLimitedError(f"{vendor.label} is rate-limiting this key (HTTP 429){when}.", retry_after=wait)
    if status == 408:
        return ProviderTimeoutError(f"{vendor.label} gave up waiting for the request (HTTP 408).")
    if status >= 500:
        return ProviderUnavailableError(
            f"{vendor.label} had a server error (HTTP {status}{said}). This is usually temporary."
        )
    if status == 401:
        # Never repeat the server's text here: OpenAI's 401 message quotes the key it was given.
        return ProviderRejectedError(f"{vendor.label} refused the key: check {vendor.key_env}.")
    if status == 403:
        return ProviderRejectedError(
            f"{vendor.label} refused access (HTTP 403{said}): check that the key in {vendor.key_env} may use "
            f"model {model!r}."
        )
    if status == 404:
        return ProviderRejectedError(
            f"{vendor.label} does not know model {model!r} or this endpoint (HTTP 404{said}): check {vendor.model_env} "
            f"(or WORKBENCH_MODELS) and {vendor.base_url_env}."
        )
    if status == 413:
        return ProviderRejectedError(
            f"{vendor.label} says the request is too large (HTTP 413): lower WORKBENCH_CHUNK_TOKENS or shorten the "
            "input."
        )
    return ProviderRejectedError(
        f"{vendor.label} rejected the request for model {model!r} (HTTP {status}{said}). Check {vendor.model_env} "
        "(or WORKBENCH_MODELS): the model may not support structured output or tools."
    )
