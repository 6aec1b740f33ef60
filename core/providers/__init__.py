"""Model providers behind one seam: ``Provider.complete(ProviderRequest) -> ProviderResult``.

``local`` (offline, deterministic, free) is the default and is registered like any other;
``openai`` and ``anthropic`` are imported only when first asked for (their SDKs take about a
second to import, which a page or a test that never calls them should not pay).

Plugins: a module named in ``WORKBENCH_PROVIDER_PLUGINS`` (comma-separated) calls ``register``
when imported; ``get_provider`` imports those modules the first time it is asked for a name it
does not know. That is how a worker process, which imports nothing of the caller's, gets a
provider that lives outside ``core`` (``WORKBENCH_PROVIDER_PLUGINS=my_lab.providers``).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable

from core.errors import ProviderError
from core.providers.base import Provider, ProviderRequest, ProviderResult, ToolCall, ToolSpec
from core.providers.local import LocalProvider
from core.settings import Settings, get_settings

__all__ = [
    "Provider",
    "ProviderRequest",
    "ProviderResult",
    "ToolCall",
    "ToolSpec",
    "available",
    "get_provider",
    "load_plugins",
    "register",
]

Factory = Callable[[Settings], Provider]
PLUGINS_ENV = "WORKBENCH_PROVIDER_PLUGINS"
"""Environment variable: comma-separated modules that register providers when imported."""


def _openai(settings: Settings) -> Provider:
    from core.providers.openai_chat import OpenAIProvider

    return OpenAIProvider(settings)


def _anthropic(settings: Settings) -> Provider:
    from core.providers.anthropic_messages import AnthropicProvider

    return AnthropicProvider(settings)


_REGISTRY: dict[str, Factory] = {
    "local": lambda _settings: LocalProvider(),
    "openai": _openai,
    "anthropic": _anthropic,
}
# One instance per (name, settings object): a remote provider holds an HTTP client whose
# connection pool should be reused. The settings object rides along in the value so its id
# cannot be recycled by a new Settings while the entry lives.
_instances: dict[tuple[str, int], tuple[Settings, Provider]] = {}
_lock = threading.Lock()


def register(name: str, provider: type[Provider]) -> None:
    """Make ``provider`` (a class built with no arguments) available as ``WORKBENCH_PROVIDER=name``."""
    with _lock:
        _REGISTRY[name] = lambda _settings: provider()
        for key in [key for key in _instances if key[0] == name]:
            del _instances[key]


def available() -> list[str]:
    return sorted(_REGISTRY)


def load_plugins() -> None:
    """Import the modules named in ``WORKBENCH_PROVIDER_PLUGINS`` (each registers its providers).
    Importing twice is free, so this may run whenever an unknown name is asked for."""
    from core.settings import get_settings

    for module in (m.strip() for m in get_settings().provider_plugins.split(",")):
        if not module:
            continue
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ProviderError(
                f"The provider plugin {module!r} named in {PLUGINS_ENV} could not be imported ({error}); "
                "install it or remove it from that variable."
            ) from error


def get_provider(name: str) -> Provider:
    """The provider called ``name``, built once for the current settings (a new one after ``reset_settings``)."""
    if name not in _REGISTRY:
        load_plugins()  # outside the lock: a plugin calls register(), which takes it
    settings = get_settings()
    with _lock:
        cached = _instances.get((name, id(settings)))
        if cached is not None and cached[0] is settings:
            return cached[1]
        factory = _REGISTRY.get(name)
        if factory is None:
            raise ProviderError(
                f"There is no provider called {name!r}; set WORKBENCH_PROVIDER to one of: {', '.join(available())}."
            )
        provider = factory(settings)
        # Instances built for settings that are no longer current will never be asked for again.
        for key in [key for key, (owner, _) in _instances.items() if owner is not settings]:
            del _instances[key]
        _instances[(name, id(settings))] = (settings, provider)
        return provider
