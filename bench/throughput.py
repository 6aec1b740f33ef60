"""Drafting throughput on RQ workers: 1, 2 and 4 ``python -m workers`` processes.

    .venv/bin/python bench/throughput.py [--paragraphs 40] [--latency-ms 150]    (or: make bench-workers)

The production shape on one machine: PostgreSQL (a throw-away database ``bench_throughput`` on
127.0.0.1:5432, created and dropped here), Redis database 12 (flushed first) and worker
subprocesses whose ``local`` provider sleeps ``--latency-ms`` per call, so a job waits the way it
would on a remote model. The demo PDFs are read once; every paragraph gets a manuscript of its
own with a copy of their facts, so no two paragraphs cite the same facts and, with the answer
cache emptied before each batch, every Writer, Verifier and Rewriter call of a batch is made.
Seeding runs in this process with no latency.

For each worker count, fresh workers are warmed up with one draft each (the first job of a
process loads the tokenizer and fills the retrieval caches; the cold start is printed apart),
then a batch of ``draft`` jobs is queued at once; the batch ends when every draft's
``verify_draft`` is final. Prints paragraphs per minute, queue wait (started_at - created_at of
each job) P50/P95, total time, how busy the workers and the machine were, and the scaling 2w/1w
and 4w/1w (target: 4w >= 3.5x 1w). Then the queue wait with idle workers: one draft at a time,
each queued after the previous chain ended (target: P95 < 100 ms). Prints figures; asserts
nothing. About 2.5 minutes.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``core`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from psycopg import sql
from redis import Redis
from rq import Worker
from sqlalchemy import Engine, RowMapping, Table, delete, func, insert, select

from core import db, jobs
from core.demo_corpus import DEMO_BRIEFS, demo_pdfs
from core.job_records import FINAL, SUCCEEDED
from core.manuscripts import add_paragraph, create_manuscript
from core.models import Chunk, Document, Fact, Job, LlmCacheEntry, LlmUsageEvent, WorkerRecord, table_of
from core.settings import reset_settings
from core.sources import add_source
from core.tenancy import Identity, bootstrap

ROOT = Path(__file__).resolve().parent.parent
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
"""The PostgreSQL server the bench databases are created on (trust auth)."""
REDIS_SERVER = "redis://127.0.0.1:6379"
QUEUES = ("facts", "generation", "verification")
WORKER_COUNTS = (1, 2, 4)
IDLE_SAMPLES = 15
"""Drafts queued one at a time for the idle-worker queue wait."""
IDLE_GAP_S = 0.3
"""Pause after a chain ends before the next draft is queued (the workers sit idle in it), s."""
POLL_S = 0.25
"""How often the bench looks at the jobs table while a batch runs, s (the figures come from the
table's own timestamps, so a coarse poll costs no accuracy and leaves the CPU to the workers)."""
IDLE_POLL_S = 0.02
"""How often it looks while one chain runs on idle workers, s."""


# Infrastructure ---------------------------------------------------------------------------------


def create_database(name: str) -> str:
    """A fresh, empty PostgreSQL database ``name`` (dropped first if a crashed run left it); its URL."""
    drop_database(name)
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return f"{PG_SERVER}/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def use_environment(*, database_url: str, redis_db: int, data_dir: Path) -> str:
    """Point this process (and the workers it starts) at the bench's database, Redis and data
    directory, with the local provider answering at once; flushes the Redis database. Its URL."""
    redis_url = f"{REDIS_SERVER}/{redis_db}"
    Redis.from_url(redis_url).flushdb()
    os.environ.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "WORKBENCH_DATA_DIR": str(data_dir),
            "WORKBENCH_PROVIDER": "local",
            "WORKBENCH_LOCAL_LATENCY_MS": "0",
        }
    )
    reset_settings()
    return redis_url


