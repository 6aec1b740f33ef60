"""The release checklist's "secrets verified": provider keys present and accepted, the encryption key
ring parses, is no development key outside local, and opens the newest sealed content.

A provider key is proven by one authenticated, cheap request through the provider's official SDK
(``models.list()``, short timeout, no retries) to the configured base URL. Nothing here prints,
logs or stores a secret: messages name settings and key ids, and a server's error text is scrubbed
of the key before it is repeated.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from core import crypto, model_registry
from core.crypto import KeyRing
from core.errors import WorkbenchError
from core.models import LlmToolCall, TrajectoryEvent
from core.providers.remote import display_url, scrub
from core.release_items import SECRETS, ItemResult
from core.settings import Settings

PING_TIMEOUT_S = 10.0
"""How long the authenticated probe of a provider may take, seconds."""


@dataclass(frozen=True)
class _Remote:
    label: str
    key_env: str
    key_field: str
    url_field: str
    default_url: str


REMOTES = {
    "openai": _Remote("OpenAI", "OPENAI_API_KEY", "openai_api_key", "openai_base_url", "https://api.openai.com/v1"),
    "anthropic": _Remote(
        "Anthropic", "ANTHROPIC_API_KEY", "anthropic_api_key", "anthropic_base_url", "https://api.anthropic.com"
    ),
}
"""Providers that need a key; ``local`` needs none."""


def callable_providers(settings: Settings, models: Iterable[str], registry: model_registry.Snapshot) -> list[str]:
    """The configured provider, and the registry's provider of each configured model."""
    named = {settings.provider}
    for model in models:
        entry = registry.entry(model)
        if entry is not None and entry.spec.provider in REMOTES:
            named.add(entry.spec.provider)
    return sorted(named)


def _list_models(provider: str, key: str, base_url: str | None) -> Exception | None:
    """One authenticated request; the SDK's error when the key or the server fails, else None.
    The SDKs are imported here: each takes about a second, which a check of ``local`` should not pay."""
    if provider == "openai":
        import openai

        try:
            openai.OpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=PING_TIMEOUT_S).models.list()
        except openai.OpenAIError as error:
            return error
        return None
    import anthropic

    try:
        anthropic.Anthropic(api_key=key, base_url=base_url, max_retries=0, timeout=PING_TIMEOUT_S).models.list()
    except anthropic.AnthropicError as error:
        return error
    return None


def provider_problem(provider: str, settings: Settings) -> str | None:
    """Why ``provider`` cannot be called with the configured key, or None when its key was accepted."""
    remote = REMOTES.get(provider)
    if remote is None:
        return None
    secret = getattr(settings, remote.key_field)
    key = secret.get_secret_value() if secret is not None else ""
    base_url = getattr(settings, remote.url_field)
    where = display_url(base_url or remote.default_url)
    if not key:
        return f"{remote.key_env} is not set, and the configuration calls {remote.label}: set it"
    error = _list_models(provider, key, base_url)
    if error is None:
        return None
    status = getattr(error, "status_code", None)  # both SDKs' APIStatusError carry it
    detail = scrub(str(getattr(error, "message", "") or error), key)
    if status in (401, 403):
        return f"{remote.label} at {where} refused {remote.key_env} ({status}: {detail}): set a valid key"
    if status is not None:
        return f"{remote.label} at {where} answered {status} to a models list ({detail})"
    return f"{remote.label} at {where} cannot be reached ({type(error).__name__}): check {remote.url_field.upper()}"


def development_key_use(settings: Settings) -> str | None:
    """How the development key is in use (the generated ring, or its key inside the configured ring), or None.
    Never creates the development key file."""
    dev_file = settings.data_dir / crypto.DEV_KEY_FILE
    if settings.encryption_keys is None:
        return f"WORKBENCH_ENCRYPTION_KEYS is not set, so trace content is sealed with the generated key in {dev_file}"
    if not dev_file.exists():
        return None
    try:
        dev_keys = {key for _kid, key in crypto.parse_ring(dev_file.read_text())}
    except WorkbenchError:
        return None
    ring = crypto.key_ring(settings)
    same = [kid for kid, key in ring.keys if key in dev_keys]
    if same:
        return f"WORKBENCH_ENCRYPTION_KEYS holds the development key of {dev_file} (key id '{same[0]}')"
    return None


def development_key_problem(settings: Settings) -> str | None:
    """The refusal staging and production give while the development key is in use, with the fix."""
    use = development_key_use(settings)
    if use is None:
        return None
    return (
        f"development key in {settings.environment}: {use}. Make a key with `python -m core keys new`, put it first in "
        "WORKBENCH_ENCRYPTION_KEYS (the development key after it), run `python -m core keys rotate`, then drop the "
        "development key from the ring"
    )


def sealed_problems(connection: Connection, ring: KeyRing) -> tuple[list[str], list[str]]:
    """Whether the ring opens the newest sealed trace event and tool call: (problems, what opened)."""
    from core.gateway import tool_call_aad  # the gateway pulls in the providers; only this check needs it

    problems, opened = [], []
    e, t = TrajectoryEvent, LlmToolCall
    event = connection.execute(
        select(e.id, e.tenant_id, e.trace_id, e.span_id, e.key_id, e.content)
        .where(e.content.is_not(None))
        .order_by(e.id.desc())
        .limit(1)
    ).first()
    call = connection.execute(
        select(t.id, t.tenant_id, t.trace_id, t.usage_event_id, t.name, t.key_id, t.content)
        .order_by(t.id.desc())
        .limit(1)
    ).first()
    checks: list[tuple[str, Any, bytes]] = []
    if event is not None:
        checks.append(("trace event", event, crypto.span_aad(event.tenant_id, event.trace_id, event.span_id)))
    if call is not None:
        checks.append(("tool call", call, tool_call_aad(call.tenant_id, call.trace_id, call.usage_event_id, call.name)))
    for kind, row, aad in checks:
        try:
            ring.open(row.key_id or "", row.content, aad=aad)
        except crypto.DecryptionError as error:
            problems.append(
                f"the key ring cannot open the newest sealed {kind} (#{row.id}, key '{row.key_id}'): {error}"
            )
        else:
            opened.append(f"the newest sealed {kind} (#{row.id}, key '{row.key_id}') opens")
    return problems, opened


def secrets_item(connection: Connection, settings: Settings, models: Iterable[str]) -> ItemResult:
    problems, notes = [], []
    registry = model_registry.snapshot(connection)
    for provider in callable_providers(settings, models, registry):
        problem = provider_problem(provider, settings)
        if problem:
            problems.append(problem)
        else:
            notes.append(f"{provider} key accepted" if provider in REMOTES else f"{provider} needs no key")
    # Outside local the generated ring is refused anyway; asking for it would write its key file.
    wanted = settings.encryption_keys is not None or settings.environment == "local"
    try:
        ring = crypto.key_ring(settings) if wanted else None
    except WorkbenchError as error:
        problems.append(str(error))
        ring = None
    if settings.environment == "local":
        use = development_key_use(settings)
        if use:
            notes.append("development key (allowed in local; staging and production refuse it)")
    elif (refusal := development_key_problem(settings)) is not None:
        problems.append(refusal)
    if ring is not None:
        found, opened = sealed_problems(connection, ring)
        problems += found
        notes += opened or ["nothing sealed yet"]
    if problems:
        text = "; ".join(problems)
        return ItemResult(SECRETS, False, text.rstrip(".") + ".")
    return ItemResult(SECRETS, True, "; ".join(notes))
