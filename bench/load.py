"""20 researchers drafting at once on RQ workers: every job ends, none is lost.

    .venv/bin/python bench/load.py [--workers 4] [--users 20] [--paragraphs 15] [--latency-ms 50]
                                   [--timeout 180]                            (or: make bench-workers)

The seed's expectation, on the production shape: PostgreSQL (a throw-away database
``bench_load`` on 127.0.0.1:5432, created and dropped here), Redis database 13 (flushed first) and
``--workers`` ``python -m workers`` subprocesses whose ``local`` provider sleeps ``--latency-ms``
per call. Each user is a thread of this process with paragraphs of its own (each in a manuscript
of its own with a copy of the demo PDFs' facts, so no model call is answered from the cache); it
queues a ``draft`` for each of them the way the Write page does, pausing 0.2-0.8 s between two
(think time), without waiting for the answers. About 1.5 minutes.

At the end every job must be final (SUCCEEDED, FAILED or CANCELLED) within ``--timeout``
seconds, every queued draft must be in the jobs table, and every successful draft must have its
``verify_draft`` (and that one its saved paragraph version). Prints the totals, the count per
kind and state, paragraphs per minute, queue wait P50/P95/P99 and the end-to-end time of a
paragraph (draft queued -> version saved) P50/P95. Exit code 1 when a job is lost or not final
in time, 0 otherwise; no timing decides the exit code.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``core`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis import Redis
from rq import Queue
from rq.registry import FailedJobRegistry
from sqlalchemy import Engine, select

from bench.throughput import (
    QUEUES,
    JobRow,
    WorkerPool,
    cache_hits,
    chains_done,
    create_database,
    drop_database,
    enqueue_draft,
    forget_answers,
    job_rows,
    percentile,
    read_demo_sources,
    seed_identity,
    seed_paragraphs,
    use_environment,
    warm_up,
)
from core import db
from core.job_records import FINAL, SUCCEEDED
from core.models import Job, ParagraphVersion
from core.tenancy import Identity

DATABASE = "bench_load"
REDIS_DB = 13
TAG = "load"
THINK_S = (0.2, 0.8)
"""A user's pause between two drafts, uniform in this range, s."""
POLL_S = 0.5
"""How often the bench looks at the jobs table while the workers drain the queues, s."""


@dataclass
class User:
    """One researcher: a thread that queues a draft for each of its paragraphs."""

    number: int
    paragraph_ids: list[int]
    submitted: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def run(self, engine: Engine, identity: Identity, start: threading.Event) -> None:
        think = random.Random(self.number)  # the same pauses on every run
        start.wait()
        for paragraph_id in self.paragraph_ids:
            time.sleep(think.uniform(*THINK_S))
            try:
                self.submitted.append(enqueue_draft(engine, identity, paragraph_id, tag=f"{TAG}-u{self.number:02d}"))
            except Exception as error:  # the page would show this to the user; here it is a refusal
                self.refused.append(f"paragraph {paragraph_id}: {type(error).__name__}: {error}")


def drain(engine: Engine, *, expected_drafts: int, timeout: float) -> tuple[list[JobRow], bool]:
    """Wait until every chain tagged ``TAG`` is done; (rows, done in time)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = job_rows(engine, TAG)
        if sum(r.kind == "draft" for r in rows) >= expected_drafts and chains_done(rows):
            return rows, True
        if time.monotonic() > deadline:
            return rows, False
        time.sleep(POLL_S)


def saved_versions(engine: Engine, version_ids: Sequence[int]) -> int:
    """How many of ``version_ids`` are stored paragraph versions."""
    if not version_ids:
        return 0
    with engine.connect() as connection:
        return len(connection.scalars(select(ParagraphVersion.id).where(ParagraphVersion.id.in_(version_ids))).all())


def verify_results(engine: Engine) -> dict[str, tuple[int, str]]:
    """(``version_id``, its status) of each successful ``verify_draft`` (from the jobs' results), by job id."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(Job.id, Job.result).where(
                Job.trace_id.like(f"{TAG}-%"), Job.kind == "verify_draft", Job.state == SUCCEEDED
            )
        ).all()
    return {r.id: (int((r.result or {}).get("version_id") or 0), str((r.result or {}).get("status"))) for r in rows}


