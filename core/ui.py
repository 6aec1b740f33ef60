"""Streamlit helpers shared by the pages: the engine factory, identity, status and rendering.

The only module in ``core`` that imports Streamlit. Pages stay thin: they read input, call
``core`` and render through these helpers. Everything user-supplied (titles, file names, PDF
text, sentences, quotes) is shown with ``st.text`` or markdown-escaped; nothing is raw HTML.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from streamlit.runtime.pages_manager import PagesManager

from core import accounts, authz, breakers, controls, jobs
from core import manuscripts as ms
from core.authz import Permission
from core.db import get_engine, migrate, session_scope
from core.documents import get_chunk
from core.errors import AccountLockedError, SessionExpiredError, WorkbenchError
from core.executors import QueueUnavailableError, get_executor
from core.facts import get_facts_by_ref
from core.models import Fact, Paragraph, ParagraphVersion, SentenceCheck, utcnow
from core.pages_spec import PAGES, pages_for
from core.pipeline import new_trace_id
from core.settings import PROJECT_ROOT, get_settings
from core.storage import delete_blob, store_blob
from core.tenancy import Identity
from core.ui_queries import KIND_LABELS, Action, actions, live_actions, queue_place

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


AUTH_TOKEN = "auth_token"  # noqa: S105 (a session-state key, not a secret)
"""Session-state key of the sign-in token: the only thing of a sign-in the browser session keeps."""
AUTH_IDENTITY = "auth_identity"
"""Session-state key of the identity ``signed_in`` resumed for this run (ids, role, name)."""
AUTH_NOTE = "auth_note"
"""Session-state key of why the last sign-in ended, shown once on the sign-in page."""


def signed_in() -> Identity | None:
    """Called by app.py on every run: the identity of this browser session's live sign-in, read
    fresh (a role change or deactivation applies at once), or None with the reason noted."""
    token = st.session_state.get(AUTH_TOKEN)
    st.session_state.pop(AUTH_IDENTITY, None)
    if not token:
        return None
    try:
        ident = accounts.resume(engine(), token)
    except SessionExpiredError as error:
        st.session_state.pop(AUTH_TOKEN, None)
        st.session_state[AUTH_NOTE] = str(error)
        return None
    st.session_state[AUTH_IDENTITY] = ident
    return ident


def sign_in_page() -> None:
    """The only page there is without a sign-in: e-mail and password."""
    st.title("Sign in")
    note = st.session_state.pop(AUTH_NOTE, None)
    if note:
        st.info(md_escape(note), icon=":material/logout:")
    with st.form("auth_sign_in"):
        email = st.text_input("E-mail", autocomplete="username", key="auth_email")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    st.caption(
        "The first run prints the admin's password in the terminal (`python -m core users first-run`); "
        "admins add further accounts on the Users and tenants page."
    )
    if not submitted:
        return
    try:
        ident = accounts.login(engine(), email=email, password=password)
    except AccountLockedError as error:
        st.error(md_escape(error), icon=":material/lock_clock:")
        return
    except WorkbenchError as error:
        st.error(md_escape(error), icon=":material/error:")
        return
    st.session_state[AUTH_TOKEN] = accounts.start_session(engine(), ident)
    st.rerun()


def render_identity(ident: Identity) -> None:
    """The sidebar line naming who is signed in, with the Sign out button."""
    with session() as s:
        workspace = accounts.tenant_name(s, tenant_id=ident.tenant_id)
    with st.sidebar.container(border=True):
        role = ident.role.replace("_", " ")
        st.caption(f"Signed in as **{md_escape(ident.name)}** · {md_escape(role)} · {md_escape(workspace)}")
        with st.popover("Change password", icon=":material/password:"):
            _change_password_form()
        if st.button("Sign out", icon=":material/logout:", key="auth_sign_out"):
            token = st.session_state.pop(AUTH_TOKEN, None)
            st.session_state.pop(AUTH_IDENTITY, None)
            if token:
                accounts.end_session(engine(), token)
            st.session_state[AUTH_NOTE] = "You are signed out."
            st.rerun()


def _change_password_form() -> None:
    with st.form("auth_change_password", clear_on_submit=True):
        current = st.text_input("Current password", type="password", key="auth_pw_current")
        new = st.text_input("New password (at least 12 characters)", type="password", key="auth_pw_new")
        again = st.text_input("New password again", type="password", key="auth_pw_again")
        if not st.form_submit_button("Change password"):
            return
    if new != again:
        st.error("The two new passwords differ; nothing was changed.")
        return
    try:
        accounts.change_password(engine(), st.session_state.get(AUTH_TOKEN, ""), current=current, new=new)
    except WorkbenchError as error:
        st.error(md_escape(error))
        return
    st.success("Password changed. Your other sessions have ended.")


def navigation(ident: Identity | None) -> Any:
    """``st.navigation`` over the pages the signed-in role may open (``core.pages_spec``), or
    over the sign-in page alone; returns the page to run."""
    if ident is None:
        # The sign-in page answers at the root and at every page's address too (hidden): a deep link
        # gets the form instead of "page not found", and after signing in the same address opens
        # that page, when the role may open it.
        here = st.Page(sign_in_page, title="Sign in", icon=":material/login:", url_path="sign-in", default=True)
        aliases = [
            st.Page(sign_in_page, title="Sign in", url_path=Path(spec.path).stem, visibility="hidden") for spec in PAGES
        ]
        return st.navigation([here, *aliases], position="hidden")
    groups: dict[str, list[Any]] = {}
    for spec in pages_for(ident.role):
        groups.setdefault(spec.group, []).append(st.Page(spec.path, title=spec.title, icon=spec.icon))
    return st.navigation(groups)


def may_open(ident: Identity, page: Any) -> bool:
    """Whether the page ``navigation`` picked is one of the role's (it always should be: a check
    behind the navigation, so that no page ever runs for a role that may not open it)."""
    allowed_paths = {(PROJECT_ROOT / spec.path).resolve() for spec in pages_for(ident.role)}
    script = getattr(page, "_page", None)
    return isinstance(script, Path) and script.resolve() in allowed_paths


def identity() -> Identity:
    """Who is signed in (role and name included); every page asks first, so this is also where a
    page makes sure it runs inside the frame (``app.py``: sign-in, navigation, banners)."""
    _require_frame()
    ident = st.session_state.get(AUTH_IDENTITY)
    if not isinstance(ident, Identity):
        st.warning("Sign in first.", icon=":material/login:")
        st.stop()
    return ident


def allowed(permission: Permission) -> bool:
    """Whether the signed-in role holds ``permission`` (pages hide what it does not; core refuses it)."""
    return authz.allowed(identity(), permission)


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
    if settings.redis_url:
        answering = "answering" if _queue_answers(settings.redis_url) else "NOT answering"
        runs_jobs = f"RQ at {_redis_address(settings.redis_url)} ({answering})"
    else:
        runs_jobs = f"in-process ({settings.job_workers} thread{'s' * (settings.job_workers != 1)})"
    return {"Provider": provider, "Database": database, "Jobs": runs_jobs}


@st.cache_data(ttl=5, show_spinner=False)
def _queue_answers(redis_url: str) -> bool:
    """Whether the job queue answers a ping (cached a few seconds: every page run shows it)."""
    try:
        get_executor().ping()
    except QueueUnavailableError:
        return False
    return True


def _redis_address(url: str) -> str:
    """``redis://host:port`` of a Redis URL: no password, no database number."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname or 'localhost'}:{parts.port or 6379}"
    except ValueError:  # a port that is not a number: say which setting, never echo a password
        return "the REDIS_URL address"


