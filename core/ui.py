"""Streamlit helpers shared by the pages: the engine factory, identity, status and rendering.

The only module in ``core`` that imports Streamlit. Pages stay thin: they read input, call
``core`` and render through these helpers. Everything user-supplied (titles, file names, PDF
text, sentences, quotes) is shown with ``st.text`` or markdown-escaped; nothing is raw HTML.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from streamlit.runtime.pages_manager import PagesManager

from core import breakers, controls
from core import manuscripts as ms
from core.db import get_engine, migrate, session_scope
from core.documents import get_chunk
from core.errors import WorkbenchError
from core.facts import get_facts_by_ref
from core.jobs import SUCCEEDED, run_inline
from core.models import Fact, Paragraph, ParagraphVersion, SentenceCheck, utcnow
from core.pipeline import draft_paragraph, new_trace_id, reverify, save_edited_version
from core.progress import ProgressFn
from core.settings import get_settings
from core.sources import add_source
from core.tenancy import Identity, bootstrap
from core.ui_queries import user_label

# Frame: engine, sessions, identity, status ----------------------------------------------------


@st.cache_resource(show_spinner="Preparing the database…")
def _migrated_engine(url: str) -> Engine:
    engine = get_engine(url)
    migrate(engine)
    return engine


def engine() -> Engine:
    """The engine for the configured database, migrated once per process."""
    return _migrated_engine(get_settings().resolved_database_url)


@contextmanager
def session() -> Iterator[Session]:
    """A session on the app's engine that commits on success."""
    with session_scope(engine()) as s:
        yield s


def bootstrap_identity() -> Identity:
    """Called by app.py on every run; keeps the ids (never ORM objects) in session state."""
    with session() as s:
        ident = bootstrap(s)
    st.session_state["app_tenant_id"] = ident.tenant_id
    st.session_state["app_user_id"] = ident.user_id
    return ident


def identity() -> Identity:
    """Who is using the app; every page asks first, so this is where a page makes sure it runs
    inside the frame (``app.py``: banner now, login later)."""
    _require_frame()
    if "app_tenant_id" not in st.session_state:
        return bootstrap_identity()
    return Identity(tenant_id=st.session_state["app_tenant_id"], user_id=st.session_state["app_user_id"])


def _require_frame() -> None:
    # Until app.py has called st.navigation once in this process, Streamlit assumes the old
    # pages/ folder mode and serves a deep link such as /operations by running that page file
    # alone: no frame, no banner (and later no login). Leave that mode and run again, through
    # app.py, which resolves the same page from the URL.
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def runtime_status() -> dict[str, str]:
    """Which provider, database and job mode this process runs with (no secrets)."""
    settings = get_settings()
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite":
        database = f"SQLite · {Path(url.database or ':memory:').name}"
    else:
        database = f"PostgreSQL · {url.host or 'localhost'}/{url.database or ''}"
    provider = {"local": "local (offline, no cost)"}.get(settings.provider, settings.provider)
    # core.jobs runs everything in-process until RQ workers land (issue 4), REDIS_URL or not.
    jobs = "in-process (REDIS_URL set; RQ workers come with issue 4)" if settings.redis_url else "in-process"
    return {"Provider": provider, "Database": database, "Jobs": jobs}


def render_status() -> None:
    with st.sidebar.container(border=True):
        st.caption("**Status**")
        for label, value in runtime_status().items():
            st.caption(f"{label}: {md_escape(value)}")


def actor() -> str:
    """The current user as the control log names them (display name and email)."""
    ident = identity()
    with session() as s:
        return user_label(s, tenant_id=ident.tenant_id, user_id=ident.user_id)


# Generation controls: the banner and the pause the Write page obeys ---------------------------


def generation_status() -> controls.Status:
    """Kill switch and open breakers as the database has them now (read on every run, never cached)."""
    return controls.status(engine())


