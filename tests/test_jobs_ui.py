"""The Write and Operations pages on the job API: every action queues a job and returns at once;
a live panel follows it (queue place, stage, Cancel, Retry) and the page shows what it made.

With REDIS_URL unset the in-process executor runs jobs on threads of this process, so a test waits
for them (``settle``) before it runs the page again, as the panel's next tick would. A job meant to
stay queued is recorded with ``jobs.submit`` and never handed to an executor.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from streamlit.testing.v1 import AppTest

from core import authz, controls, db, executors, job_records, job_runner, jobs, ui, worker_records
from core.manuscripts import add_paragraph, create_manuscript, list_versions
from core.models import Job, utcnow
from core.pipeline import new_trace_id
from core.settings import reset_settings
from core.sources import add_source
from core.storage import blob_path
from core.tenancy import Identity, bootstrap
from core.ui_queries import ordinal
from tests.test_pages import button, page_text, settle
from tests.ui_helpers import BRIEF, PDF_NAME, MakeApp, paper_pdf, role_user, seed_drafted

CLOSED_PORT_REDIS = "redis://127.0.0.1:1/0"
"""Nothing listens on port 1: every connection is refused at once."""


@dataclass(frozen=True)
class Undrafted:
    identity: Identity
    manuscript_id: int
    paragraph_id: int


def seed_undrafted(engine: Engine, *, with_source: bool = True) -> Undrafted:
    """A manuscript (with the demo PDF ingested, unless told otherwise) and one paragraph not drafted yet."""
    with db.session_scope(engine) as s:
        ident = bootstrap(s)
        manuscript = create_manuscript(s, tenant_id=ident.tenant_id, title="Jobs", user_id=ident.user_id)
    if with_source:
        with db.session_scope(engine) as s:
            add_source(s, identity=ident, manuscript_id=manuscript.id, filename=PDF_NAME, data=paper_pdf())
    with db.session_scope(engine) as s:
        paragraph = add_paragraph(s, tenant_id=ident.tenant_id, manuscript_id=manuscript.id, brief=BRIEF)
    return Undrafted(ident, manuscript.id, paragraph.id)


def queued_job(engine: Engine, ident: Identity, kind: str, payload: dict[str, Any], *, mine: bool = True) -> str:
    """A job recorded as QUEUED that no executor will ever take (it stays where it is); ``mine``:
    started by the page's user (else by nobody in particular, e.g. another workspace's script)."""
    return jobs.submit(
        engine,
        tenant_id=ident.tenant_id,
        user_id=ident.user_id if mine else None,
        kind=kind,
        payload=payload,
        trace_id=new_trace_id(),
    )


def job_states(engine: Engine, kind: str) -> list[str]:
    with db.session_scope(engine) as s:
        return list(s.scalars(select(Job.state).where(Job.kind == kind).order_by(Job.created_at)))


def followed(at: AppTest, paragraph_id: int) -> list[str]:
    """The job ids the Write page follows for a paragraph (its session state)."""
    key = f"write_jobs_{paragraph_id}"
    return list(at.session_state[key]) if key in at.session_state else []


# Drafting ---------------------------------------------------------------------------------------


def test_draft_queues_a_job_and_the_new_version_shows_when_it_ends(make_app: MakeApp, clean_db: Engine) -> None:
    seeded = seed_undrafted(clean_db)
    at = make_app("pages/write.py")
    assert "Version 1" not in page_text(at)

    button(at, "Draft").click().run()
    assert not at.exception, at.exception
    with db.session_scope(clean_db) as s:
        job_id = s.scalars(select(Job.id).where(Job.kind == "draft")).one()
    # The page follows the id (nothing else) under a prefixed key, until the job has ended.
    assert followed(at, seeded.paragraph_id) in ([job_id], [])

    settle(at)
    assert not at.exception, at.exception
    text = page_text(at)
    assert "Version 1" in text and ("Supported" in text or "Needs review" in text)
    assert followed(at, seeded.paragraph_id) == [], "a finished action is no longer followed"
    assert not at.progress and "Drafting" not in text, "the panel is gone"
    # The draft queued its verification in the same trace; both ended well.
    trace = jobs.trace_jobs(
        clean_db,
        tenant_id=seeded.identity.tenant_id,
        trace_id=jobs.status(clean_db, tenant_id=seeded.identity.tenant_id, job_id=job_id).trace_id,
    )
    assert [(v.kind, v.state) for v in trace] == [("draft", "SUCCEEDED"), ("verify_draft", "SUCCEEDED")]
    assert trace[0].result and trace[0].result["next_job_ids"] == [trace[1].id]


def test_a_queued_job_shows_its_place_and_the_buttons_wait_for_it(make_app: MakeApp, clean_db: Engine) -> None:
    seeded = seed_undrafted(clean_db)
    queued_job(clean_db, seeded.identity, "reverify", {"paragraph_id": 0, "version_id": 0}, mine=False)
    queued_job(clean_db, seeded.identity, "draft", {"paragraph_id": 0}, mine=False)  # ahead in generation
    mine = queued_job(clean_db, seeded.identity, "draft", {"paragraph_id": seeded.paragraph_id})
    at = make_app("pages/write.py", role="researcher")  # whose jobs they are
    # Opened afresh (a reload), the page finds the user's queued action again.
    assert mine in followed(at, seeded.paragraph_id)
    captions = [c.value for c in at.caption]
    assert ":material/hourglass_top: **Drafting** · queued" in captions
    assert "2nd in the generation queue" in captions
    assert button(at, "Draft").disabled, "one action at a time per paragraph"
    assert "still running" in (button(at, "Draft").proto.help or "")


def test_a_running_job_shows_its_stage_and_progress(make_app: MakeApp, clean_db: Engine) -> None:
    seeded = seed_undrafted(clean_db)
    job_id = queued_job(clean_db, seeded.identity, "draft", {"paragraph_id": seeded.paragraph_id})
    now = utcnow()
    assert job_records.move_now(
        clean_db,
        job_id,
        tenant_id=seeded.identity.tenant_id,
        from_state=jobs.QUEUED,
        to_state=jobs.RUNNING,
        reason="started on test-worker",
        attempt=1,
        worker="rq.test-host.42",
        started_at=now,
        heartbeat_at=now,
        stage="Writing sentence 2 of 4",
        progress=0.4,
    )
    at = make_app("pages/write.py", role="researcher")  # whose jobs they are
    [bar] = at.progress
    assert bar.value == 40 and bar.text == f"**Drafting** · {ui.md_escape('Writing sentence 2 of 4')}"
    assert any(c.value.startswith("Attempt 1 of ") and "rq\\.test\\-host\\.42" in c.value for c in at.caption)

    # Cancel asks the worker to stop at its next step; the panel says so.
    button(at, "Cancel").click().run()
    assert not at.exception, at.exception
    assert jobs.status(clean_db, tenant_id=seeded.identity.tenant_id, job_id=job_id).cancel_requested
    assert any("stopping at its next step" in c.value for c in at.caption)
    assert button(at, "Cancel").disabled


def test_a_draft_shows_the_verification_it_queued(make_app: MakeApp, clean_db: Engine) -> None:
    seeded = seed_undrafted(clean_db)
    draft = queued_job(clean_db, seeded.identity, "draft", {"paragraph_id": seeded.paragraph_id})
    # Run the draft here and hold back the verification it queues (no executor gets it).
    assert job_runner.execute(clean_db, draft, worker="test", dispatch=lambda _id, _queue: None) == jobs.SUCCEEDED
    at = make_app("pages/write.py", role="researcher")  # whose jobs they are
    captions = [c.value for c in at.caption]
    assert ":material/check: Drafting: done" in captions
    assert ":material/hourglass_top: **Verifying the draft** · queued" in captions
    assert "1st in the verification queue" in captions


def test_cancel_from_the_page_cancels_a_queued_job(make_app: MakeApp, clean_db: Engine) -> None:
    seeded = seed_undrafted(clean_db)
    job_id = queued_job(clean_db, seeded.identity, "draft", {"paragraph_id": seeded.paragraph_id})
    at = make_app("pages/write.py", role="researcher")  # whose jobs they are
    button(at, "Cancel").click().run()
    assert not at.exception, at.exception
    view = jobs.status(clean_db, tenant_id=seeded.identity.tenant_id, job_id=job_id)
    assert view.state == jobs.CANCELLED
    stopped = [w.value for w in at.warning if "development key" not in w.value]  # not the key banner
    assert stopped == ["Drafting stopped: Cancelled before it started\\."]
    assert not button(at, "Retry").disabled
    button(at, "Dismiss").click().run()
    assert followed(at, seeded.paragraph_id) == [] and "Retry" not in [b.label for b in at.button]
    assert not button(at, "Draft").disabled


def test_a_failed_job_shows_its_error_and_retry_queues_a_new_one(make_app: MakeApp, clean_db: Engine) -> None:
    seeded = seed_undrafted(clean_db, with_source=False)
    at = make_app("pages/write.py")
    settle(button(at, "Draft").click().run())
    assert not at.exception, at.exception
    [failed] = followed(at, seeded.paragraph_id)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("Drafting stopped:") and "no facts yet" in errors[0], errors

    # Retry is off while generation is frozen, like every button that starts model work.
    ops = authz.cli_identity(seeded.identity.tenant_id)
    controls.set_kill_switch(clean_db, engaged=True, reason="checking", actor=ops)
    assert at.run() and button(at, "Retry").disabled
    controls.set_kill_switch(clean_db, engaged=False, reason="", actor=ops)
    at.run()

    # Fix the cause (a source to cite), then Retry: a new job in a new trace, which succeeds.
    with db.session_scope(clean_db) as s:
        add_source(s, identity=seeded.identity, manuscript_id=seeded.manuscript_id, filename=PDF_NAME, data=paper_pdf())
    button(at, "Retry").click().run()
    assert not at.exception, at.exception
    with db.session_scope(clean_db) as s:
        retried = s.scalars(select(Job.id).where(Job.kind == "draft", Job.id != failed)).one()
    assert followed(at, seeded.paragraph_id) in ([retried], []), "the new job takes the old one's place"
    first = jobs.status(clean_db, tenant_id=seeded.identity.tenant_id, job_id=failed)
    again = jobs.status(clean_db, tenant_id=seeded.identity.tenant_id, job_id=retried)
    assert again.kind == "draft" and again.trace_id != first.trace_id
    settle(at)
    assert "Version 1" in page_text(at) and not at.error
    assert job_states(clean_db, "draft") == ["FAILED", "SUCCEEDED"]


def test_edit_and_reverify_run_as_jobs(make_app: MakeApp, clean_db: Engine) -> None:
    seeded = seed_drafted(clean_db)
    at = make_app("pages/write.py")
    settle(button(at, "Re-verify").click().run())
    button(at, "Edit").click().run()
    with db.session_scope(clean_db) as s:
        latest = list_versions(s, tenant_id=seeded.identity.tenant_id, paragraph_id=seeded.paragraph_id)[0].id
    at.button(key=f"FormSubmitter:write_edit_form_{seeded.paragraph_id}_{latest}-Save and verify").click()
    settle(at.run())
    assert not at.exception, at.exception
    assert job_states(clean_db, "reverify") == ["SUCCEEDED"] and job_states(clean_db, "edit") == ["SUCCEEDED"]
    assert "Version 3" in page_text(at) and "edited" in page_text(at)
    assert "write_editing_" + str(seeded.paragraph_id) not in at.session_state, "the form closed when it was saved"


# Uploads ----------------------------------------------------------------------------------------


def test_each_uploaded_file_is_its_own_job_with_its_own_row(make_app: MakeApp, clean_db: Engine) -> None:
    with db.session_scope(clean_db) as s:
        ident = bootstrap(s)
        manuscript = create_manuscript(s, tenant_id=ident.tenant_id, title="Uploads", user_id=ident.user_id)
    at = make_app("pages/write.py")
    at.file_uploader[0].set_value(
        [("a.pdf", paper_pdf(), "application/pdf"), ("broken.pdf", b"not a pdf", "application/pdf")]
    ).run()
    assert not at.exception, at.exception
    assert len(job_states(clean_db, "ingest")) == 2
    settle(at)
    assert [e.value for e in at.error] == [next(e.value for e in at.error if e.value.startswith("broken\\.pdf"))]
    assert at.error[0].value.startswith("broken\\.pdf was not added:")
    assert any("a\\.pdf" in s.value and "facts extracted" in s.value for s in at.success)
    assert "Documents · 1" in page_text(at)
    assert len(at.session_state[f"write_uploads_{manuscript.id}"]) == 1, "only the failed one is still shown"


# The queue is down ------------------------------------------------------------------------------


@pytest.fixture
def redis_down(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """REDIS_URL names a closed port for this test; the executors are rebuilt on each side of it."""
    monkeypatch.setenv("REDIS_URL", CLOSED_PORT_REDIS)
    reset_settings()
    executors.reset_executors()
    yield
    os.environ.pop("REDIS_URL", None)
    reset_settings()
    executors.reset_executors()


def test_with_redis_down_draft_says_so_at_once_and_the_page_still_reads(
    clean_db: Engine, redis_down: None, make_app: MakeApp
) -> None:
    seeded = seed_drafted(clean_db)
    at = make_app()  # Write is the default page, and only the default page keeps the sidebar in AppTest
    assert "Jobs: RQ at redis\\://127\\.0\\.0\\.1\\:1 \\(NOT answering\\)" in [c.value for c in at.sidebar.caption]

    started = time.monotonic()
    button(at, "Draft again").click().run()
    elapsed = time.monotonic() - started
    assert not at.exception, at.exception
    assert elapsed < 10, f"the refusal took {elapsed:.1f} s"
    [error] = [e.value for e in at.error]
    assert "is not answering" in error and "nothing new can be queued" in error
    assert "Version 1" in page_text(at), "stored versions still show"
    assert followed(at, seeded.paragraph_id) == [] and job_states(clean_db, "draft") == []

    fresh = paper_pdf() + b"\n%fresh"
    at.file_uploader[0].set_value(
        [("fresh.pdf", fresh, "application/pdf"), ("other.pdf", b"%PDF-1.4 other", "application/pdf")]
    ).run()
    assert not at.exception, at.exception
    refused = [e.value for e in at.error]
    assert len(refused) == 1 and refused[0].startswith(ui.md_escape("fresh.pdf, other.pdf were not queued:"))
    assert "not answering" in refused[0], "one message for the batch: the queue is down for every file"
    with db.session_scope(clean_db) as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0, "nothing was recorded"
    assert not blob_path(hashlib.sha256(fresh).hexdigest()).exists(), "the upload was not kept"
    assert "Version 1" in page_text(at)


# Operations -------------------------------------------------------------------------------------


def test_operations_shows_queues_workers_and_jobs_with_transitions(make_app: MakeApp, clean_db: Engine) -> None:
    seeded = seed_undrafted(clean_db, with_source=False)
    admin = role_user(clean_db, "admin")  # the page's user (Operations is not a researcher's page)
    waiting = queued_job(clean_db, admin, "draft", {"paragraph_id": seeded.paragraph_id})
    worker_records.beat(
        clean_db, name="rq.gpu-box.7", kind="rq", queues=["generation"], state="busy", current_job_id=waiting
    )
    at = make_app("pages/write.py")
    settle(button(at, "Cancel").click().run())  # cancel the queued one, so it has a history
    at.switch_page("pages/operations.py").run()
    assert not at.exception, at.exception
    assert {"Queues", "Workers", "Recent jobs"} <= {h.value for h in at.subheader}
    assert not any("comes with issue 4" in i.value for i in at.info)

    def table(*columns: str) -> Any:
        return next(d.value for d in at.dataframe if set(columns) <= set(d.value.columns))

    queues = table("Queue", "Waiting", "Running", "Oldest waiting (s)")
    assert set(queues["Queue"]) == {"facts", "generation", "verification"}
    workers = table("Name", "Host", "Alive", "Current job", "Last heartbeat")
    row = workers[workers["Name"] == "rq.gpu-box.7"]
    assert list(row["State"]) == ["busy"] and list(row["Current job"]) == [waiting] and list(row["Alive"]) == [True]
    recent = table("Kind", "Queue", "State", "Attempt", "Worker", "Created", "Finished", "Error")
    assert list(recent["Job"]) == [waiting] and list(recent["State"]) == ["CANCELLED"]

    at.selectbox(key="operations_job").set_value(waiting).run()
    transitions = table("From", "To", "At", "Reason")
    assert list(transitions["To"]) == ["QUEUED", "CANCELLED"]
    assert list(transitions["Reason"])[-1] == "cancelled before it started"


def test_queue_places_read_as_ordinals() -> None:
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111, 112)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st", "111th", "112th"
    ]  # fmt: skip