def render_status() -> None:
    with st.sidebar.container(border=True):
        st.caption("**Status**")
        for label, value in runtime_status().items():
            st.caption(f"{label}: {md_escape(value)}")


def actor() -> str:
    """The current user as the control and audit logs name them (display name and e-mail)."""
    return identity().name


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


# Jobs: queue one where the user acts, follow it live -----------------------------------------

JOB_POLL_S = 1.0
"""How often the Write page looks at the jobs it follows while one is queued or running, seconds."""


def start_job(kind: str, payload: dict[str, Any], *, track: str) -> str | None:
    """Queue a job for the current user and follow it under the session key ``track``; returns
    its id at once (it runs on a worker). A refusal (the queue is down, ...) is shown, and None."""
    ident = identity()
    try:
        job_id = jobs.enqueue(
            engine(),
            tenant_id=ident.tenant_id,
            user_id=ident.user_id,
            kind=kind,
            payload=payload,
            trace_id=new_trace_id(),
        )
    except WorkbenchError as exc:
        st.error(md_escape(exc), icon=":material/cloud_off:")
        return None
    st.session_state[track] = [*st.session_state.get(track, []), job_id]
    return job_id


def queue_upload(
    engine: Engine, *, identity: Identity, manuscript_id: int, filename: str, data: bytes, trace_id: str
) -> str:
    """Keep the PDF in the file store, then queue its ``ingest`` job; returns the job id. When it
    cannot be queued, a copy this call stored goes again and the error propagates."""
    sha256, _path, created = store_blob(data)
    try:
        return jobs.enqueue(
            engine,
            tenant_id=identity.tenant_id,
            user_id=identity.user_id,
            kind="ingest",
            payload={"manuscript_id": manuscript_id, "filename": filename, "sha256": sha256},
            trace_id=trace_id,
        )
    except Exception:  # not swallowed: re-raised once the blob no job will ever read is removed
        if created:
            delete_blob(sha256)
        raise