def render_controls_banner(status: controls.Status) -> None:
    """Drawn by app.py above every page: the kill switch, then each open or half-open breaker."""
    switch = status.kill_switch
    if switch.engaged:
        since = f" on {when(switch.changed_at)}" if switch.changed_at else ""
        st.error(
            f"**Generation is frozen.** {md_escape(switch.actor or 'ops')} engaged the kill switch{since}: "
            f"{md_escape(switch.reason)}. No model is called and no PDF, draft, edit or re-verification starts "
            "until it is released on the Operations page. Stored and verified work stays readable.",
            icon=":material/block:",
        )
    for breaker in status.open_breakers:
        name, since = md_escape(breaker.name), when(breaker.opened_at) or "unknown"
        if breaker.state == breakers.HALF_OPEN:
            state = f"is half-open (open since {since}); one trial run decides whether it closes"
        else:
            state = f"is open since {since}; after its cooldown one trial run decides whether it closes"
        st.warning(
            f"**Circuit breaker {name}** {state}. Why: {md_escape(breaker.reason)}. "
            "Ops can reset it on the Operations page once the cause is fixed.",
            icon=":material/electrical_services:",
        )


def generation_pause(status: controls.Status) -> str | None:
    """Why the buttons that start model work are off now, or None while a run may start.

    The kill switch stops everything. An open breaker stops runs until its cooldown is over; then
    the next run is its half-open trial, so the buttons come back (the gate in ``core.jobs``
    still cancels a run it refuses, with the reason). Disabling on every non-closed breaker would
    leave no run to be the trial, and a breaker would stay open until someone reset it by hand.
    """
    switch = status.kill_switch
    if switch.engaged:
        return (
            f"Generation is frozen by the kill switch ({md_escape(switch.reason)}): uploading PDFs, drafting, "
            "saving edits and re-verifying are off until ops release it. Reading, accepting and history still work."
        )
    cooldown = timedelta(seconds=get_settings().breaker_cooldown_s)
    cooling = [
        b
        for b in status.open_breakers
        if b.state == breakers.OPEN and (b.opened_at is None or b.opened_at + cooldown > utcnow())
    ]
    if not cooling:
        return None
    until = max((b.opened_at or utcnow()) + cooldown for b in cooling)
    names = ", ".join(md_escape(b.name) for b in cooling)
    return (
        f"Generation is paused: circuit breaker {names} is open. Uploading PDFs, drafting, saving edits and "
        f"re-verifying come back at {until:%H:%M:%S} UTC for one trial run, or when ops reset it. "
        "Reading, accepting and history still work."
    )


def control_action(action: Callable[[Engine], bool], *, unchanged: str) -> None:
    """Flip a control (kill switch, breaker reset) and rerun; say so when someone else already did."""
    try:
        changed = action(engine())
    except WorkbenchError as exc:
        st.error(md_escape(exc))
        return
    if changed:
        st.rerun()
    st.warning(unchanged)


# Text -----------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$=&])")