def report(engine: Engine, users: Sequence[User], rows: Sequence[JobRow], in_time: bool, *, redis_url: str) -> int:
    """Print the figures; the exit code (1 when a job is lost or not final)."""
    submitted = {job_id for user in users for job_id in user.submitted}
    refused = [line for user in users for line in user.refused]
    by_id = {r.id: r for r in rows}
    drafts = [r for r in rows if r.kind == "draft"]
    verifies = [r for r in rows if r.kind == "verify_draft"]
    children: Counter[str] = Counter(r.parent_job_id for r in verifies if r.parent_job_id)
    missing = sorted(submitted - by_id.keys())
    not_final = [r for r in rows if r.state not in FINAL]
    orphans = [r for r in drafts if r.state == SUCCEEDED and children[r.id] == 0]
    doubled = [job_id for job_id, n in children.items() if n > 1]
    results = verify_results(engine)
    unsaved = len(results) - saved_versions(engine, [v for v, _ in results.values() if v])

    print()
    print(
        f"jobs created {len(rows)}, final {len(rows) - len(not_final)}; drafts queued by users {len(submitted)}, "
        f"refused {len(refused)}"
    )
    states = Counter((r.kind, r.state) for r in rows)
    for kind in ("draft", "verify_draft"):
        counts = ", ".join(f"{state} {n}" for (k, state), n in sorted(states.items()) if k == kind)
        print(f"  {kind:12s} {counts}")
    statuses = Counter(status for _, status in results.values())
    print("  versions saved: " + (", ".join(f"{status} {n}" for status, n in sorted(statuses.items())) or "none"))
    calls, hits = cache_hits(engine, TAG)
    print(f"  model calls {calls} ({hits} answered from the cache)")

    done = [r for r in verifies if r.state == SUCCEEDED and r.finished_at]
    if rows and done:
        span = max(r.finished_at or 0.0 for r in done) - min(r.created_at for r in drafts)
        print(f"paragraphs per minute: {len(done) / span * 60:.1f} ({len(done)} paragraphs in {span:.1f} s)")
    waits = [w for r in rows if (w := r.wait_s) is not None]
    print(
        f"queue wait (started - created, {len(waits)} jobs): P50 {percentile(waits, 50):.2f} s, "
        f"P95 {percentile(waits, 95):.2f} s, P99 {percentile(waits, 99):.2f} s"
    )
    draft_of = {r.id: r for r in drafts}
    end_to_end = [
        v.finished_at - draft_of[v.parent_job_id].created_at
        for v in done
        if v.finished_at and v.parent_job_id in draft_of
    ]
    print(
        f"end to end per paragraph (draft queued -> version saved): P50 {percentile(end_to_end, 50):.2f} s, "
        f"P95 {percentile(end_to_end, 95):.2f} s"
    )
    leftovers = _rq_leftovers(redis_url)
    print(f"RQ: {leftovers}")

    problems = []
    if not in_time:
        problems.append(f"{len(not_final)} job(s) not final within the timeout")
    if missing:
        problems.append(f"{len(missing)} queued draft(s) missing from the jobs table: {', '.join(missing[:5])}")
    if orphans:
        problems.append(f"{len(orphans)} successful draft(s) without their verify_draft")
    if doubled:
        problems.append(f"{len(doubled)} draft(s) with more than one verify_draft")
    if unsaved:
        problems.append(f"{unsaved} successful verify_draft(s) whose paragraph version is missing")
    if refused:
        problems.append(f"{len(refused)} draft(s) refused at enqueue, first: {refused[0]}")
    if problems:
        print("LOST OR UNFINISHED: " + "; ".join(problems))
        return 1
    print("OK: every job is final and none was lost")
    return 0


def _rq_leftovers(redis_url: str) -> str:
    """What RQ still holds: queued jobs and its own failed registry (run_job itself crashing)."""

    redis = Redis.from_url(redis_url)
    parts = []
    for name in ("facts", "generation", "verification"):
        queue = Queue(name, connection=redis)
        parts.append(f"{name} queued {queue.count}, failed {FailedJobRegistry(queue=queue).count}")
    return "; ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=4, help="worker processes (default 4)")
    parser.add_argument("--users", type=int, default=20, help="concurrent users (default 20)")
    parser.add_argument("--paragraphs", type=int, default=15, help="drafts per user (default 15)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="simulated model latency per call, ms")
    parser.add_argument(
        "--queues",
        nargs="+",
        default=list(QUEUES),
        metavar="QUEUE",
        help=f"the workers' queues in priority order (default: {' '.join(QUEUES)})",
    )
    parser.add_argument(
        "--timeout", type=float, default=180.0, help="seconds the jobs get to end after the last submit"
    )
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="workbench-load-"))
    redis_url = use_environment(database_url=create_database(DATABASE), redis_db=REDIS_DB, data_dir=workdir)
    engine = db.get_engine()
    pool: WorkerPool | None = None
    try:
        db.migrate(engine)
        identity = seed_identity(engine)
        started = time.perf_counter()
        total = args.users * args.paragraphs
        template_id = read_demo_sources(engine, identity)
        paragraph_ids = seed_paragraphs(engine, identity, total, label="load", template_id=template_id)
        warm_ids = seed_paragraphs(engine, identity, args.workers, label="warm-up", template_id=template_id)
        print(
            f"seeded {total} paragraphs ({args.users} users x {args.paragraphs}), each in its own manuscript, "
            f"in {time.perf_counter() - started:.1f} s"
        )
        pool = WorkerPool(
            args.workers,
            latency_ms=args.latency_ms,
            prefix="load",
            log_dir=workdir,
            redis_url=redis_url,
            queues=args.queues,
        )
        pool.wait_ready(engine)
        warm_up(engine, identity, warm_ids, tag="warm")
        forget_answers(engine)
        print(
            f"{args.workers} workers on {' > '.join(args.queues)}, simulated model latency {args.latency_ms:g} ms "
            f"per call, think time "
            f"{THINK_S[0]:g}-{THINK_S[1]:g} s; {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}"
        )

        users = [User(n + 1, paragraph_ids[n * args.paragraphs : (n + 1) * args.paragraphs]) for n in range(args.users)]
        start = threading.Event()
        threads = [
            threading.Thread(target=u.run, args=(engine, identity, start), name=f"user-{u.number}") for u in users
        ]
        for thread in threads:
            thread.start()
        began = time.perf_counter()
        start.set()
        for thread in threads:
            thread.join()
        print(f"all users submitted in {time.perf_counter() - began:.1f} s")
        submitted = sum(len(u.submitted) for u in users)
        rows, in_time = drain(engine, expected_drafts=submitted, timeout=args.timeout)
        print(f"queues drained {time.perf_counter() - began:.1f} s after the first submit")
        code = report(engine, users, rows, in_time, redis_url=redis_url)
    finally:
        if pool is not None:
            pool.stop()
        engine.dispose()
        drop_database(DATABASE)
        Redis.from_url(redis_url).flushdb()
    if code == 0:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"worker logs kept in {workdir}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