def start_uploads(files: Sequence[Any], *, manuscript_id: int, track: str) -> list[str]:
    """One ``ingest`` job per uploaded file, followed under ``track``; returns why files were refused."""
    ident, refused = identity(), []
    for index, file in enumerate(files):
        try:
            job_id = queue_upload(
                engine(),
                identity=ident,
                manuscript_id=manuscript_id,
                filename=file.name,
                data=file.getvalue(),
                trace_id=new_trace_id(),
            )
        except QueueUnavailableError as exc:  # the queue is down: the files after this one would fare no better
            names = [f.name for f in files[index:]]
            refused.append(f"{', '.join(names)} {'was' if len(names) == 1 else 'were'} not queued: {exc}")
            break
        except WorkbenchError as exc:
            refused.append(f"{file.name} was not queued: {exc}")
            continue
        st.session_state[track] = [*st.session_state.get(track, []), job_id]
    return refused


def upload_track(manuscript_id: int) -> str:
    """The session key under which the Write page follows a manuscript's uploads."""
    return f"write_uploads_{manuscript_id}"


def adopt_live_jobs() -> None:
    """Once per session: follow this user's actions that are still queued or running (started
    before a reload or in another tab), uploads by manuscript and the rest by paragraph."""
    if st.session_state.get("write_jobs_adopted"):
        return
    ident = identity()
    with session() as s:
        live = live_actions(s, tenant_id=ident.tenant_id, user_id=ident.user_id)
    for job in live:
        if job.kind == "ingest" and "manuscript_id" in job.payload:
            key = upload_track(int(job.payload["manuscript_id"]))
        elif "paragraph_id" in job.payload:
            key = _key("jobs", int(job.payload["paragraph_id"]))
        else:
            continue
        if job.job_id not in st.session_state.get(key, []):
            st.session_state[key] = [*st.session_state.get(key, []), job.job_id]
    st.session_state["write_jobs_adopted"] = True


def upload_report(done: str) -> None:
    """What the finished uploads followed under ``done`` added: pages and facts per file."""
    lines = []
    for action in actions(engine(), tenant_id=identity().tenant_id, job_ids=list(st.session_state.get(done, []))):
        result = action.result
        line = f"{action.subject}: {result.get('pages', 0)} pages, {result.get('facts_added', 0)} facts extracted"
        if result.get("facts_rejected"):
            line += f" ({result['facts_rejected']} rejected: quote not found verbatim in the PDF)"
        lines.append(md_escape(line))
    if lines:
        st.success("  \n".join(lines), icon=":material/picture_as_pdf:")


def follow_jobs(track: str, *, forget: tuple[str, ...] = (), done: str | None = None, live: bool | None = None) -> bool:
    """Show the actions followed under ``track``, live, and return whether one is still running.

    A fragment reruns every ``JOB_POLL_S`` while any of them is queued or running: each job with
    its queue place or stage and progress, and Cancel. When an action succeeds the whole page
    runs again, once, so what it made shows; its id moves to ``done`` and the ``forget`` keys go.
    A failed or cancelled one stays with its error, Retry and Dismiss. ``live``: whether one is
    running, when the caller has just asked.
    """
    if not st.session_state.get(track):
        return False
    live = _live(track) if live is None else live
    st.fragment(_job_rows, run_every=JOB_POLL_S if live else None)(track, live, forget, done)
    return live