def md_escape(text: object) -> str:
    """Text safe to embed in Streamlit markdown: every markup character escaped, one line."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else ""


def not_built(issue: int, what: str) -> None:
    """Say plainly what a page does not do yet and which issue brings it."""
    st.info(f"**Not built yet, comes with issue {issue}:** {what}.", icon=":material/construction:")


# Uploads -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadOutcome:
    filename: str
    ok: bool
    message: str


def ingest_upload(
    engine: Engine, *, identity: Identity, manuscript_id: int, filename: str, data: bytes, progress: ProgressFn
) -> UploadOutcome:
    """Ingest one PDF as an ``ingest`` job of its own; a bad file becomes a message, never an exception."""
    trace_id = new_trace_id()

    def work(s: Session, report: ProgressFn, job_id: str) -> dict[str, Any]:
        result = add_source(
            s,
            identity=identity,
            manuscript_id=manuscript_id,
            filename=filename,
            data=data,
            trace_id=trace_id,
            progress=report,
            job_id=job_id,
        )
        return {
            "document_id": result.document.id,
            "pages": result.document.page_count,
            "facts_added": result.facts_added,
            "facts_rejected": result.facts_rejected,
        }

    outcome = run_inline(
        engine,
        tenant_id=identity.tenant_id,
        user_id=identity.user_id,
        kind="ingest",
        payload={"manuscript_id": manuscript_id, "filename": filename},
        trace_id=trace_id,
        work=work,
        progress=progress,
    )
    if outcome.state != SUCCEEDED or outcome.result is None:
        return UploadOutcome(filename, False, outcome.error or "The file could not be ingested.")
    result = outcome.result
    message = f"{result['pages']} pages, {result['facts_added']} facts extracted"
    if result["facts_rejected"]:
        message += f" ({result['facts_rejected']} rejected: quote not found verbatim in the PDF)"
    return UploadOutcome(filename, True, message)


def render_uploads(files: Iterable[Any], *, manuscript_id: int) -> list[UploadOutcome]:
    """Ingest uploaded files one by one, each with a live progress bar."""
    outcomes = []
    for file in files:
        with st.status(f"Ingesting {md_escape(file.name)}…", expanded=True) as status:
            bar = st.progress(0.0, text="Reading the PDF")
            outcome = ingest_upload(
                engine(),
                identity=identity(),
                manuscript_id=manuscript_id,
                filename=file.name,
                data=file.getvalue(),
                progress=_bar_progress(bar),
            )
            status.update(
                label=f"{md_escape(file.name)}: {md_escape(outcome.message)}",
                state="complete" if outcome.ok else "error",
                expanded=not outcome.ok,
            )
        outcomes.append(outcome)
    return outcomes


def _bar_progress(bar: Any) -> ProgressFn:
    def report(fraction: float, message: str) -> None:
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=md_escape(message))

    return report


# Paragraph blocks -----------------------------------------------------------------------------


def _key(*parts: object) -> str:
    return "write_" + "_".join(str(p) for p in parts)


def _supported(sentence: SentenceCheck) -> bool:
    return sentence.verdict == "supported" and not sentence.needs_review


def version_badge(version: ParagraphVersion) -> None:
    if version.verified:
        st.badge("Verified", icon=":material/check_circle:", color="green")
    else:
        failed = sum(not _supported(s) for s in version.sentences)
        st.badge(
            f"Needs review · {failed} of {len(version.sentences)} sentences", icon=":material/warning:", color="orange"
        )


def paragraph_block(
    s: Session, ident: Identity, paragraph: Paragraph, documents: Mapping[int, str], *, paused: str | None = None
) -> None:
    """One paragraph: brief, actions, the shown version sentence by sentence, history.

    ``paused`` (from ``generation_pause``) turns off Draft, Re-verify and Save-and-verify and says why.
    """
    pid = paragraph.id
    versions = ms.list_versions(s, tenant_id=ident.tenant_id, paragraph_id=pid)
    wanted = st.session_state.get(_key("view", pid))
    shown = next((v for v in versions if v.id == wanted), versions[0] if versions else None)
    with st.container(border=True):
        st.markdown(f"**Paragraph {paragraph.position}**")
        st.caption(f"Brief: {md_escape(paragraph.brief)}")
        with st.container(horizontal=True, vertical_alignment="center"):
            draft = st.button(
                "Draft again" if versions else "Draft",
                key=_key("draft", pid),
                icon=":material/edit_note:",
                type="secondary" if versions else "primary",
                disabled=paused is not None,
                help=paused,
            )
            again = st.button(
                "Re-verify",
                key=_key("reverify", pid),
                disabled=shown is None or paused is not None,
                help=paused or "Check the shown version again against the facts as they are now; saves a new version.",
            )
            edit = st.button(
                "Edit",
                key=_key("edit", pid),
                disabled=shown is None,
                help="Change sentences or citations; saving verifies them and creates a new version.",
            )
            accepted = shown is not None and paragraph.accepted_version_id == shown.id
            accept = st.button(
                "Accepted" if accepted else "Accept",
                key=_key("accept", pid),
                icon=":material/check:",
                disabled=shown is None or not shown.verified or accepted,
                help="Only a verified version (every sentence supported) can be accepted.",
            )
            with st.popover("Brief", icon=":material/edit:", key=_key("briefpop", pid)):
                _brief_form(ident, paragraph)
        if draft:
            _run(
                pid,
                "draft",
                "Drafting the paragraph…",
                lambda w, p, trace, job: draft_paragraph(
                    w,
                    tenant_id=ident.tenant_id,
                    user_id=ident.user_id,
                    paragraph_id=pid,
                    trace_id=trace,
                    progress=p,
                    job_id=job,
                ),
            )
        if shown is None:
            st.caption("No draft yet. Press **Draft**: the Writer cites your facts, the Verifier checks each sentence.")
            return
        if again:
            _run(
                pid,
                "reverify",
                "Verifying again…",
                lambda w, _p, _trace, _job: reverify(
                    w, tenant_id=ident.tenant_id, user_id=ident.user_id, paragraph_id=pid, version_id=shown.id
                ),
            )
        if accept:
            act(lambda w: ms.accept_version(w, tenant_id=ident.tenant_id, paragraph_id=pid, version_id=shown.id))
        if edit:
            st.session_state[_key("editing", pid)] = shown.id
        if st.session_state.get(_key("editing", pid)) == shown.id:
            _edit_form(ident, pid, shown, paused)
        else:
            _version_view(s, ident, paragraph, shown, versions, documents)
        _history(pid, versions, shown, paragraph.accepted_version_id)


def act(action: Callable[[Session], object]) -> bool:
    """Run a write in its own transaction; show a WorkbenchError, rerun on success."""
    try:
        with session() as s:
            action(s)
    except WorkbenchError as exc:
        st.error(md_escape(exc))
        return False
    st.rerun()
    return True  # pragma: no cover (st.rerun does not return)


Step = Callable[[Session, ProgressFn, str, str], ParagraphVersion]
"""A paragraph job's body: (session, progress, trace_id, job_id) -> the new version."""


