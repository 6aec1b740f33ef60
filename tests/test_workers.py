"""Jobs on real RQ workers (``python -m workers`` processes on a real, flushed Redis) and on the
in-process executor: the same lifecycle on both, cancellation, a worker killed mid-job, Redis
going away under the workbench.

The Writer is made slow where a test must catch a job mid-run, by a provider plugin
(``tests/slow_provider.py``) the workers import through ``WORKBENCH_PROVIDER_PLUGINS``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq.job import Job as RqJob
from sqlalchemy import Engine, func, select, update

from core import executors, job_records, job_runner, jobs, providers, worker_records
from core.db import as_utc, session_scope
from core.demo_corpus import DEMO_BRIEFS, demo_pdfs
from core.errors import ProviderError
from core.executors import MAINTENANCE_S, InProcessExecutor, QueueUnavailableError, get_executor
from core.manuscripts import add_paragraph, create_manuscript
from core.models import Job, JobTransition, LlmUsageEvent, ParagraphVersion, utcnow
from core.settings import reset_settings
from core.storage import store_blob
from core.tenancy import Identity
from tests.redis_helpers import (
    TEST_REDIS_URL,
    RedisServer,
    WorkerPool,
    claim_test_database,
    require_redis,
    wait_until,
)
from tests.test_controls import draft_job, seeded_paragraph
from workers import tasks
from workers.__main__ import Maintenance
from workers.__main__ import main as worker_main

STALE_AFTER_S = 3.0
JOB_ENV = {
    "JOB_HEARTBEAT_S": "0.5",
    "JOB_STALE_AFTER_S": str(STALE_AFTER_S),
    "WORKBENCH_JOB_THREADS": "1",  # the in-process executor runs one job at a time, like one SimpleWorker
    "WORKBENCH_PROVIDER": "slow",
    "WORKBENCH_PROVIDER_PLUGINS": "tests.slow_provider",
    "SLOW_PROVIDER_S": "0",
}
"""The job settings of every test here, in this process and (inherited) in its workers."""


def _fresh() -> None:
    reset_settings()
    executors.reset_executors()


@pytest.fixture
def job_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in JOB_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("REDIS_URL", raising=False)
    _fresh()
    yield
    monkeypatch.undo()
    _fresh()


@pytest.fixture
def redis_db() -> Iterator[Redis]:
    """The test Redis database, flushed before and after; fails loudly when Redis is not there."""
    client = require_redis()
    claim_test_database(client)
    yield client
    client.flushdb()
    client.close()


@dataclass
class Backend:
    """Where the jobs of one test run: RQ workers (``rq``) or this process (``in-process``)."""

    mode: str
    engine: Engine
    identity: Identity
    pool: WorkerPool | None

    def start_worker(self, name: str, *queues: str, **env: str) -> str:
        """Start a worker (RQ only); returns the name the jobs it runs will record."""
        if self.pool is None:
            executor = get_executor()
            assert isinstance(executor, InProcessExecutor)
            return executor.worker
        self.pool.start(name, *queues, env=env)
        return name

    def enqueue(self, kind: str, payload: dict[str, Any], trace_id: str) -> str:
        return jobs.enqueue(
            self.engine,
            tenant_id=self.identity.tenant_id,
            user_id=self.identity.user_id,
            kind=kind,
            payload=payload,
            trace_id=trace_id,
        )

    def status(self, job_id: str) -> jobs.JobView:
        return jobs.status(self.engine, tenant_id=self.identity.tenant_id, job_id=job_id)

    def wait_for(self, job_id: str, *states: str, timeout: float = 30.0) -> jobs.JobView:
        """Poll the job until it is in one of ``states`` (default: any final state)."""
        wanted = set(states) or set(jobs.FINAL)
        wait_until(
            lambda: self.status(job_id).state in wanted,
            timeout=timeout,
            what=lambda: (
                f"job {job_id} to be {'/'.join(sorted(wanted))}; its transitions: {transitions(self.engine, job_id)}"
            ),
        )
        return self.status(job_id)


@pytest.fixture(params=["rq", "in-process"])
def backend(
    request: pytest.FixtureRequest,
    job_settings: None,
    clean_db: Engine,
    identity: Identity,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Backend]:
    pool = None
    if request.param == "rq":
        request.getfixturevalue("redis_db")
        monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)
        _fresh()
        pool = WorkerPool(tmp_path)
    try:
        yield Backend(request.param, clean_db, identity, pool)
    finally:
        if pool is not None:
            pool.close()
        else:
            executor = get_executor()
            assert isinstance(executor, InProcessExecutor)
            executor.drain()


def transitions(engine: Engine, job_id: str) -> list[tuple[str | None, str, str]]:
    with session_scope(engine) as s:
        rows = s.scalars(select(JobTransition).where(JobTransition.job_id == job_id).order_by(JobTransition.id))
        return [(t.from_state, t.to_state, t.reason) for t in rows]


def versions(engine: Engine, paragraph_id: int) -> list[tuple[str, str | None]]:
    """(status, trace id) of each version of the paragraph, oldest first."""
    with session_scope(engine) as s:
        rows = s.execute(
            select(ParagraphVersion.status, ParagraphVersion.trace_id)
            .where(ParagraphVersion.paragraph_id == paragraph_id)
            .order_by(ParagraphVersion.id)
        )
        return [(status, trace) for status, trace in rows]


def usage(engine: Engine, trace_id: str) -> list[tuple[str, str | None, str]]:
    """(trace id, job id, agent) of the usage events of a trace or of its jobs."""
    with session_scope(engine) as s:
        job_ids = select(Job.id).where(Job.trace_id == trace_id)
        rows = s.execute(
            select(LlmUsageEvent.trace_id, LlmUsageEvent.job_id, LlmUsageEvent.agent).where(
                (LlmUsageEvent.trace_id == trace_id) | LlmUsageEvent.job_id.in_(job_ids)
            )
        )
        return [(trace, job, agent) for trace, job, agent in rows]


def fresh_paragraph(engine: Engine, identity: Identity) -> tuple[int, int]:
    with session_scope(engine) as s:
        manuscript = create_manuscript(s, tenant_id=identity.tenant_id, title="Workers", user_id=identity.user_id)
        paragraph = add_paragraph(s, tenant_id=identity.tenant_id, manuscript_id=manuscript.id, brief=DEMO_BRIEFS[0])
        return manuscript.id, paragraph.id


# -- the same lifecycle on RQ workers and on the in-process executor ------------------------------------


def test_a_paragraph_is_drafted_through_the_three_queues(backend: Backend) -> None:
    engine, tenant = backend.engine, backend.identity.tenant_id
    runs_on = {q: backend.start_worker(f"only-{q}", q) for q in ("facts", "generation", "verification")}
    manuscript_id, paragraph_id = fresh_paragraph(engine, backend.identity)
    filename, data = demo_pdfs()[0]
    sha256, _, _ = store_blob(data)

    ingest = backend.enqueue("ingest", {"manuscript_id": manuscript_id, "filename": filename, "sha256": sha256}, "t-up")
    ingested = backend.wait_for(ingest)
    assert (ingested.state, ingested.queue) == (jobs.SUCCEEDED, "facts"), ingested.error
    assert ingested.result and ingested.result["facts_added"] > 0

    draft = backend.enqueue("draft", {"paragraph_id": paragraph_id}, "t-draft")
    drafted = backend.wait_for(draft)
    assert (drafted.state, drafted.queue) == (jobs.SUCCEEDED, "generation"), drafted.error
    assert drafted.result
    (verify,) = drafted.result["next_job_ids"]
    assert backend.wait_for(verify).state == jobs.SUCCEEDED

    chain = jobs.trace_jobs(engine, tenant_id=tenant, trace_id="t-draft")
    assert [(j.id, j.kind, j.queue, j.state) for j in chain] == [
        (draft, "draft", "generation", jobs.SUCCEEDED),
        (verify, "verify_draft", "verification", jobs.SUCCEEDED),
    ]
    assert chain[1].parent_job_id == draft
    # Every usage event of the draft and of the verification it queued carries the user's trace id.
    events = usage(engine, "t-draft")
    assert {trace for trace, _, _ in events} == {"t-draft"}
    assert {job for _, job, _ in events} == {draft, verify}
    assert {"writer", "verifier"} <= {agent for _, _, agent in events}
    assert versions(engine, paragraph_id) == [("verified", "t-draft")]

    # Each job ran on a worker of its own queue, and said so in its transitions.
    for job_id, queue in ((ingest, "facts"), (draft, "generation"), (verify, "verification")):
        steps = transitions(engine, job_id)
        assert [(a, b) for a, b, _ in steps] == [(None, "QUEUED"), ("QUEUED", "RUNNING"), ("RUNNING", "SUCCEEDED")]
        assert steps[1][2] == f"started on {runs_on[queue]} (attempt 1 of 2)"
    if backend.mode == "rq":
        # Each worker keeps its row: kind, queues, state, a heartbeat from its last maintenance round.
        seen = {w.name: w for w in worker_records.list_workers(engine)}
        for queue, name in runs_on.items():
            row = seen[name]
            assert (row.kind, row.queues) == ("rq", [queue]) and row.state in ("idle", "busy")
            assert (utcnow() - row.heartbeat_at).total_seconds() < MAINTENANCE_S + 2


def test_a_queued_job_is_cancelled_before_it_runs_and_a_running_one_saves_nothing(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, tenant = backend.engine, backend.identity.tenant_id
    paragraph_id = seeded_paragraph(engine, backend.identity)
    monkeypatch.setenv("SLOW_PROVIDER_S", "2")  # the Writer takes 2 s: time to cancel mid-run
    backend.start_worker("one-at-a-time", "generation", "verification")

    running = backend.enqueue("draft", {"paragraph_id": paragraph_id}, "t-running")
    backend.wait_for(running, jobs.RUNNING)
    queued = backend.enqueue("draft", {"paragraph_id": paragraph_id}, "t-queued")
    assert backend.status(queued).state == jobs.QUEUED  # the only runner is busy

    cancelled = jobs.cancel(engine, tenant_id=tenant, job_id=queued)
    assert cancelled.state == jobs.CANCELLED and cancelled.error == "Cancelled before it started."
    asked = jobs.cancel(engine, tenant_id=tenant, job_id=running)
    assert asked.state == jobs.RUNNING and asked.cancel_requested  # it stops at its next step
    stopped = backend.wait_for(running)
    assert stopped.state == jobs.CANCELLED
    assert stopped.error == "Cancelled at your request; nothing of this run was saved."
    assert versions(engine, paragraph_id) == []
    assert [j.kind for j in jobs.trace_jobs(engine, tenant_id=tenant, trace_id="t-running")] == ["draft"]

    # The runner is free again; a job queued after the cancelled one runs, the cancelled one never does.
    monkeypatch.setenv("SLOW_PROVIDER_S", "0")
    after = backend.enqueue("draft", {"paragraph_id": paragraph_id}, "t-after")
    (verify,) = (backend.wait_for(after).result or {})["next_job_ids"]
    assert backend.wait_for(verify).state == jobs.SUCCEEDED
    assert [(a, b) for a, b, _ in transitions(engine, queued)] == [(None, "QUEUED"), ("QUEUED", "CANCELLED")]
    assert backend.status(queued).attempt == 0 and usage(engine, "t-queued") == []
    assert versions(engine, paragraph_id) == [("verified", "t-after")]
    if backend.mode == "rq":  # it was also taken out of its Redis queue
        with session_scope(engine) as s:
            rq_id = s.scalar(select(Job.rq_job_id).where(Job.id == queued))
        assert RqJob.fetch(str(rq_id), connection=require_redis()).get_status() == "canceled"


# -- a worker that dies mid-job --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["rq"], indirect=True)
def test_a_job_whose_worker_is_killed_is_queued_again_and_completes_exactly_once(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = backend.engine
    paragraph_id = seeded_paragraph(engine, backend.identity)
    for n in (1, 2):  # both stay in the Writer until they are killed
        backend.start_worker(f"doomed-{n}", "generation", SLOW_PROVIDER_S="60")
    again = backend.enqueue("draft", {"paragraph_id": paragraph_id}, "t-again")  # 2 attempts
    monkeypatch.setenv("JOB_MAX_ATTEMPTS", "1")
    reset_settings()
    lost = backend.enqueue("draft", {"paragraph_id": paragraph_id}, "t-lost")  # 1 attempt
    doomed_on = {job_id: backend.wait_for(job_id, jobs.RUNNING).worker for job_id in (again, lost)}
    assert sorted(map(str, doomed_on.values())) == ["doomed-1", "doomed-2"]

    # The rescuer comes up while both run (their queue is empty, so it takes nothing yet).
    backend.start_worker("rescuer", "generation", "verification")
    wait_until(
        lambda: "rescuer" in {w.name for w in worker_records.list_workers(engine)}, timeout=20, what="the rescuer"
    )
    assert backend.pool is not None
    for worker in backend.pool.started[:2]:
        worker.kill()
    killed_at = utcnow()
    # rq keeps a dead worker's name taken until its key expires; a namesake says so and exits.
    namesake = backend.pool.start(str(doomed_on[again]), "generation")

    def no_half_written_version() -> bool:
        # At every moment: no version, or exactly one, verified, whose verification job has finished.
        seen = versions(engine, paragraph_id)
        assert len(seen) <= 1 and all(status == "verified" for status, _ in seen), seen
        if seen:
            chain = jobs.trace_jobs(engine, tenant_id=backend.identity.tenant_id, trace_id="t-again")
            assert [j.state for j in chain] == [jobs.SUCCEEDED, jobs.SUCCEEDED], chain
        return bool(seen)

    wait_until(no_half_written_version, timeout=40, what="the requeued draft's verified version", every=0.1)
    assert backend.wait_for(lost).state == jobs.FAILED

    steps = transitions(engine, again)
    assert [(a, b) for a, b, _ in steps] == [
        (None, "QUEUED"),
        ("QUEUED", "RUNNING"),
        ("RUNNING", "QUEUED"),
        ("QUEUED", "RUNNING"),
        ("RUNNING", "SUCCEEDED"),
    ]
    assert steps[1][2] == f"started on {doomed_on[again]} (attempt 1 of 2)"
    assert f"worker {doomed_on[again]} stopped responding" in steps[2][2]
    assert steps[3][2] == "started on rescuer (attempt 2 of 2)"
    lost_steps = transitions(engine, lost)
    assert [(a, b) for a, b, _ in lost_steps] == [(None, "QUEUED"), ("QUEUED", "RUNNING"), ("RUNNING", "FAILED")]
    assert "stopped responding" in lost_steps[2][2] and "attempt 1 of 1" in lost_steps[2][2]

    # Reaped within the bound: stale after JOB_STALE_AFTER_S, noticed at the next maintenance round.
    with session_scope(engine) as s:
        reaped_at = s.scalars(
            select(JobTransition.at).where(
                JobTransition.job_id.in_([again, lost]),
                JobTransition.from_state == "RUNNING",
                JobTransition.reason.contains("stopped responding"),
            )
        ).all()
    assert len(reaped_at) == 2
    took = max((as_utc(at) - killed_at).total_seconds() for at in reaped_at)
    assert took <= STALE_AFTER_S + MAINTENANCE_S + 1.5, f"reaped {took:.1f} s after the kill"

    assert namesake.wait(timeout=20) == 2
    assert f"A live worker is already called {doomed_on[again]!r}" in namesake.output()

    # Completed exactly once, and nothing is left RUNNING.
    assert versions(engine, paragraph_id) == [("verified", "t-again")]
    assert jobs.trace_jobs(engine, tenant_id=backend.identity.tenant_id, trace_id="t-lost")[0].error
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Job).where(Job.state == jobs.RUNNING)) == 0


@pytest.mark.parametrize("backend", ["in-process"], indirect=True)
def test_in_process_a_job_whose_runner_died_is_queued_again_or_failed(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The in-process executor cannot be SIGKILLed apart from the test; a dead runner is what it
    # leaves behind: a RUNNING job whose heartbeat stopped.
    engine, tenant = backend.engine, backend.identity.tenant_id
    paragraph_id = seeded_paragraph(engine, backend.identity)
    silent_since = utcnow() - timedelta(seconds=STALE_AFTER_S + 1)

    def died_running(trace_id: str, max_attempts: int) -> str:
        monkeypatch.setenv("JOB_MAX_ATTEMPTS", str(max_attempts))
        reset_settings()
        job_id = jobs.submit(
            engine,
            tenant_id=tenant,
            user_id=backend.identity.user_id,
            kind="draft",
            payload={"paragraph_id": paragraph_id},
            trace_id=trace_id,
        )
        assert job_records.move_now(
            engine,
            job_id,
            tenant_id=tenant,
            from_state=jobs.QUEUED,
            to_state=jobs.RUNNING,
            expect_attempt=0,
            reason=f"started on in-process.gone (attempt 1 of {max_attempts})",
            attempt=1,
            worker="in-process.gone",
            started_at=silent_since,
            heartbeat_at=silent_since,
        )
        return job_id

    again, lost = died_running("t-again", 2), died_running("t-lost", 1)
    executor = get_executor()
    assert isinstance(executor, InProcessExecutor)
    assert sorted(job_runner.reap(engine, dispatch=executor.submit)) == sorted([again, lost])
    executor.drain()

    assert backend.status(again).state == jobs.SUCCEEDED
    steps = transitions(engine, again)
    assert [(a, b) for a, b, _ in steps][2:] == [("RUNNING", "QUEUED"), ("QUEUED", "RUNNING"), ("RUNNING", "SUCCEEDED")]
    assert "worker in-process.gone stopped responding" in steps[2][2]
    assert steps[3][2] == f"started on {executor.worker} (attempt 2 of 2)"
    assert backend.status(lost).state == jobs.FAILED
    assert "attempt 1 of 1" in (backend.status(lost).error or "")
    assert versions(engine, paragraph_id) == [("verified", "t-again")]


# -- stopping workers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["rq"], indirect=True)
def test_sigterm_lets_the_running_job_finish_and_a_burst_worker_empties_its_queue(backend: Backend) -> None:
    engine = backend.engine
    paragraph_id = seeded_paragraph(engine, backend.identity)
    assert backend.pool is not None
    backend.start_worker("polite", "generation", SLOW_PROVIDER_S="1.5")
    draft = backend.enqueue("draft", {"paragraph_id": paragraph_id}, "t-term")
    backend.wait_for(draft, jobs.RUNNING)

    polite = backend.pool.started[0]
    polite.terminate()  # warm shutdown: the job in hand finishes first
    assert polite.wait(timeout=20) == 0
    drafted = backend.status(draft)
    assert drafted.state == jobs.SUCCEEDED and drafted.worker == "polite"
    row = {w.name: w for w in worker_records.list_workers(engine)}["polite"]
    assert row.state == "stopped" and row.current_job_id is None and not row.alive

    # Its verification waits on a queue nobody listened to; a burst worker runs it and exits.
    (verify,) = (drafted.result or {})["next_job_ids"]
    assert backend.status(verify).state == jobs.QUEUED
    burst = backend.pool.start("burst", "verification", burst=True)
    assert burst.wait(timeout=30) == 0
    finished = backend.status(verify)
    assert finished.state == jobs.SUCCEEDED and finished.worker == "burst"
    assert versions(engine, paragraph_id) == [("verified", "t-term")]


def test_a_worker_row_says_busy_with_its_job_idle_and_finally_stopped(
    job_settings: None, clean_db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    maintenance = Maintenance(clean_db, "rq.unit", ["facts"])

    def row() -> tuple[str, str | None]:
        view = {w.name: w for w in worker_records.list_workers(clean_db)}["rq.unit"]
        return view.state, view.current_job_id

    monkeypatch.setattr(tasks, "_current_job_id", "job-1")  # what run_job records while it runs
    maintenance.beat()
    assert row() == ("busy", "job-1")
    monkeypatch.setattr(tasks, "_current_job_id", None)
    maintenance.beat()
    assert row() == ("idle", None)
    maintenance.stop()
    assert row() == ("stopped", None)


def test_the_worker_refuses_to_start_without_redis(
    job_settings: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert worker_main([]) == 2
    assert "REDIS_URL is not set" in capsys.readouterr().err
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens on port 1
    _fresh()
    assert worker_main(["--queues", "facts"]) == 2
    assert "The worker cannot start. The job queue (Redis at redis://127.0.0.1:1/0) is not answering" in (
        capsys.readouterr().err
    )


# -- Redis going away ------------------------------------------------------------------------------------


def test_when_redis_stops_enqueue_fails_fast_and_stored_work_stays_readable(
    job_settings: None, clean_db: Engine, identity: Identity, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    paragraph_id = seeded_paragraph(clean_db, identity)
    assert draft_job(clean_db, identity, paragraph_id, trace_id="before").state == jobs.SUCCEEDED
    server = RedisServer(tmp_path)
    try:
        monkeypatch.setenv("REDIS_URL", server.url)
        _fresh()
        tenant = identity.tenant_id

        def enqueue(trace_id: str) -> str:
            return jobs.enqueue(
                clean_db,
                tenant_id=tenant,
                user_id=identity.user_id,
                kind="draft",
                payload={"paragraph_id": paragraph_id},
                trace_id=trace_id,
            )

        waiting = enqueue("while-up")  # no worker: it waits in Redis
        assert jobs.status(clean_db, tenant_id=tenant, job_id=waiting).state == jobs.QUEUED
        server.shutdown()

        with session_scope(clean_db) as s:
            count_before = s.scalar(select(func.count()).select_from(Job))
        started = time.monotonic()
        with pytest.raises(QueueUnavailableError) as refused:
            enqueue("while-down")
        took = time.monotonic() - started
        assert took < 5, f"enqueue took {took:.1f} s to give up"
        assert f"The job queue (Redis at {server.url}) is not answering" in str(refused.value)
        assert "Everything stored stays readable" in str(refused.value)
        with session_scope(clean_db) as s:
            assert s.scalar(select(func.count()).select_from(Job)) == count_before  # nothing recorded

        # What is stored is still there to read (and a queued job can still be cancelled).
        assert versions(clean_db, paragraph_id) == [("verified", "before")]
        with session_scope(clean_db) as s:
            assert jobs.recent_jobs(s, tenant_id=tenant)[0].id == waiting
        assert {q.queue: q.waiting for q in jobs.queue_stats(clean_db)}["generation"] == 1
        assert jobs.cancel(clean_db, tenant_id=tenant, job_id=waiting).state == jobs.CANCELLED
    finally:
        server.close()


# -- providers as plugins --------------------------------------------------------------------------------


def test_a_provider_plugin_named_in_the_environment_is_imported_on_first_use(
    job_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert type(providers.get_provider("slow")).__name__ == "SlowProvider"
    assert "slow" in providers.available()
    monkeypatch.setenv("WORKBENCH_PROVIDER_PLUGINS", "tests.slow_provider, no_such_plugin_module")
    reset_settings()
    with pytest.raises(ProviderError, match="'no_such_plugin_module' named in WORKBENCH_PROVIDER_PLUGINS"):
        providers.get_provider("gemini")


def test_a_queued_job_its_queue_lost_is_handed_over_again_and_runs_once(backend: Backend) -> None:
    engine = backend.engine
    paragraph_id = seeded_paragraph(engine, backend.identity)
    if backend.pool is not None:
        job_id = backend.enqueue("draft", {"paragraph_id": paragraph_id}, "t-lost-in-redis")
        require_redis().flushdb()  # Redis restarted without its data: the job row says QUEUED, no queue holds it
        assert not get_executor().holds(job_id)
    else:
        # The web process restarted: the job row says QUEUED, but no thread pool holds it.
        job_id = jobs.submit(
            engine,
            tenant_id=backend.identity.tenant_id,
            user_id=backend.identity.user_id,
            kind="draft",
            payload={"paragraph_id": paragraph_id},
            trace_id="t-lost-in-process",
        )
    with engine.begin() as connection:  # it has waited longer than a hand-off can take
        connection.execute(
            update(JobTransition)
            .where(JobTransition.job_id == job_id)
            .values(at=utcnow() - timedelta(seconds=STALE_AFTER_S + 1))
        )
    backend.start_worker("sweeper", "generation", "verification")
    if backend.pool is None:
        executor = get_executor()
        assert isinstance(executor, InProcessExecutor)
        job_runner.resubmit_lost(engine, holds=executor.holds, dispatch=executor.submit)
    view = backend.wait_for(job_id, timeout=30)
    assert view.state == jobs.SUCCEEDED and view.attempt == 1
    assert ("QUEUED", "QUEUED") in [(f, t) for f, t, _ in transitions(engine, job_id)]
    next_id = (view.result or {})["next_job_ids"][0]
    assert backend.wait_for(next_id).state == jobs.SUCCEEDED
    assert [status for status, _ in versions(engine, paragraph_id)] == ["verified"]