def _live(track: str) -> bool:
    ids = list(st.session_state.get(track, []))
    return bool(ids) and any(a.live for a in actions(engine(), tenant_id=identity().tenant_id, job_ids=ids))


def _job_rows(track: str, polling: bool, forget: tuple[str, ...], done: str | None) -> None:
    ident = identity()
    followed = actions(engine(), tenant_id=ident.tenant_id, job_ids=list(st.session_state.get(track, [])))
    finished = [a.job_id for a in followed if a.succeeded]
    st.session_state[track] = [a.job_id for a in followed if not a.succeeded]
    if finished:
        if done:
            st.session_state[done] = [*st.session_state.get(done, []), *finished]
        for key in forget:
            st.session_state.pop(key, None)
        st.rerun()  # the whole page, once: the new version or document shows
    if polling != any(a.live for a in followed):
        st.rerun()  # the whole page starts or stops the timer
    for action in followed:
        _action_rows(action, track)


def _action_rows(action: Action, track: str) -> None:
    for view in action.jobs:
        label = KIND_LABELS.get(view.kind, view.kind)
        if view.kind == "ingest" and action.subject:
            label = f"{label} {md_escape(action.subject)}"
        if view.state == jobs.QUEUED:
            st.caption(f":material/hourglass_top: **{label}** · queued")
            with st.container(horizontal=True, vertical_alignment="center"):
                st.caption(queue_place(view))
                _cancel_button(view)
        elif view.state == jobs.RUNNING:
            stage = md_escape(view.stage or "Starting")
            st.progress(min(max(view.progress, 0.0), 1.0), text=f"**{label}** · {stage}")
            with st.container(horizontal=True, vertical_alignment="center"):
                where = f" on {md_escape(view.worker)}" if view.worker else ""
                note = " · stopping at its next step" if view.cancel_requested else ""
                st.caption(f"Attempt {view.attempt} of {view.max_attempts}{where}{note}")
                _cancel_button(view)
        elif view.state == jobs.SUCCEEDED:
            st.caption(f":material/check: {label}: done")
    stopped = action.stopped
    if stopped is None:
        return
    what = KIND_LABELS.get(stopped.kind, stopped.kind)
    name = f"{md_escape(action.subject)} was not added" if stopped.kind == "ingest" else f"{what} stopped"
    message = f"{name}: {md_escape(stopped.error or stopped.state.lower())}"
    if stopped.state == jobs.CANCELLED:
        st.warning(message, icon=":material/cancel:")
    else:
        st.error(message, icon=":material/error:")
    paused = generation_pause(generation_status())
    with st.container(horizontal=True):
        if st.button("Retry", key=f"write_retry_{stopped.id}", icon=":material/replay:", disabled=paused is not None):
            _retry(action, stopped, track)
        if st.button("Dismiss", key=f"write_dismiss_{stopped.id}", type="tertiary"):
            st.session_state[track] = [i for i in st.session_state.get(track, []) if i != action.job_id]
            st.rerun()
    if paused:
        st.caption(f":material/block: {paused}")


def _cancel_button(view: jobs.JobView) -> None:
    if st.button("Cancel", key=f"write_cancel_{view.id}", icon=":material/stop:", disabled=view.cancel_requested):
        try:
            jobs.cancel(engine(), tenant_id=identity().tenant_id, job_id=view.id)
        except WorkbenchError as exc:  # it ended meanwhile
            st.toast(md_escape(exc))
        st.rerun()


