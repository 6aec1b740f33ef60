"""The per-token rate limit: a token bucket per API token.

With ``REDIS_URL`` set (the workbench runs RQ workers) the buckets live in Redis, so every API
process on every machine draws on one rate per token; without it (the embedded default: one
process) they live in this process. If Redis stops answering, the limit falls back to this
process's buckets and says so in the log once a minute: the API keeps answering, and each process
then allows the rate, as before Redis was there.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from redis import Redis
from redis.exceptions import RedisError

from core.settings import get_settings

log = logging.getLogger(__name__)

KEY_PREFIX = "opusblocks:api-rate:"
"""Redis keys of the buckets, one per token id; each expires once its bucket would be full again."""


class Bucket(Protocol):
    def take(self, token_id: int, per_minute: int) -> float | None: ...

    def reset(self) -> None: ...


@dataclass
class _Bucket:
    tokens: float
    updated: float = field(default_factory=time.monotonic)


class LocalRateLimiter:
    """The buckets in this process."""

    def __init__(self) -> None:
        self._buckets: dict[int, _Bucket] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()

    def take(self, token_id: int, per_minute: int) -> float | None:
        """None when the request may go ahead, else the seconds to wait."""
        rate = per_minute / 60.0
        with self._lock:
            now = time.monotonic()
            bucket = self._buckets.setdefault(token_id, _Bucket(float(per_minute), now))
            bucket.tokens = min(float(per_minute), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return None
            return (1 - bucket.tokens) / rate


# The same bucket as LocalRateLimiter.take, read and written in one atomic step on the server. Lua
# numbers come back as integers, so the wait travels as a string. The clock is Redis's own, so API
# machines whose clocks differ still share one bucket correctly.
_TAKE = """
pcall(redis.replicate_commands)  -- Redis 5 and 6 need it to write after TIME; 7 does it anyway
local per_minute = tonumber(ARGV[1])
local rate = per_minute / 60.0
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1]) or per_minute
local updated = tonumber(state[2]) or now
tokens = math.min(per_minute, tokens + math.max(0, now - updated) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('EXPIRE', KEYS[1], 61)  -- left alone for a minute, a bucket is full: the same as no key
return tostring(wait)
"""


class RedisRateLimiter:
    """The buckets in Redis, shared by every API process; this process's buckets while Redis is away."""

    def __init__(self, url: str, fallback: LocalRateLimiter | None = None) -> None:
        self._client = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        self._take = self._client.register_script(_TAKE)
        self.fallback = fallback or LocalRateLimiter()
        self._warned_at = float("-inf")

    def take(self, token_id: int, per_minute: int) -> float | None:
        try:
            wait = float(self._take(keys=[f"{KEY_PREFIX}{token_id}"], args=[per_minute]))
        except RedisError as error:
            now = time.monotonic()
            if now - self._warned_at >= 60:
                self._warned_at = now
                log.warning("rate limits kept in this process: Redis does not answer (%s)", type(error).__name__)
            return self.fallback.take(token_id, per_minute)
        return wait if wait > 0 else None

    def reset(self) -> None:
        self.fallback.reset()
        try:
            keys = list(self._client.scan_iter(match=f"{KEY_PREFIX}*"))
            if keys:
                self._client.delete(*keys)
        except RedisError:  # nothing to reset where nothing can be reached
            return


class RateLimiter:
    """The limiter the API uses: Redis's buckets when ``REDIS_URL`` is set, else this process's.

    Chosen on each request from the settings (cached), so a test or a process that changes
    ``REDIS_URL`` gets the matching buckets."""

    def __init__(self) -> None:
        self._local = LocalRateLimiter()
        self._shared: dict[str, RedisRateLimiter] = {}
        self._lock = threading.Lock()

    def _bucket(self) -> Bucket:
        url = get_settings().redis_url
        if not url:
            return self._local
        with self._lock:
            if url not in self._shared:
                self._shared[url] = RedisRateLimiter(url)
            return self._shared[url]

    def take(self, token_id: int, per_minute: int) -> float | None:
        """None when the request may go ahead, else the seconds to wait."""
        return self._bucket().take(token_id, per_minute)

    def reset(self) -> None:
        """Full buckets again (tests)."""
        self._local.reset()
        with self._lock:
            shared = list(self._shared.values())
        for limiter in shared:
            limiter.reset()


limiter = RateLimiter()
