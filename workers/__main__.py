"""``python -m workers``: one RQ worker for the agent pipeline.

python -m workers [--queues facts generation verification] [--name NAME] [--burst]

Needs ``REDIS_URL`` (and the same ``DATABASE_URL`` and ``WORKBENCH_DATA_DIR`` as the workbench);
exits 2 with a message when Redis is not configured or does not answer, or when the environment
(``WORKBENCH_ENV``, ``core.environments``) refuses to start. In local it migrates the database first,
like the CLI, then runs jobs one at a time with rq's ``SimpleWorker``.

SimpleWorker runs each job in this process (no fork per job). So a SIGKILL, an OOM kill or a
lost machine takes the running job down with the worker: nothing of that run is committed
(``core.job_runner`` commits a job's work and its SUCCEEDED mark together), its heartbeat stops,
and the reaper that every worker runs here (``job_runner.reap``, every
``core.executors.MAINTENANCE_S`` seconds) queues it again, or fails it when it has used its
attempts, once the heartbeat is older than ``JOB_STALE_AFTER_S``.

SIGTERM or Ctrl+C is rq's warm shutdown: the current job finishes, then the worker exits 0 and
its row in the workers table says ``stopped``. A second signal is a cold shutdown: the job is
abandoned mid-run and recovered by the reaper, as after a SIGKILL.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Sequence

from redis import Redis
from redis.exceptions import RedisError
from rq import SimpleWorker
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from core import db, environments, job_runner, worker_records
from core.alerts import AlertSchedule
from core.executors import MAINTENANCE_S, QueueUnavailableError, get_executor
from core.job_kinds import QUEUES
from core.log_context import configure_logging
from core.settings import get_settings
from workers import WORKER_NAME_ENV, tasks

log = logging.getLogger("workers")


class Maintenance(threading.Thread):
    """Every ``MAINTENANCE_S`` seconds: say this worker is alive (busy or idle, with its job), and
    queue again the jobs of workers that died; every ``alert_interval_s``, evaluate the alert rules
    of every tenant (each worker does: evaluations are idempotent and serialised per tenant)."""

    def __init__(self, engine: Engine, name: str, queues: list[str]) -> None:
        super().__init__(name="worker-maintenance", daemon=True)
        self.engine, self.worker, self.queues = engine, name, queues
        self._halt = threading.Event()
        self.alerts = AlertSchedule(engine)

    def run(self) -> None:
        while True:
            self.beat()
            self.reap()
            self.alerts.tick()  # logs its own failures
            if self._halt.wait(MAINTENANCE_S):
                return

    def beat(self, state: str | None = None) -> None:
        current = tasks.current_job_id()
        try:
            worker_records.beat(
                self.engine,
                name=self.worker,
                kind="rq",
                queues=self.queues,
                state=state or ("busy" if current else "idle"),
                current_job_id=None if state == "stopped" else current,
            )
        except Exception:  # the database may be away for a moment; the next beat tries again
            log.warning("worker heartbeat failed", exc_info=True)

    def reap(self) -> None:
        executor = get_executor()
        try:
            # A reaped job is queued again in Redis: with Redis away it would be QUEUED in the
            # jobs table and nowhere else, so leave it RUNNING-and-stale until Redis answers.
            executor.ping()
            job_runner.reap(self.engine, dispatch=executor.submit)
            job_runner.resubmit_lost(self.engine, holds=executor.holds, dispatch=executor.submit)
        except QueueUnavailableError as error:
            log.warning("not reaping stale jobs: %s", error)
        except Exception:  # the maintenance thread must outlive one bad round; the next round retries
            log.warning("reaping stale jobs failed", exc_info=True)

    def stop(self) -> None:
        """Stop, and leave this worker's row saying ``stopped``."""
        self._halt.set()
        if self.is_alive():
            self.join(timeout=MAINTENANCE_S * 2)
        self.beat("stopped")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m workers", description="Run an RQ worker for the workbench.")
    parser.add_argument(
        "--queues",
        nargs="+",
        choices=QUEUES,
        default=list(QUEUES),
        metavar="QUEUE",
        help=f"queues to take jobs from, in priority order (default: {' '.join(QUEUES)})",
    )
    parser.add_argument("--name", help="worker name (default: rq.<host>.<pid>); must be unique among live workers")
    parser.add_argument("--burst", action="store_true", help="exit once the queues are empty")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = get_settings()
    refused = environments.refusal("worker")  # staging, production: development key, old schema, unpinned prompts
    if refused:
        print(refused, file=sys.stderr)
        return 2
    if not settings.redis_url:
        print(
            "REDIS_URL is not set: workers take their jobs from Redis. Set REDIS_URL (e.g. redis://127.0.0.1:6379/0) "
            "here and in the workbench, or leave it unset everywhere to run jobs in-process.",
            file=sys.stderr,
        )
        return 2
    try:
        get_executor().ping()
    except QueueUnavailableError as error:
        print(f"The worker cannot start. {error}", file=sys.stderr)
        return 2
    configure_logging()
    engine = db.get_engine()
    try:
        db.migrate(engine)
    except SQLAlchemyError as error:
        print(
            f"The database does not answer ({type(error).__name__}): check DATABASE_URL and that the server is up.",
            file=sys.stderr,
        )
        return 2

    name = args.name or worker_records.default_name("rq")
    os.environ[WORKER_NAME_ENV] = name
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=2)
    worker = SimpleWorker(args.queues, name=name, connection=redis)
    if redis.exists(worker.key) and not redis.hexists(worker.key, "death"):
        # rq keeps a worker's name until its key expires, also after a SIGKILL.
        print(
            f"A live worker is already called {name!r} (or one that was killed, whose name rq keeps for another "
            f"{redis.ttl(worker.key)} s): give this one another --name.",
            file=sys.stderr,
        )
        return 2
    maintenance = Maintenance(engine, name, list(args.queues))
    maintenance.start()
    try:
        worker.work(burst=args.burst)
    except RedisError as error:
        print(f"The worker stopped: Redis failed ({error}).", file=sys.stderr)
        return 2
    finally:
        maintenance.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
