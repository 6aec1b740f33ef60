"""Every page through Streamlit's AppTest, against the real test database and the real core."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from core import db, jobs, ui
from core.executors import InProcessExecutor, get_executor
from core.manuscripts import add_paragraph, create_manuscript, list_manuscripts, list_versions
from core.models import LlmUsageEvent
from core.pipeline import new_trace_id
from core.settings import get_settings
from core.tenancy import bootstrap
from tests.ui_helpers import BRIEF, PAGES, PDF_NAME, MakeApp, paper_pdf, seed_drafted


def walk(node: Any) -> Iterator[Any]:
    yield node
    for child in getattr(node, "children", {}).values():
        yield from walk(child)


def strings(at: AppTest) -> list[str]:
    """Every piece of text on the page: element values, labels and popover labels."""
    out: list[str] = []
    for node in walk(at._tree):
        if getattr(node, "type", "") == "popover":
            out.append(node.proto.popover.label)
        for attr in ("value", "label", "body"):
            try:
                value = getattr(node, attr, None)
            except (AttributeError, KeyError, TypeError, ValueError):
                continue  # AppTest nodes raise for attributes their element kind lacks
            if isinstance(value, str) and value:
                out.append(value)
    return out


def page_text(at: AppTest) -> str:
    return "\n".join(strings(at))


def popover_labels(at: AppTest) -> list[str]:
    return [n.proto.popover.label for n in walk(at._tree) if getattr(n, "type", "") == "popover"]


def settle(at: AppTest) -> AppTest:
    """Wait until every queued job has ended (the in-process executor runs them on threads), then
    run the page again, as its live job panel would on its next tick."""
    executor = get_executor()
    assert isinstance(executor, InProcessExecutor), "tests run jobs in-process (REDIS_URL unset)"
    executor.drain()
    return at.run()


def button(at: AppTest, label: str) -> Any:
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r}; have {[b.label for b in at.button]}"
    return matches[0]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_an_empty_database(make_app: MakeApp, page: str) -> None:
    at = make_app(page)
    assert at.title, "each page has a title"
    assert not at.exception


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_with_a_drafted_manuscript(make_app: MakeApp, clean_db: Engine, page: str) -> None:
    seed_drafted(clean_db)
    at = make_app(page)
    assert at.title and not at.exception
    assert not at.error, [e.value for e in at.error]


def test_user_text_is_never_markup(make_app: MakeApp, clean_db: Engine) -> None:
    brief = "**Bold** <img src=x onerror=alert(1)> [link](javascript:alert(1)) :red[alarm]"
    with db.session_scope(clean_db) as s:
        ident = bootstrap(s)
        manuscript = create_manuscript(s, tenant_id=ident.tenant_id, title="<b>Title</b>", user_id=ident.user_id)
        add_paragraph(s, tenant_id=ident.tenant_id, manuscript_id=manuscript.id, brief=brief)
    at = make_app("pages/write.py")
    assert f"Brief: {ui.md_escape(brief)}" in [c.value for c in at.caption]
    shown = [m.value for m in [*at.markdown, *at.caption] if "img" in m.value]
    assert shown and all("\\<img" in v and "\\:red\\[" in v for v in shown), "markup characters are escaped"


def test_status_area_names_provider_database_and_job_mode(make_app: MakeApp) -> None:
    # AppTest drops the main script's elements after switch_page, so the frame is checked on the default page.
    at = make_app()
    status = [c.value for c in at.sidebar.caption]
    assert "Provider: local \\(offline, no cost\\)" in status
    assert any(s.startswith(("Database: SQLite", "Database: PostgreSQL")) for s in status)
    assert f"Jobs: in\\-process \\({get_settings().job_workers} threads\\)" in status


def test_no_page_is_left_unbuilt(make_app: MakeApp) -> None:
    at = make_app()
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert not any("Not built yet" in info.value for info in at.info), f"{page} still says it is not built"


def test_navigation_groups_every_page(make_app: MakeApp) -> None:
    at = make_app()
    assert at.title[0].value == "Write", "Write is the default page"
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception


def test_write_creates_the_first_manuscript(make_app: MakeApp, clean_db: Engine) -> None:
    at = make_app("pages/write.py")
    assert "Start with a manuscript" in page_text(at)
    at.text_input[0].input("Protein folding review")
    at.button(key="FormSubmitter:write_new_manuscript-Create manuscript").click().run()
    assert not at.exception
    with db.session_scope(clean_db) as s:
        ident = bootstrap(s)
        titles = [m.title for m in list_manuscripts(s, tenant_id=ident.tenant_id)]
    assert titles == ["Protein folding review"]
    assert at.selectbox(key="write_manuscript_id").value == at.session_state["write_manuscript_id"]
    assert "Sources" in [h.value for h in at.subheader]


def test_write_second_manuscript_becomes_the_selection(make_app: MakeApp, clean_db: Engine) -> None:
    with db.session_scope(clean_db) as s:
        ident = bootstrap(s)
        create_manuscript(s, tenant_id=ident.tenant_id, title="First", user_id=ident.user_id)
    at = make_app("pages/write.py")
    next(t for t in at.text_input if t.label == "Title").input("Second")
    at.button(key="FormSubmitter:write_new_manuscript-Create manuscript").click().run()
    assert not at.exception, at.exception
    with db.session_scope(clean_db) as s:
        second = next(m.id for m in list_manuscripts(s, tenant_id=ident.tenant_id) if m.title == "Second")
    picker = at.selectbox(key="write_manuscript_id")
    assert picker.options == ["First", "Second"]
    assert picker.value == second


def test_write_edits_a_brief(make_app: MakeApp, clean_db: Engine) -> None:
    seeded = seed_drafted(clean_db)
    at = make_app("pages/write.py")
    at.text_area(key=f"write_brief_{seeded.paragraph_id}").input("Only the loamy-soil result.")
    at.button(key=f"FormSubmitter:write_brief_form_{seeded.paragraph_id}-Save brief").click().run()
    assert not at.exception, at.exception
    assert "Brief: Only the loamy\\-soil result\\." in [c.value for c in at.caption]


def test_write_rejects_an_empty_title(make_app: MakeApp) -> None:
    at = make_app("pages/write.py")
    at.button(key="FormSubmitter:write_new_manuscript-Create manuscript").click().run()
    assert [e.value for e in at.error] == [ui.md_escape("Give the manuscript a title.")]


def test_write_shows_sentences_verdicts_and_cited_quotes(make_app: MakeApp, clean_db: Engine) -> None:
    seeded = seed_drafted(clean_db)
    at = make_app("pages/write.py")
    text = page_text(at)
    with db.session_scope(clean_db) as s:
        version = list_versions(s, tenant_id=seeded.identity.tenant_id, paragraph_id=seeded.paragraph_id)[0]
        sentences = [(sc.text, list(sc.cites), sc.verdict) for sc in version.sentences]
    assert sentences, "the seeded draft has sentences"
    for sentence, cites, verdict in sentences:
        assert sentence in text
        for ref in cites:
            assert ref in popover_labels(at)
        assert ("Supported" if verdict == "supported" else "Needs review") in text
    assert "Documents · 1" in text
    # The citation chip opens the fact with its verbatim quote, document name and page.
    assert "Verbatim quote" in text
    assert any(t.startswith("“") for t in (e.value for e in at.text)), "the quote is shown"
    assert f"{ui.md_escape(PDF_NAME)}, page" in text


def test_write_uploads_a_pdf_and_reports_a_bad_one(make_app: MakeApp, clean_db: Engine) -> None:
    with db.session_scope(clean_db) as s:
        ident = bootstrap(s)
        create_manuscript(s, tenant_id=ident.tenant_id, title="Uploads", user_id=ident.user_id)
    at = make_app("pages/write.py")
    at.file_uploader[0].set_value(
        [("broken.pdf", b"this is not a pdf", "application/pdf"), ("paper.pdf", paper_pdf(), "application/pdf")]
    ).run()
    assert not at.exception, at.exception
    settle(at)
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("broken\\.pdf was not added:"), errors
    assert any("paper\\.pdf" in s.value and "facts extracted" in s.value for s in at.success)
    assert "Documents · 1" in page_text(at)


def test_queue_upload_turns_a_bad_file_into_a_failed_job(session: Any, identity: Any, clean_db: Engine) -> None:
    manuscript = create_manuscript(session, tenant_id=identity.tenant_id, title="Direct", user_id=identity.user_id)
    session.commit()
    queued = {
        name: ui.queue_upload(
            clean_db,
            identity=identity,
            manuscript_id=manuscript.id,
            filename=name,
            data=data,
            trace_id=new_trace_id(),
        )
        for name, data in (("x.pdf", b"%PDF-1.4 garbage"), ("paper.pdf", paper_pdf()))
    }
    executor = get_executor()
    assert isinstance(executor, InProcessExecutor)
    executor.drain()
    bad = jobs.status(clean_db, tenant_id=identity.tenant_id, job_id=queued["x.pdf"])
    assert bad.state == jobs.FAILED and bad.error
    good = jobs.status(clean_db, tenant_id=identity.tenant_id, job_id=queued["paper.pdf"])
    assert good.state == jobs.SUCCEEDED and good.result and good.result["facts_added"] > 0


def test_write_adds_and_drafts_a_paragraph(make_app: MakeApp, clean_db: Engine) -> None:
    with db.session_scope(clean_db) as s:
        ident = bootstrap(s)
        create_manuscript(s, tenant_id=ident.tenant_id, title="Drafting", user_id=ident.user_id)
    at = make_app("pages/write.py")
    settle(at.file_uploader[0].set_value(("paper.pdf", paper_pdf(), "application/pdf")).run())
    brief = next(t for t in at.text_area if t.label == "Brief for a new paragraph")
    brief.input(BRIEF)
    at.button(key="FormSubmitter:write_new_paragraph-Add paragraph").click().run()
    assert "Paragraph 1" in page_text(at)
    button(at, "Draft").click().run()
    assert not at.exception, at.exception
    settle(at)
    assert not at.exception, at.exception
    text = page_text(at)
    assert "Version 1" in text
    assert popover_labels(at), "drafted sentences cite facts"
    assert "Supported" in text or "Needs review" in text


def test_write_edit_saves_a_new_verified_version_and_history_lists_both(make_app: MakeApp, clean_db: Engine) -> None:
    seeded = seed_drafted(clean_db)
    at = make_app("pages/write.py")
    button(at, "Edit").click().run()
    first = at.text_area(key=f"write_etext_{seeded.paragraph_id}_{seeded.version_id}_1")
    with db.session_scope(clean_db) as s:
        version = list_versions(s, tenant_id=seeded.identity.tenant_id, paragraph_id=seeded.paragraph_id)[0]
        original = version.sentences[0]
        kept_text, kept_cites = original.text, list(original.cites)
    assert first.value == kept_text
    at.button(key=f"FormSubmitter:write_edit_form_{seeded.paragraph_id}_{seeded.version_id}-Save and verify").click()
    settle(at.run())
    assert not at.exception, at.exception
    with db.session_scope(clean_db) as s:
        versions = list_versions(s, tenant_id=seeded.identity.tenant_id, paragraph_id=seeded.paragraph_id)
        assert [v.number for v in versions] == [2, 1]
        assert versions[0].origin == "edited"
        assert versions[0].sentences[0].text == kept_text and list(versions[0].sentences[0].cites) == kept_cites
    text = page_text(at)
    assert "Version 2" in text and "History · 2 versions" in text
    # View the older version from history.
    button(at, "View").click().run()
    assert "You are viewing an older version (latest is 2)." in [i.value for i in at.info]


def test_write_edit_that_breaks_a_number_needs_review(make_app: MakeApp, clean_db: Engine) -> None:
    seeded = seed_drafted(clean_db)
    at = make_app("pages/write.py")
    button(at, "Edit").click().run()
    prefix = f"write_etext_{seeded.paragraph_id}_{seeded.version_id}_"
    numbered = next(t for t in at.text_area if (t.key or "").startswith(prefix) and "23%" in t.value)
    numbered.input(numbered.value.replace("23%", "32%"))
    at.button(key=f"FormSubmitter:write_edit_form_{seeded.paragraph_id}_{seeded.version_id}-Save and verify").click()
    settle(at.run())
    assert not at.exception, at.exception
    with db.session_scope(clean_db) as s:
        latest = list_versions(s, tenant_id=seeded.identity.tenant_id, paragraph_id=seeded.paragraph_id)[0]
        assert latest.status == "needs_review"
        failed = next(sc for sc in latest.sentences if sc.verdict != "supported")
        mode, reason = failed.failure_mode, failed.reason
    text = page_text(at)
    assert mode and f"Needs review · {mode.replace('_', ' ')}" in text
    assert f"Why: {ui.md_escape(reason)}" in [c.value for c in at.caption]
    assert button(at, "Accept").disabled, "a version that needs review cannot be accepted"


def test_write_draft_without_sources_explains_and_records_a_failed_job(make_app: MakeApp, clean_db: Engine) -> None:
    with db.session_scope(clean_db) as s:
        ident = bootstrap(s)
        manuscript = create_manuscript(s, tenant_id=ident.tenant_id, title="No sources", user_id=ident.user_id)
        add_paragraph(s, tenant_id=ident.tenant_id, manuscript_id=manuscript.id, brief="Say anything.")
    at = make_app("pages/write.py")
    settle(button(at, "Draft").click().run())
    assert not at.exception, at.exception
    assert any("no facts yet" in e.value for e in at.error), [e.value for e in at.error]
    at.switch_page("pages/operations.py").run()
    table = next(d.value for d in at.dataframe if {"Kind", "Error"} <= set(d.value.columns))
    assert list(table["Kind"]) == ["draft"] and list(table["State"]) == ["FAILED"]
    assert "no facts yet" in table["Error"][0]


def test_write_accept_only_for_verified_versions(make_app: MakeApp, clean_db: Engine) -> None:
    seeded = seed_drafted(clean_db)
    at = make_app("pages/write.py")
    with db.session_scope(clean_db) as s:
        verified = list_versions(s, tenant_id=seeded.identity.tenant_id, paragraph_id=seeded.paragraph_id)[0].verified
    accept = button(at, "Accept")
    assert accept.disabled is (not verified)
    if verified:
        accept.click().run()
        assert "Accepted" in [b.label for b in at.button]


def test_write_reverify_creates_a_version(make_app: MakeApp, clean_db: Engine) -> None:
    seeded = seed_drafted(clean_db)
    at = make_app("pages/write.py")
    settle(button(at, "Re-verify").click().run())
    assert not at.exception, at.exception
    with db.session_scope(clean_db) as s:
        versions = list_versions(s, tenant_id=seeded.identity.tenant_id, paragraph_id=seeded.paragraph_id)
    assert len(versions) >= 1
    assert f"Version {versions[0].number}" in page_text(at)


def test_verification_page_shows_rates_and_verdicts(make_app: MakeApp, clean_db: Engine) -> None:
    seed_drafted(clean_db)
    at = make_app("pages/verification.py")
    labels = [m.label for m in at.metric]
    assert "Sentence support rate" in labels and "Paragraph verification rate" in labels
    assert at.dataframe, "the table of sentence verdicts"
    table = at.dataframe[0].value
    assert len(table) >= 1 and {"Sentence", "Verdict", "Failure mode", "Manuscript"} <= set(table.columns)
    at.multiselect(key="verification_verdicts").set_value(["supported"]).run()
    assert not at.exception
    assert set(at.dataframe[0].value["Verdict"]) <= {"supported"}


def test_costs_page_counts_usage_events_of_this_tenant_only(make_app: MakeApp, clean_db: Engine) -> None:
    seed_drafted(clean_db)
    with db.session_scope(clean_db) as s:
        calls = s.query(LlmUsageEvent).count()
    at = make_app("pages/costs.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Agent calls"] == f"{calls:,}"


def test_escape_keeps_markdown_inert() -> None:
    assert ui.md_escape("**bold** [x](http://e) <b>") == r"\*\*bold\*\* \[x\]\(http\://e\) \<b\>"
    assert ui.md_escape(":red[alarm]\n# title") == r"\:red\[alarm\] \# title"
