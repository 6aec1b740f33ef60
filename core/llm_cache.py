"""The answer cache: keyed by tenant, agent, prompt version, model and input hash.

The tenant is part of the key, so one group's identical input is never answered from
another's run. A hit costs nothing and is still a usage event (``cache_hit``). The answer and
its tool calls are sealed (``core.crypto``) with the key as associated data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from core.crypto import KeyRing
from core.db import insert_ignoring_duplicates
from core.models import LlmCacheEntry, table_of
from core.providers import ToolCall

_T = table_of(LlmCacheEntry)
# Built once (the gateway asks on every call); the tenant is always part of the key.
_LOOKUP = select(_T.c.id, _T.c.content, _T.c.key_id, _T.c.input_tokens, _T.c.output_tokens).where(
    _T.c.tenant_id == bindparam("tenant_id"),
    _T.c.agent == bindparam("agent"),
    _T.c.prompt_version == bindparam("prompt_version"),
    _T.c.model == bindparam("model"),
    _T.c.input_hash == bindparam("input_hash"),
)
_HIT = update(_T).where(_T.c.id == bindparam("entry_id")).values(hits=_T.c.hits + 1)


@dataclass(frozen=True)
class CacheKey:
    tenant_id: int
    agent: str
    prompt_version: str
    model: str
    input_hash: str

    def params(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "agent": self.agent,
            "prompt_version": self.prompt_version,
            "model": self.model,
            "input_hash": self.input_hash,
        }

    def aad(self) -> bytes:
        return aad(self.tenant_id, self.agent, self.prompt_version, self.model, self.input_hash)


def aad(tenant_id: int, agent: str, prompt_version: str, model: str, input_hash: str) -> bytes:
    """What a sealed answer is bound to: its own key (copied onto another entry, it does not open)."""
    return f"cache:{tenant_id}:{agent}:{prompt_version}:{model}:{input_hash}".encode()


@dataclass(frozen=True)
class CachedAnswer:
    id: int
    output: dict[str, Any]
    tool_calls: list[ToolCall]
    input_tokens: int
    output_tokens: int


def lookup(connection: Connection, key: CacheKey, ring: KeyRing) -> CachedAnswer | None:
    row = connection.execute(_LOOKUP, key.params()).first()
    if row is None:
        return None
    sealed = ring.open_json(row.key_id, row.content, aad=key.aad())
    calls = [ToolCall(c["name"], c["arguments"], c["result"]) for c in sealed["tool_calls"]]
    return CachedAnswer(row.id, sealed["output"], calls, row.input_tokens, row.output_tokens)


def count_hit(connection: Connection, entry_id: int) -> None:
    connection.execute(_HIT, {"entry_id": entry_id})


def store(
    connection: Connection,
    key: CacheKey,
    ring: KeyRing,
    *,
    output: dict[str, Any],
    tool_calls: list[ToolCall],
    input_tokens: int,
    output_tokens: int,
) -> None:
    sealed = ring.seal_json(
        {
            "output": output,
            "tool_calls": [{"name": c.name, "arguments": c.arguments, "result": c.result} for c in tool_calls],
        },
        aad=key.aad(),
    )
    insert_ignoring_duplicates(
        connection,
        _T,
        {
            **key.params(),
            "content": sealed.blob,
            "key_id": sealed.key_id,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "hits": 0,
        },
    )
