"""The provider seam and the records that cross it.

A provider makes exactly one attempt per ``complete`` call (a tool loop included) and raises a
``ProviderError`` subclass naming its failure class; retries, budgets, caching and bookkeeping
are the gateway's (``core.gateway``), so there is one retry loop in the product.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

from pydantic import BaseModel


@dataclass(frozen=True)
class ToolSpec:
    """A function a model may call: its JSON-schema definition and the Python that answers it.

    ``record`` maps a result to what is kept in the call log (the full result by default);
    a tool whose results carry source text keeps only ids and scores there.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any]
    record: Callable[[Any], Any] = lambda result: result

    def definition(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    result: Any


@dataclass(frozen=True)
class ProviderRequest:
    agent: str
    model: str
    prompt: str  # the rendered prompt, as a remote model receives it (one user message)
    payload: BaseModel  # the same input, typed, for providers that work on structure
    output_type: type[BaseModel]  # its JSON schema goes to structured outputs / a forced tool
    temperature: float = 0.0
    max_tokens: int = 1000
    tools: Mapping[str, ToolSpec] = field(default_factory=dict)
    timeout_s: float = 60.0
    params: Mapping[str, Any] = field(default_factory=dict)
    """What the prompt version declares beyond the reserved keys (``Prompt.params``): thresholds,
    sentence limits, strictness. A remote model reads them in the rendered prompt; the local
    provider applies them itself, so two versions of an agent differ offline too."""


@dataclass(frozen=True)
class ProviderResult:
    output: dict[str, Any]
    input_tokens: int
    output_tokens: int
    tokens_estimated: bool  # True when counted with tiktoken, not reported by the provider
    cached_tokens: int = 0  # input tokens the provider served from its own prompt cache
    tool_calls: list[ToolCall] = field(default_factory=list)
    model: str | None = None  # the model id the provider says answered, when it says


@lru_cache(maxsize=32)
def output_schema(output_type: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of an agent's output (built once: pydantic takes about a millisecond)."""
    return output_type.model_json_schema()


class Provider(Protocol):
    name: str

    def default_model(self, agent: str, profile: str) -> str:
        """The model this provider uses for an agent whose prompt asks for ``profile``."""
        ...

    def complete(self, request: ProviderRequest) -> ProviderResult: ...