def _run(pid: int, kind: str, label: str, step: Step) -> None:
    """Run a paragraph step as a job with a live progress bar; rerun to show the new version."""
    ident = identity()
    trace_id = new_trace_id()
    with st.status(label, expanded=True) as status:
        bar = st.progress(0.0, text="Starting")
        outcome = run_inline(
            engine(),
            tenant_id=ident.tenant_id,
            user_id=ident.user_id,
            kind=kind,
            payload={"paragraph_id": pid},
            trace_id=trace_id,
            progress=_bar_progress(bar),
            work=lambda s, report, job_id: {"version_id": step(s, report, trace_id, job_id).id},
        )
        if outcome.state != SUCCEEDED:
            status.update(label=f"{label.rstrip('…')}: stopped", state="error")
    if outcome.state == SUCCEEDED:
        st.session_state.pop(_key("view", pid), None)
        st.session_state.pop(_key("editing", pid), None)
        st.rerun()
    st.error(md_escape(outcome.error or "The job failed."))


def _version_view(
    s: Session,
    ident: Identity,
    paragraph: Paragraph,
    version: ParagraphVersion,
    versions: list[ParagraphVersion],
    documents: Mapping[int, str],
) -> None:
    with st.container(horizontal=True, vertical_alignment="center"):
        version_badge(version)
        if paragraph.accepted_version_id == version.id:
            st.badge("Accepted", icon=":material/bookmark:", color="blue")
        st.caption(f"Version {version.number} · {version.origin} · {when(version.created_at)}")
    if version.id != versions[0].id:
        st.info(f"You are viewing an older version (latest is {versions[0].number}).")
    refs = list(dict.fromkeys(ref for sc in version.sentences for ref in sc.cites))
    facts = get_facts_by_ref(s, tenant_id=ident.tenant_id, manuscript_id=paragraph.manuscript_id, refs=refs)
    for index, sentence in enumerate(version.sentences, start=1):
        _sentence(s, ident, version, index, sentence, facts, documents)


def _sentence(
    s: Session,
    ident: Identity,
    version: ParagraphVersion,
    index: int,
    sentence: SentenceCheck,
    facts: Mapping[str, Fact],
    documents: Mapping[int, str],
) -> None:
    st.text(f"{index}. {sentence.text}")
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        if _supported(sentence):
            st.badge("Supported", icon=":material/check_circle:", color="green")
        else:
            mode = (sentence.failure_mode or "unsupported").replace("_", " ")
            st.badge(f"Needs review · {md_escape(mode)}", icon=":material/warning:", color="orange")
        for ref in dict.fromkeys(sentence.cites):
            with st.popover(md_escape(ref), icon=":material/format_quote:", key=_key("cite", version.id, index, ref)):
                _fact_card(s, ident, ref, facts.get(ref), documents)
    if not _supported(sentence) and sentence.reason:
        st.caption(f"Why: {md_escape(sentence.reason)}")
    if sentence.original_text and sentence.original_text != sentence.text:
        rounds = sentence.rewrite_rounds
        st.caption(
            f"Rewritten ({rounds} round{'s' * (rounds != 1)}); the Writer wrote: {md_escape(sentence.original_text)}"
        )


