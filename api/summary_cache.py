"""A short-lived cache of the cost summary, computed once per tenant and window at a time.

The summary aggregates a month of usage events in four queries (about half a second on a million
events); monitoring scripts and dashboards ask for the same figures many times a minute. Within
``ttl_s`` every caller of a tenant and window gets the same result, and callers arriving while it is
being computed wait for that one computation instead of starting their own. The response says when
its window ended, so the age of the figures is visible.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Value = TypeVar("Value")


class SingleFlightCache(Generic[Value]):
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[Hashable, tuple[float, Value]] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()

    def _fresh(self, key: Hashable) -> tuple[float, Value] | None:
        entry = self._entries.get(key)
        return entry if entry is not None and entry[0] > time.monotonic() else None

    def get(self, key: Hashable, compute: Callable[[], Value]) -> Value:
        if self.ttl_s <= 0:
            return compute()
        entry = self._fresh(key)
        if entry is not None:
            return entry[1]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            entry = self._fresh(key)  # another caller may have filled it while this one waited
            if entry is not None:
                return entry[1]
            value = compute()
            self._entries[key] = (time.monotonic() + self.ttl_s, value)
            return value