def _retry(action: Action, stopped: jobs.JobView, track: str) -> None:
    """Queue the stopped job again as a new action with a new trace, in the place of the old one."""
    ident = identity()
    try:
        job_id = jobs.retry(
            engine(), tenant_id=ident.tenant_id, user_id=ident.user_id, job_id=stopped.id, trace_id=new_trace_id()
        )
    except WorkbenchError as exc:
        st.error(md_escape(exc), icon=":material/cloud_off:")
        return
    ids = st.session_state.get(track, [])
    st.session_state[track] = [job_id if i == action.job_id else i for i in ids]
    st.rerun()


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
    """One paragraph: brief, actions, its jobs live, the shown version sentence by sentence, history.

    Draft, Re-verify and Save-and-verify each queue a job and return; ``follow_jobs`` shows it
    below the buttons. ``paused`` (from ``generation_pause``) turns those three off and says why,
    and so does a job of this paragraph that is still queued or running.
    """
    pid, track = paragraph.id, _key("jobs", paragraph.id)
    versions = ms.list_versions(s, tenant_id=ident.tenant_id, paragraph_id=pid)
    wanted = st.session_state.get(_key("view", pid))
    shown = next((v for v in versions if v.id == wanted), versions[0] if versions else None)
    # One action at a time per paragraph: a second Draft while one runs would only race it.
    live = _live(track)
    busy = "A job for this paragraph is still running: wait for it or cancel it." if live else None
    blocked = paused or busy
    with st.container(border=True):
        st.markdown(f"**Paragraph {paragraph.position}**")
        st.caption(f"Brief: {md_escape(paragraph.brief)}")
        with st.container(horizontal=True, vertical_alignment="center"):
            draft = st.button(
                "Draft again" if versions else "Draft",
                key=_key("draft", pid),
                icon=":material/edit_note:",
                type="secondary" if versions else "primary",
                disabled=blocked is not None,
                help=blocked,
            )
            again = st.button(
                "Re-verify",
                key=_key("reverify", pid),
                disabled=shown is None or blocked is not None,
                help=blocked or "Check the shown version again against the facts as they are now; saves a new version.",
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
        if draft and start_job("draft", {"paragraph_id": pid}, track=track):
            st.rerun()
        if (
            again
            and shown is not None
            and start_job("reverify", {"paragraph_id": pid, "version_id": shown.id}, track=track)
        ):
            st.rerun()
        follow_jobs(track, forget=(_key("view", pid), _key("editing", pid)), live=live)
        if shown is None:
            st.caption("No draft yet. Press **Draft**: the Writer cites your facts, the Verifier checks each sentence.")
            return
        if accept:
            act(lambda w: ms.accept_version(w, tenant_id=ident.tenant_id, paragraph_id=pid, version_id=shown.id))
        if edit:
            st.session_state[_key("editing", pid)] = shown.id
        if st.session_state.get(_key("editing", pid)) == shown.id:
            _edit_form(pid, shown, blocked)
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


def _edit_form(pid: int, version: ParagraphVersion, blocked: str | None) -> None:
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
            save = st.form_submit_button("Save and verify", type="primary", disabled=blocked is not None)
            cancel = st.form_submit_button("Cancel")
        if blocked:
            st.caption(f":material/block: {blocked}")
    if cancel:
        st.session_state.pop(_key("editing", pid), None)
        st.rerun()
    if save:
        sentences = [[text, cites] for text, cites in rows if text]
        if start_job("edit", {"paragraph_id": pid, "sentences": sentences}, track=_key("jobs", pid)):
            st.rerun()


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


def render_key_warning() -> None:
    """Above every page while trace content is sealed with the generated development key."""
    from core import crypto

    settings = get_settings()
    try:
        ring = crypto.key_ring(settings)
    except WorkbenchError as error:
        st.error(f"Trace content cannot be encrypted: {error}", icon=":material/key_off:")
        return
    if ring.development:
        st.warning(
            f"Trace content is encrypted with a development key kept in `{settings.data_dir / crypto.DEV_KEY_FILE}`; "
            "anyone who can read that file can read the traces. For real use, make a key with "
            "`python -m core keys new`, set `WORKBENCH_ENCRYPTION_KEYS=new-id:key,"
            f"{ring.active_id}:<the key in that file>` and run `python -m core keys rotate`.",
            icon=":material/key:",
        )


def render_alert_banner() -> None:
    """Above every page while an alert of this workspace is firing (one indexed count)."""
    from core import alerts

    ident = identity()
    with session() as s:
        firing = alerts.firing_count(s, tenant_id=ident.tenant_id)
    if firing:
        st.warning(
            f"{firing} alert{'s' if firing != 1 else ''} firing in this workspace: see Operations, Alerts and SLOs.",
            icon=":material/notifications_active:",
        )