class WorkerPool:
    """``python -m workers`` subprocesses taking ``queues`` (in that priority order), stopped with
    SIGTERM (then SIGKILL)."""

    def __init__(
        self,
        count: int,
        *,
        latency_ms: float,
        prefix: str,
        log_dir: Path,
        redis_url: str,
        queues: Sequence[str] = QUEUES,
    ) -> None:
        self.names = [f"{prefix}-{i + 1}" for i in range(count)]
        self.redis_url = redis_url
        self.logs = [log_dir / f"{name}.log" for name in self.names]
        env = {**os.environ, "WORKBENCH_LOCAL_LATENCY_MS": f"{latency_ms:g}"}
        self.processes: list[subprocess.Popen[bytes]] = []
        for name, log_path in zip(self.names, self.logs, strict=True):
            with log_path.open("wb") as log_file:
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "workers", "--queues", *queues, "--name", name],
                        cwd=ROOT,
                        env=env,
                        stdout=log_file,
                        stderr=subprocess.STDOUT,
                    )
                )

    def wait_ready(self, engine: Engine, timeout: float = 60.0) -> float:
        """Seconds until every worker has registered (with RQ or in the workers table)."""

        redis = Redis.from_url(self.redis_url)
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            for process, log_path in zip(self.processes, self.logs, strict=True):
                if process.poll() is not None:
                    raise RuntimeError(
                        f"worker exited with {process.returncode} before it was ready:\n{_tail(log_path)}"
                    )
            seen = {w.name for w in Worker.all(connection=redis)}
            with engine.connect() as connection:
                seen |= set(connection.scalars(select(WorkerRecord.name).where(WorkerRecord.name.in_(self.names))))
            if seen >= set(self.names):
                return time.monotonic() - started
            time.sleep(0.1)
        raise RuntimeError(f"workers not ready after {timeout:g} s:\n{_tail(self.logs[0])}")

    def cpu_seconds(self) -> float:
        """CPU time the worker processes have used so far, s (NaN where there is no /proc)."""
        total = 0.0
        for process in self.processes:
            try:
                fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return math.nan
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        return total

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM (a graceful stop: the current job ends first), then SIGKILL whoever is left."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in self.processes:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU ticks of the whole machine since boot; NaNs where there is no /proc/stat."""
    try:
        ticks = [int(t) for t in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return math.nan, math.nan
    idle = ticks[3] + ticks[4]  # idle + iowait
    return float(sum(ticks) - idle), float(sum(ticks))


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# Data -----------------------------------------------------------------------------------------


def read_demo_sources(engine: Engine, identity: Identity) -> int:
    """A manuscript holding the demo PDFs, read through the real pipeline (parse, chunk, Librarian);
    its id, the template ``seed_paragraphs`` copies."""
    with db.session_scope(engine) as session:
        manuscript = create_manuscript(
            session, tenant_id=identity.tenant_id, title="demo sources", user_id=identity.user_id
        )
        session.commit()
        for filename, data in demo_pdfs():
            add_source(session, identity=identity, manuscript_id=manuscript.id, filename=filename, data=data)
            session.commit()
        return manuscript.id


def seed_paragraphs(engine: Engine, identity: Identity, count: int, *, label: str, template_id: int) -> list[int]:
    """``count`` paragraphs with distinct briefs, each in a manuscript of its own holding a copy of
    the template's documents, chunks and facts.

    A copy is what reading the same PDFs again would store, with new ids, minus the parsing time.
    Its facts are its paragraph's alone, so no Verifier or Rewriter input (a sentence and the
    facts it cites, by id) repeats across paragraphs; the distinct brief does the same for the
    Writer. With the answer cache emptied, every model call of a batch is made.
    """
    documents, chunks, facts = (table_of(model) for model in (Document, Chunk, Fact))
    with engine.connect() as connection:
        template_documents = (
            connection.execute(
                select(documents).where(documents.c.manuscript_id == template_id).order_by(documents.c.id)
            )
            .mappings()
            .all()
        )
        template_chunks = (
            connection.execute(
                select(chunks)
                .where(chunks.c.document_id.in_([d["id"] for d in template_documents]))
                .order_by(chunks.c.id)
            )
            .mappings()
            .all()
        )
        template_facts = (
            connection.execute(select(facts).where(facts.c.manuscript_id == template_id).order_by(facts.c.id))
            .mappings()
            .all()
        )

    def copy(row: RowMapping, **changes: Any) -> dict[str, Any]:
        return {key: value for key, value in row.items() if key != "id"} | changes

    def insert_all(table: Table, rows: list[dict[str, Any]]) -> list[int]:
        result = connection.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
        return list(result.scalars())

    paragraphs = []
    for number in range(count):
        with db.session_scope(engine) as session:
            manuscript = create_manuscript(
                session, tenant_id=identity.tenant_id, title=f"{label} {number + 1}", user_id=identity.user_id
            )
            brief = f"{DEMO_BRIEFS[number % len(DEMO_BRIEFS)]} ({label}, paragraph {number + 1})"
            paragraph = add_paragraph(session, tenant_id=identity.tenant_id, manuscript_id=manuscript.id, brief=brief)
            session.commit()
            paragraphs.append(paragraph.id)
            manuscript_id = manuscript.id
        with engine.begin() as connection:
            new_documents = insert_all(documents, [copy(d, manuscript_id=manuscript_id) for d in template_documents])
            document_of = dict(zip((d["id"] for d in template_documents), new_documents, strict=True))
            new_chunks = insert_all(
                chunks, [copy(c, document_id=document_of[c["document_id"]]) for c in template_chunks]
            )
            chunk_of = dict(zip((c["id"] for c in template_chunks), new_chunks, strict=True))
            insert_all(
                facts,
                [
                    copy(
                        f,
                        manuscript_id=manuscript_id,
                        document_id=document_of[f["document_id"]],
                        chunk_id=chunk_of[f["chunk_id"]],
                    )
                    for f in template_facts
                ],
            )
    return paragraphs


def seed_identity(engine: Engine) -> Identity:
    with db.session_scope(engine) as session:
        identity = bootstrap(session)
        session.commit()
    return identity


def forget_answers(engine: Engine) -> None:
    """Empty the answer cache, so the next batch makes every model call."""
    with engine.begin() as connection:
        connection.execute(delete(LlmCacheEntry))


def enqueue_draft(engine: Engine, identity: Identity, paragraph_id: int, *, tag: str) -> str:
    """Queue a ``draft`` job as the Write page does; its trace id starts with ``tag``."""
    return jobs.enqueue(
        engine,
        tenant_id=identity.tenant_id,
        user_id=identity.user_id,
        kind="draft",
        payload={"paragraph_id": paragraph_id},
        trace_id=f"{tag}-{uuid.uuid4().hex[:16]}",
    )


# Measuring ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRow:
    id: str
    kind: str
    state: str
    trace_id: str
    parent_job_id: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None

    @property
    def wait_s(self) -> float | None:
        return None if self.started_at is None else self.started_at - self.created_at


def job_rows(engine: Engine, tag: str) -> list[JobRow]:
    """Every job whose trace id starts with ``tag`` (times as epoch seconds)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                Job.id,
                Job.kind,
                Job.state,
                Job.trace_id,
                Job.parent_job_id,
                Job.created_at,
                Job.started_at,
                Job.finished_at,
            ).where(Job.trace_id.like(f"{tag}-%"))
        ).all()
    return [
        JobRow(
            r.id,
            r.kind,
            r.state,
            r.trace_id,
            r.parent_job_id,
            db.as_utc(r.created_at).timestamp(),
            db.as_utc(r.started_at).timestamp() if r.started_at else None,
            db.as_utc(r.finished_at).timestamp() if r.finished_at else None,
        )
        for r in rows
    ]


def chains_done(rows: Sequence[JobRow]) -> bool:
    """Every job final, and every successful draft has its ``verify_draft``."""
    if any(r.state not in FINAL for r in rows):
        return False
    parents = {r.parent_job_id for r in rows if r.kind == "verify_draft"}
    return all(r.id in parents for r in rows if r.kind == "draft" and r.state == SUCCEEDED)


def wait_for_chains(
    engine: Engine, tag: str, *, expected_drafts: int, timeout: float, poll_s: float = POLL_S
) -> list[JobRow]:
    """Poll until every draft tagged ``tag`` and its verification are final; the rows at the end."""
    deadline = time.monotonic() + timeout
    while True:
        rows = job_rows(engine, tag)
        drafts = sum(r.kind == "draft" for r in rows)
        if drafts >= expected_drafts and chains_done(rows):
            return rows
        if time.monotonic() > deadline:
            return rows
        time.sleep(poll_s)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the nearest ranks; NaN when there are none."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def cache_hits(engine: Engine, tag: str) -> tuple[int, int]:
    """(model calls, cache hits) of the traces tagged ``tag``."""
    with engine.connect() as connection:
        calls, hits = connection.execute(
            select(func.count(), func.count().filter(LlmUsageEvent.cache_hit.is_(True))).where(
                LlmUsageEvent.trace_id.like(f"{tag}-%")
            )
        ).one()
    return int(calls), int(hits)


@dataclass(frozen=True)
class Batch:
    workers: int
    paragraphs: int
    succeeded: int
    total_s: float
    draft_waits: list[float]
    verify_waits: list[float]
    busy: float
    run_s: float
    """Worker time (started -> finished, both jobs) per paragraph, s."""
    cpu_ms: float
    """CPU time of the worker processes per paragraph, ms (NaN where /proc is missing)."""
    machine_busy: float
    """Share of the machine's CPU in use during the batch, by anything (NaN where /proc is missing)."""
    calls: int
    hits: int

    @property
    def per_minute(self) -> float:
        return self.succeeded / self.total_s * 60 if self.total_s else 0.0

    def line(self) -> str:
        def waits(values: list[float]) -> str:
            return f"{percentile(values, 50) * 1000:.0f} / {percentile(values, 95) * 1000:.0f}"

        cells = (
            str(self.workers),
            f"{self.succeeded}/{self.paragraphs}",
            f"{self.total_s:.1f}",
            f"{self.per_minute:.1f}",
            waits(self.draft_waits),
            waits(self.verify_waits),
            f"{self.busy:.0%}",
            f"{self.run_s:.2f}",
            f"{self.cpu_ms:.0f}",
            f"{self.machine_busy:.0%}",
            f"{self.calls} ({self.hits} cached)",
        )
        return _row(cells)


COLUMNS = (
    ("workers", 7),
    ("paragraphs", 10),
    ("total s", 7),
    ("per min", 7),
    ("draft wait P50/P95 ms", 21),
    ("verify wait P50/P95 ms", 22),
    ("busy", 4),
    ("run s", 5),
    ("CPU ms", 6),
    ("machine", 7),
    ("calls", 0),
)
"""Columns of ``Batch.line``. busy: share of worker time spent in jobs; run s: worker time per
paragraph (both jobs); CPU ms: the workers' CPU per paragraph; machine: the whole machine's CPU
in use during the batch, by anything (other processes included)."""


def _row(cells: Sequence[str]) -> str:
    return "  ".join(cell.rjust(width) for cell, (_, width) in zip(cells, COLUMNS, strict=True))


HEADER = _row([name for name, _ in COLUMNS])


def measure_batch(
    rows: Sequence[JobRow], workers: int, calls_hits: tuple[int, int], *, cpu_s: float, machine_busy: float
) -> Batch:
    drafts = [r for r in rows if r.kind == "draft"]
    verifies = [r for r in rows if r.kind == "verify_draft"]
    start = min(r.created_at for r in rows)
    end = max((r.finished_at or r.created_at) for r in rows)
    service = sum(r.finished_at - r.started_at for r in rows if r.started_at and r.finished_at)
    return Batch(
        workers=workers,
        paragraphs=len(drafts),
        succeeded=sum(r.state == SUCCEEDED for r in verifies),
        total_s=end - start,
        draft_waits=[w for r in drafts if (w := r.wait_s) is not None],
        verify_waits=[w for r in verifies if (w := r.wait_s) is not None],
        busy=service / (workers * (end - start)) if end > start else 0.0,
        run_s=service / len(drafts) if drafts else math.nan,
        cpu_ms=cpu_s * 1000 / len(drafts) if drafts else math.nan,
        machine_busy=machine_busy,
        calls=calls_hits[0],
        hits=calls_hits[1],
    )


def run_batch(
    engine: Engine, identity: Identity, paragraph_ids: Sequence[int], *, pool: WorkerPool, tag: str, timeout: float
) -> Batch:
    forget_answers(engine)
    cpu_before, machine_before = pool.cpu_seconds(), machine_cpu()
    for paragraph_id in paragraph_ids:
        enqueue_draft(engine, identity, paragraph_id, tag=tag)
    rows = wait_for_chains(engine, tag, expected_drafts=len(paragraph_ids), timeout=timeout)
    cpu_after, machine_after = pool.cpu_seconds(), machine_cpu()
    if not chains_done(rows):
        print(f"  !! batch {tag} not finished after {timeout:g} s")
    busy_ticks, all_ticks = (after - before for after, before in zip(machine_after, machine_before, strict=True))
    return measure_batch(
        rows,
        len(pool.processes),
        cache_hits(engine, tag),
        cpu_s=cpu_after - cpu_before,
        machine_busy=busy_ticks / all_ticks if all_ticks else math.nan,
    )


def warm_up(engine: Engine, identity: Identity, paragraph_ids: Sequence[int], *, tag: str) -> tuple[float, int]:
    """One draft per fresh worker (each blocked worker takes one), so the timed batch runs on warm
    processes. Returns the slowest warm-up job's run time, s, and how many workers ran one."""
    forget_answers(engine)
    for paragraph_id in paragraph_ids:
        enqueue_draft(engine, identity, paragraph_id, tag=tag)
    wait_for_chains(engine, tag, expected_drafts=len(paragraph_ids), timeout=120)
    with engine.connect() as connection:
        rows = connection.execute(
            select(Job.worker, Job.started_at, Job.finished_at).where(Job.trace_id.like(f"{tag}-%"))
        ).all()
    slowest = max(((r.finished_at - r.started_at).total_seconds() for r in rows if r.finished_at), default=0.0)
    return slowest, len({r.worker for r in rows})


def idle_waits(engine: Engine, identity: Identity, paragraph_ids: Sequence[int], *, tag: str) -> list[float]:
    """Queue waits of drafts and verifications queued while every worker sits idle, seconds."""
    forget_answers(engine)
    waits: list[float] = []
    for number, paragraph_id in enumerate(paragraph_ids):
        time.sleep(IDLE_GAP_S)
        one = f"{tag}{number}"
        enqueue_draft(engine, identity, paragraph_id, tag=one)
        rows = wait_for_chains(engine, one, expected_drafts=1, timeout=30, poll_s=IDLE_POLL_S)
        waits += [w for r in rows if (w := r.wait_s) is not None]
    return waits


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:7.0f}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paragraphs", type=int, default=40, help="drafts per batch (default 40)")
    parser.add_argument("--latency-ms", type=float, default=150.0, help="simulated model latency per call, ms")
    args = parser.parse_args(argv)

    database = "bench_throughput"
    workdir = Path(tempfile.mkdtemp(prefix="workbench-throughput-"))
    redis_url = use_environment(database_url=create_database(database), redis_db=12, data_dir=workdir)
    engine = db.get_engine()
    pool: WorkerPool | None = None
    try:
        db.migrate(engine)
        identity = seed_identity(engine)
        started = time.perf_counter()
        template_id = read_demo_sources(engine, identity)
        paragraph_ids = seed_paragraphs(engine, identity, args.paragraphs, label="throughput", template_id=template_id)
        warm_ids = seed_paragraphs(engine, identity, max(WORKER_COUNTS), label="warm-up", template_id=template_id)
        print(
            f"seeded {len(paragraph_ids)} + {len(warm_ids)} warm-up paragraphs, each in a manuscript of its own with "
            f"the facts of the 3 demo PDFs, in {time.perf_counter() - started:.1f} s"
        )
        print(
            f"simulated model latency {args.latency_ms:g} ms per call; PostgreSQL database {database}, "
            f"Redis db 12; {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} before the runs"
        )
        print()
        print(HEADER)
        batches: list[Batch] = []
        cold: list[str] = []
        for count in WORKER_COUNTS:
            pool = WorkerPool(
                count, latency_ms=args.latency_ms, prefix=f"bench-{count}w", log_dir=workdir, redis_url=redis_url
            )
            ready = pool.wait_ready(engine)
            slowest, warmed = warm_up(engine, identity, warm_ids[:count], tag=f"warm{count}w")
            cold.append(f"{count}w: ready in {ready:.1f} s, first job {slowest:.2f} s ({warmed}/{count} warmed)")
            batch = run_batch(engine, identity, paragraph_ids, pool=pool, tag=f"tp{count}w", timeout=300)
            batches.append(batch)
            print(batch.line())
            if count != WORKER_COUNTS[-1]:
                pool.stop()
                pool = None
        base = batches[0].per_minute
        print()
        for batch in batches[1:]:
            target = "  (target >= 3.50)" if batch.workers == 4 else ""
            print(f"scaling {batch.workers}w/1w: {batch.per_minute / base:.2f}x{target}")
        print("cold start (not in the figures above): " + "; ".join(cold))
        print(f"load average after the runs: {os.getloadavg()[0]:.1f} (other processes share these cores)")

        waits = idle_waits(engine, identity, paragraph_ids[:IDLE_SAMPLES], tag="idle")
        print(
            f"queue wait, idle workers ({WORKER_COUNTS[-1]}), {len(waits)} jobs queued one at a time: "
            f"P50 {percentile(waits, 50) * 1000:.0f} ms, P95 {percentile(waits, 95) * 1000:.0f} ms, "
            f"max {max(waits) * 1000:.0f} ms (target P95 < 100 ms)"
        )
    finally:
        if pool is not None:
            pool.stop()
        engine.dispose()
        drop_database(database)
        Redis.from_url(redis_url).flushdb()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
