"""Where queued jobs run: RQ workers when ``REDIS_URL`` is set, else threads in this process.

Both take a job id and a queue name and leave every decision to ``core.job_runner.execute``,
so a job behaves the same on either; pages and the job API never ask which one is in use.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import lru_cache
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import Engine, update

from core import job_runner, worker_records
from core.alerts import AlertSchedule
from core.db import get_engine
from core.errors import JobError
from core.job_kinds import QUEUES
from core.models import Job, table_of
from core.settings import get_settings

log = logging.getLogger(__name__)
_J = table_of(Job)
MAINTENANCE_S = worker_records.BEAT_S
"""How often an executor beats for itself and reaps jobs whose worker died, seconds."""


class QueueUnavailableError(JobError):
    """Redis does not answer: nothing new can be queued (stored work stays readable)."""


class Executor(Protocol):
    name: str

    def ping(self) -> None:
        """Raise ``QueueUnavailableError`` when jobs cannot be queued right now."""
        ...

    def submit(self, job_id: str, queue: str) -> None: ...

    def withdraw(self, job_id: str) -> None:
        """Take a queued job out of its queue if it is still there (best effort; the runner also
        skips any job that is no longer QUEUED)."""
        ...

    def holds(self, job_id: str) -> bool:
        """Whether a queued job is still waiting in this executor's queue."""
        ...


