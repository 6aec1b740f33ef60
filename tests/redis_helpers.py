"""Real Redis and real worker processes for the job tests.

``require_redis`` fails (never skips) when the test Redis does not answer: CI must say so loudly.
``RedisServer`` is a private, throw-away ``redis-server`` a test may stop under the workbench.
``WorkerPool`` starts ``python -m workers`` processes, keeps their output in files (printed when
the test ends, so a failure shows what the workers said) and kills whatever is still running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest
from redis import Redis
from redis.exceptions import RedisError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
"""The Redis database the worker tests own and flush (db 9, away from anything real)."""


def require_redis(url: str = TEST_REDIS_URL) -> Redis:
    """A client for ``url``; fails the test with what to do when Redis does not answer."""
    client = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except RedisError as error:
        pytest.fail(
            f"Redis at {url} does not answer ({error}). The worker tests need a real Redis: start one with "
            "`redis-server --daemonize yes` or point TEST_REDIS_URL at one.",
            pytrace=False,
        )
    return client


def claim_test_database(client: Redis) -> None:
    """Flush the test database, unless live workers of some other run are listening on it (they
    would take this run's jobs and look for them in their own database): then fail, saying so."""
    db = str(client.connection_pool.connection_kwargs.get("db", 0))
    others = sorted(c["name"] for c in client.client_list() if c.get("db") == db and c.get("name"))
    if others:  # rq workers name their connections after themselves
        pytest.fail(
            f"Redis database {db} is in use by live workers ({', '.join(others)}): another test run, or workers "
            "left over from one. Stop them, or point TEST_REDIS_URL at another database.",
            pytrace=False,
        )
    client.flushdb()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    condition: Callable[[], object], *, timeout: float, what: str | Callable[[], str], every: float = 0.05
) -> None:
    """Poll ``condition()`` until it is true; after ``timeout`` s fail saying ``what`` was awaited
    (a callable is asked then, so the message can show the state things ended in)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what() if callable(what) else what}")
        time.sleep(every)


class RedisServer:
    """A ``redis-server`` of the test's own on a free port, without persistence."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._log = (log_dir / f"redis-{self.port}.log").open("w")
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        client = Redis(port=self.port, socket_connect_timeout=1)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except RedisError:
                return False

        wait_until(answers, timeout=10, what=f"redis-server on port {self.port}")
        client.close()

    def shutdown(self) -> None:
        """Stop it the way ops would (SHUTDOWN NOSAVE), and wait for the process to end."""
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], capture_output=True, timeout=10)
        self.process.wait(timeout=10)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()


class WorkerProcess:
    """One ``python -m workers`` process."""

    def __init__(self, name: str, queues: tuple[str, ...], env: dict[str, str], log_path: Path, burst: bool) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[str] = log_path.open("w")
        command = [sys.executable, "-m", "workers", "--name", name, "--queues", *queues]
        if burst:
            command.append("--burst")
        self.process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, no cleanup, the running job dies with the process."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM: rq's warm shutdown."""
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")  # the process writes to the file itself

    def close(self) -> None:
        try:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=10)
        finally:
            self._log.close()


class WorkerPool:
    """Starts workers with the test's environment; ``close`` kills any still running."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[WorkerProcess] = []

    def start(self, name: str, *queues: str, burst: bool = False, env: dict[str, str] | None = None) -> WorkerProcess:
        """A worker on ``queues`` (default: all three) with this process's environment plus ``env``."""
        worker = WorkerProcess(
            name,
            queues or ("facts", "generation", "verification"),
            {**os.environ, **(env or {})},
            self.log_dir / f"worker-{name}.log",
            burst,
        )
        self.started.append(worker)
        return worker

    def close(self) -> None:
        """Kill every worker still running (all of them, whatever fails), then show what each said."""
        for worker in self.started:
            try:
                worker.close()
            except Exception as error:  # keep killing the others
                print(f"worker {worker.name} could not be stopped: {error!r}")
        for worker in self.started:
            print(f"----- output of worker {worker.name} (exit {worker.process.returncode}) -----")
            print(worker.output())
