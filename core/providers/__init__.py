"""Model providers behind one seam: ``Provider.complete(ProviderRequest) -> ProviderResult``.

``local`` (offline, deterministic, free) is the default and is registered like any other.
"""

from __future__ import annotations

from core.errors import ProviderError
from core.providers.base import Provider, ProviderRequest, ProviderResult, ToolCall
from core.providers.local import LocalProvider

_REGISTRY: dict[str, type[Provider]] = {"local": LocalProvider}

__all__ = ["Provider", "ProviderRequest", "ProviderResult", "ToolCall", "get_provider", "register"]


def register(name: str, provider: type[Provider]) -> None:
    _REGISTRY[name] = provider


def get_provider(name: str) -> Provider:
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ProviderError(
            f"Provider {name!r} is not available in this build (the OpenAI and Anthropic providers arrive "
            f"with the LLM gateway). Set WORKBENCH_PROVIDER=local to use the offline provider."
        ) from None
