"""The answer cache: keyed by tenant, agent, prompt version, model and input hash.

The tenant is part of the key, so one group's identical input is never answered from
another's run. A hit costs nothing and is still a usage event (``cache_hit``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from core.db import insert_ignoring_duplicates
from core.models import LlmCacheEntry, table_of
from core.providers import ToolCall

_T = table_of(LlmCacheEntry)
# Built once (the gateway asks on every call); the tenant is always part of the key.
_LOOKUP = select(_T.c.id, _T.c.output, _T.c.tool_calls, _T.c.input_tokens, _T.c.output_tokens).where(
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


@dataclass(frozen=True)
class CachedAnswer:
    id: int
    output: dict[str, Any]
    tool_calls: list[ToolCall]
    input_tokens: int
    output_tokens: int


def lookup(connection: Connection, key: CacheKey) -> CachedAnswer | None:
    row = connection.execute(_LOOKUP, key.params()).first()
    if row is None:
        return None
    calls = [ToolCall(c["name"], c["arguments"], c["result"]) for c in row.tool_calls]
    return CachedAnswer(row.id, row.output, calls, row.input_tokens, row.output_tokens)


def count_hit(connection: Connection, entry_id: int) -> None:
    connection.execute(_HIT, {"entry_id": entry_id})


def store(
    connection: Connection,
    key: CacheKey,
    *,
    output: dict[str, Any],
    tool_calls: list[ToolCall],
    input_tokens: int,
    output_tokens: int,
) -> None:
    insert_ignoring_duplicates(
        connection,
        _T,
        {
            **key.params(),
            "output": output,
            "tool_calls": [{"name": c.name, "arguments": c.arguments, "result": c.result} for c in tool_calls],
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "hits": 0,
        },
    )
