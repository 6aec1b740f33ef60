"""The per-token rate limit across API processes: with ``REDIS_URL`` set, two real uvicorn processes
draw on one bucket per token; with Redis away, each process keeps its own and the API still answers."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from api.rate_limit import KEY_PREFIX, LocalRateLimiter, RedisRateLimiter
from tests.api_helpers import headers, token, user
from tests.redis_helpers import TEST_REDIS_URL, free_port, require_redis

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]


def get(url: str, request_headers: dict[str, str] | None = None) -> Answer:
    request = urllib.request.Request(url, headers=request_headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, json.load(response))
    except urllib.error.HTTPError as error:
        return Answer(error.code, {k.lower(): v for k, v in error.headers.items()}, json.load(error))


def _forget_buckets() -> None:
    client = require_redis()
    keys = list(client.scan_iter(match=f"{KEY_PREFIX}*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def two_servers(clean_db: Engine) -> Iterator[list[str]]:
    """Two ``uvicorn api.app:app`` processes on the test database, sharing the test Redis."""
    _forget_buckets()
    env = {**os.environ, "REDIS_URL": TEST_REDIS_URL, "WORKBENCH_PROVIDER": "local"}
    servers, bases = [], []
    try:
        for _ in range(2):
            port = free_port()
            servers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "uvicorn", "api.app:app", "--host", "127.0.0.1", "--port", str(port)],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
            bases.append(f"http://127.0.0.1:{port}")
        for server, base in zip(servers, bases, strict=True):
            deadline = time.monotonic() + 60
            while True:
                try:
                    if get(f"{base}/health").status in (200, 503):
                        break
                except OSError:
                    pass  # not listening yet
                assert server.poll() is None, server.stderr.read() if server.stderr else "uvicorn exited"
                assert time.monotonic() < deadline, "uvicorn did not answer within 60 s"
                time.sleep(0.2)
        yield bases
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
        _forget_buckets()


def test_two_api_processes_share_one_rate_per_token(clean_db: Engine, two_servers: list[str]) -> None:
    secret = headers(token(clean_db, user(clean_db, role="researcher"), rate_per_minute=3))
    first, second = two_servers
    answers = [get(f"{base}/api/v1/tools", secret) for base in (first, second, first, second)]
    assert [a.status for a in answers] == [200, 200, 200, 429], "3 a minute, wherever they land"
    assert "3 requests per minute" in answers[-1].body["error"]["message"]
    assert 1 <= int(answers[-1].headers["retry-after"]) <= 20
    other = headers(token(clean_db, user(clean_db, role="ops"), rate_per_minute=3))
    assert get(f"{second}/api/v1/tools", other).status == 200, "a bucket per token"


def test_the_shared_bucket_refills_at_the_rate() -> None:
    require_redis()
    _forget_buckets()
    limiter = RedisRateLimiter(TEST_REDIS_URL)
    try:
        assert [limiter.take(7, 2), limiter.take(7, 2)] == [None, None]
        wait = limiter.take(7, 2)
        assert wait is not None and 29 < wait <= 30, "one request every 30 s at 2 a minute"
        assert limiter.take(8, 2) is None, "another token has its own bucket"
    finally:
        limiter.reset()
    assert limiter.take(7, 2) is None, "reset fills the buckets again"
    limiter.reset()


def test_with_redis_away_each_process_keeps_the_rate_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    fallback = LocalRateLimiter()
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0", fallback)  # nothing listens on port 1
    with caplog.at_level(logging.WARNING, logger="api.rate_limit"):
        taken = [limiter.take(5, 2) for _ in range(3)]
    assert taken[:2] == [None, None] and taken[2] is not None and 0 < taken[2] <= 30
    warnings = [r.getMessage() for r in caplog.records if "Redis does not answer" in r.getMessage()]
    assert len(warnings) == 1, "said once a minute, not on every request"
    assert warnings[0] == "rate limits kept in this process: Redis does not answer (ConnectionError)"