def _fact_card(s: Session, ident: Identity, ref: str, fact: Fact | None, documents: Mapping[int, str]) -> None:
    if fact is None:
        st.warning(f"{md_escape(ref)} is not a fact of this manuscript.")
        return
    source = documents.get(fact.document_id, f"document {fact.document_id}")
    st.caption(f"{md_escape(ref)} · {md_escape(fact.kind)} · {md_escape(source)}, page {fact.page}")
    if " ".join(fact.text.split()) != " ".join(fact.quote.split()):
        st.text(fact.text)
    st.markdown("**Verbatim quote**")
    with st.container(border=True):
        st.text(f"“{fact.quote}”")
    chunk = get_chunk(s, tenant_id=ident.tenant_id, chunk_id=fact.chunk_id)
    start = fact.quote_start if chunk.text[fact.quote_start :].startswith(fact.quote) else chunk.text.find(fact.quote)
    if start >= 0 and fact.quote.strip():
        end = start + len(fact.quote)
        before, after = chunk.text[max(0, start - 200) : start], chunk.text[end : end + 200]
        lead = md_escape(before) + (" " if before[-1:].isspace() else "")
        tail = (" " if after[:1].isspace() else "") + md_escape(after)
        st.caption(f"In context: …{lead}**{md_escape(fact.quote)}**{tail}…")


def _edit_form(ident: Identity, pid: int, version: ParagraphVersion, paused: str | None) -> None:
    with st.form(key=_key("edit_form", pid, version.id)):
        st.caption(
            f"Editing version {version.number}. Saving creates a new version and verifies it again. "
            "Empty a sentence to remove it; cite fact ids such as F12, separated by commas."
        )
        rows = []
        for index, sentence in enumerate([*version.sentences, None], start=1):
            left, right = st.columns([4, 1])
            label = f"Sentence {index}" if sentence else "New sentence (optional)"
            text = left.text_area(
                label, value=sentence.text if sentence else "", key=_key("etext", pid, version.id, index), height=80
            )
            cites = right.text_input(
                "Cites", value=", ".join(sentence.cites) if sentence else "", key=_key("ecites", pid, version.id, index)
            )
            rows.append((text.strip(), re.findall(r"F\d+", cites.upper())))
        with st.container(horizontal=True):
            save = st.form_submit_button("Save and verify", type="primary", disabled=paused is not None)
            cancel = st.form_submit_button("Cancel")
        if paused:
            st.caption(f":material/block: {paused}")
    if cancel:
        st.session_state.pop(_key("editing", pid), None)
        st.rerun()
    if save:
        sentences = [(text, cites) for text, cites in rows if text]
        _run(
            pid,
            "edit",
            "Verifying the edited sentences…",
            lambda w, _p, trace, _job: save_edited_version(
                w,
                tenant_id=ident.tenant_id,
                user_id=ident.user_id,
                paragraph_id=pid,
                sentences=sentences,
                trace_id=trace,
            ),
        )


def _brief_form(ident: Identity, paragraph: Paragraph) -> None:
    with st.form(key=_key("brief_form", paragraph.id), border=False):
        brief = st.text_area("Brief", value=paragraph.brief, key=_key("brief", paragraph.id))
        st.caption("A new brief applies to the next draft; existing versions keep the text they were checked with.")
        if st.form_submit_button("Save brief"):
            act(lambda w: ms.update_brief(w, tenant_id=ident.tenant_id, paragraph_id=paragraph.id, brief=brief))


def _history(pid: int, versions: list[ParagraphVersion], shown: ParagraphVersion, accepted_id: int | None) -> None:
    with st.expander(f"History · {len(versions)} version{'s' * (len(versions) != 1)}"):
        for version in versions:
            with st.container(horizontal=True, vertical_alignment="center"):
                status = ":material/check_circle: verified" if version.verified else ":material/warning: needs review"
                marks = (" · accepted" if version.id == accepted_id else "") + (
                    " · shown" if version.id == shown.id else ""
                )
                st.caption(
                    f"**Version {version.number}** · {status} · {version.origin} · {when(version.created_at)}{marks}"
                )
                if version.id != shown.id and st.button("View", key=_key("viewbtn", pid, version.id), type="tertiary"):
                    st.session_state[_key("view", pid)] = version.id
                    st.rerun()