class InProcessExecutor:
    """Jobs on a small thread pool of this process: the embedded default, no Redis needed. Its
    maintenance thread also evaluates the alert rules of every tenant (``core.alerts``)."""

    name = "in-process"

    def __init__(self, engine: Engine, threads: int) -> None:
        self.engine = engine
        self.worker = worker_records.default_name("in-process")
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="job")
        self._busy: dict[str, str] = {}
        self._futures: list[Future[None]] = []
        self._waiting: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.alerts = AlertSchedule(engine)
        threading.Thread(target=self._maintain, name="job-maintenance", daemon=True).start()

    def ping(self) -> None:
        return None

    def submit(self, job_id: str, queue: str) -> None:
        with self._lock:
            self._waiting.add(job_id)
        future = self._pool.submit(self._run, job_id)
        with self._lock:
            self._futures.append(future)

    def withdraw(self, job_id: str) -> None:
        return None  # the runner skips a job that is no longer QUEUED

    def holds(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._waiting

    def _run(self, job_id: str) -> None:
        with self._lock:
            self._waiting.discard(job_id)
            self._busy[threading.current_thread().name] = job_id
        self._beat()
        try:
            job_runner.execute(self.engine, job_id, worker=self.worker, dispatch=self.submit)
        except Exception:
            # execute records every failure of the work itself; what reaches here happened before
            # the job was claimed (the database away, say), so the job is still QUEUED and
            # resubmit_lost hands it over again. The pool thread must live on for other jobs.
            log.exception("in-process job %s could not be started; it stays queued", job_id)
        finally:
            with self._lock:
                self._busy.pop(threading.current_thread().name, None)
            self._beat()

    def _beat(self) -> None:
        with self._lock:
            current = next(iter(self._busy.values()), None)
        try:
            worker_records.beat(
                self.engine,
                name=self.worker,
                kind="in-process",
                queues=list(QUEUES),
                state="busy" if current else "idle",
                current_job_id=current,
            )
        except Exception:  # the database away for a moment: the next beat (5 s) tries again
            log.warning("worker heartbeat failed", exc_info=True)

    def _maintain(self) -> None:
        while not self._stop.wait(MAINTENANCE_S):
            self._beat()
            try:
                job_runner.reap(self.engine, dispatch=self.submit)
                job_runner.resubmit_lost(self.engine, holds=self.holds, dispatch=self.submit)
            except Exception:  # nothing is lost: stale and lost jobs are found again on the next round
                log.warning("reaping stale jobs failed", exc_info=True)
            self.alerts.tick()  # every alert_interval_s, not every round; logs its own failures

    def close(self) -> None:
        """Stop beating and reaping; jobs already submitted (and the jobs they queue) still run."""
        self._stop.set()

    def drain(self, timeout: float = 60.0) -> None:
        """Wait until every job submitted so far, and every job those queued, has ended."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = [f for f in self._futures if not f.done()]
                self._futures = pending
            if not pending:
                return
            wait(pending, timeout=max(deadline - time.monotonic(), 0.01))
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} in-process job(s) still running after {timeout:g} s")


class RqExecutor:
    """Jobs on RQ queues, run by ``python -m workers`` processes on any machine."""

    name = "rq"

    def __init__(self, engine: Engine, redis_url: str) -> None:
        from redis import Redis

        self.engine = engine
        self.redis_url = redis_url
        # Short timeouts: when Redis is down the page must say so at once, not hang.
        self.redis = Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)

    def ping(self) -> None:
        from redis.exceptions import RedisError

        try:
            self.redis.ping()
        except RedisError as error:
            raise QueueUnavailableError(
                f"The job queue (Redis at {_safe(self.redis_url)}) is not answering ({type(error).__name__}), so "
                "nothing new can be queued right now. Everything stored stays readable; try again when ops have "
                "Redis back."
            ) from None

    def submit(self, job_id: str, queue: str) -> None:
        from redis.exceptions import RedisError
        from rq import Queue

        # rq 2.x accepts only letters, digits, "_" and "-" in a job id.
        rq_id = f"{job_id}_{uuid.uuid4().hex[:8]}"
        try:
            Queue(queue, connection=self.redis).enqueue(
                "workers.tasks.run_job",
                job_id,
                job_id=rq_id,
                job_timeout=get_settings().job_timeout_s,
                result_ttl=3600,
                failure_ttl=86400,
            )
        except RedisError:
            self.ping()  # raises the clear error
            raise
        with self.engine.begin() as connection:
            connection.execute(update(_J).where(_J.c.id == job_id).values(rq_job_id=rq_id))

    def holds(self, job_id: str) -> bool:
        return _rq_holds(self, job_id)

    def withdraw(self, job_id: str) -> None:
        from redis.exceptions import RedisError
        from rq.exceptions import InvalidJobOperation, InvalidJobOperationError, NoSuchJobError
        from rq.job import Job as RqJob

        with self.engine.connect() as connection:
            rq_id = connection.scalar(_J.select().with_only_columns(_J.c.rq_job_id).where(_J.c.id == job_id))
        if not rq_id:
            return
        try:
            RqJob.fetch(rq_id, connection=self.redis).cancel()
        except (NoSuchJobError, InvalidJobOperation, InvalidJobOperationError, RedisError) as error:
            # The job row is CANCELLED already, so a worker that still gets it skips it unrun.
            log.info("rq job %s not withdrawn from Redis (%s); the runner will skip it", rq_id, type(error).__name__)


def _rq_holds(executor: RqExecutor, job_id: str) -> bool:
    from rq.exceptions import NoSuchJobError
    from rq.job import Job as RqJob
    from rq.job import JobStatus

    with executor.engine.connect() as connection:
        rq_id = connection.scalar(_J.select().with_only_columns(_J.c.rq_job_id).where(_J.c.id == job_id))
    if not rq_id:
        return False
    try:
        rq_job = RqJob.fetch(rq_id, connection=executor.redis)
    except NoSuchJobError:  # Redis lost it; a RedisError propagates (the caller must not resubmit blind)
        return False
    rq_status = rq_job.get_status()
    if rq_status == JobStatus.QUEUED:
        return rq_job.get_position() is not None  # its hash alone does not get it run
    return rq_status in (JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED)


def _safe(url: str) -> str:
    """A Redis URL without its password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


_in_process: list[InProcessExecutor] = []
"""Every in-process executor built, so ``reset_executors`` can stop their maintenance threads."""


@lru_cache(maxsize=8)
def _executor(database_url: str, redis_url: str | None, threads: int) -> Executor:
    engine = get_engine(database_url)
    if redis_url:
        return RqExecutor(engine, redis_url)
    executor = InProcessExecutor(engine, threads)
    _in_process.append(executor)
    return executor


def reset_executors() -> None:
    """Forget the executors built so far and stop the maintenance of the in-process ones.

    For tests that change ``REDIS_URL`` or the job settings between cases: clearing the cache
    alone would leave each old in-process executor reaping (with whatever settings are current)
    into a pool nobody drains, racing the executor or the workers the next case uses.
    """
    _executor.cache_clear()
    while _in_process:
        _in_process.pop().close()


def get_executor() -> Executor:
    """The executor for the current settings (one per process and configuration)."""
    settings = get_settings()
    return _executor(settings.resolved_database_url, settings.redis_url, settings.job_workers)
