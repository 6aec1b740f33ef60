"""Token budgets held in the database, so every process and thread draws on the same count.

A unit of work (a paragraph run, keyed by its trace id) opens a budget; each agent call
reserves its tiktoken estimate with one conditional UPDATE *before* anything is sent, and
settles to what the provider reported afterwards. Because the check and the reservation are
one statement, concurrent calls cannot together spend past the limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, select, update

from core.db import insert_ignoring_duplicates
from core.errors import BudgetExceededError
from core.models import TokenBudgetRow, table_of

_T = table_of(TokenBudgetRow)
# Built once: the gateway runs these on every call, and building costs more than running on SQLite.
_RESERVE = (
    update(_T)
    .where(_T.c.key == bindparam("k"), _T.c.reserved_tokens + bindparam("n") <= _T.c.limit_tokens)
    .values(reserved_tokens=_T.c.reserved_tokens + bindparam("n"))
)
_SETTLE = update(_T).where(_T.c.key == bindparam("k")).values(reserved_tokens=_T.c.reserved_tokens + bindparam("delta"))


@dataclass(frozen=True)
class TokenBudget:
    """A handle on one budget row; ``key`` is usually ``paragraph:<trace id>``."""

    key: str
    limit: int

    @classmethod
    def open(cls, connection: Connection, *, key: str, tenant_id: int, limit: int) -> TokenBudget:
        insert_ignoring_duplicates(
            connection, _T, {"key": key, "tenant_id": tenant_id, "limit_tokens": limit, "reserved_tokens": 0}
        )
        return cls(key, limit)

    def reserve(self, connection: Connection, tokens: int, *, agent: str) -> None:
        """Hold ``tokens`` or raise ``BudgetExceededError`` without holding anything. Commit the
        connection's transaction right after, so other callers see the reservation."""
        taken = connection.execute(_RESERVE, {"k": self.key, "n": tokens}).rowcount
        if taken:
            return
        reserved = connection.scalar(select(_T.c.reserved_tokens).where(_T.c.key == self.key)) or 0
        raise BudgetExceededError(
            f"The {agent} call needs about {tokens} tokens but only {max(self.limit - reserved, 0)} of this "
            f"paragraph's budget of {self.limit} remain, so it was not sent. Raise the paragraph budget under "
            f"Token budgets on the Operations page (default: BUDGET_PARAGRAPH_TOKENS) or shorten the brief."
        )

    def settle(self, connection: Connection, *, reserved: int, actual: int) -> None:
        """Replace a reservation by what the call really used (both in tokens), in the caller's
        ledger transaction."""
        connection.execute(_SETTLE, {"k": self.key, "delta": actual - reserved})

    def used(self, connection: Connection) -> int:
        return int(connection.scalar(select(_T.c.reserved_tokens).where(_T.c.key == self.key)) or 0)
