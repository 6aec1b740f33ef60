"""The provider seam and the records that cross it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

Tool = Callable[..., Any]


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    result: Any


@dataclass(frozen=True)
class ProviderRequest:
    agent: str
    model: str
    prompt: str  # the rendered prompt, as a remote model would receive it
    payload: BaseModel  # the same input, typed, for providers that work on structure
    output_type: type[BaseModel]
    temperature: float = 0.0
    max_tokens: int = 1000
    tools: Mapping[str, Tool] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderResult:
    output: dict[str, Any]
    input_tokens: int
    output_tokens: int
    tokens_estimated: bool
    tool_calls: list[ToolCall] = field(default_factory=list)


class Provider(Protocol):
    name: str

    def model_for(self, agent: str) -> str: ...

    def complete(self, request: ProviderRequest) -> ProviderResult: ...
