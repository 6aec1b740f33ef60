"""Nothing user-supplied is rendered as raw HTML: no page or helper may turn HTML on, and hostile
values reach every page's markdown escaped, for every role that can open the page.

The hostile values are everything a user can supply: manuscript titles and paragraph briefs, an
uploaded PDF's file name, the text of the PDF itself (its title line, and sentences that become
facts, verbatim quotes and drafted sentences), user display names and e-mails, workspace names,
API token names, the kill switch's reason, an alert rule's and a routing version's author and note,
and a false-support report's note.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from core import accounts, alerts, api_tokens, authz, controls, db, pages_spec, routing, ui
from core.documents import list_documents
from core.facts import list_facts
from core.false_supports import report_false_support, reportable_sentences
from core.manuscripts import add_paragraph, create_manuscript, list_manuscripts, list_versions
from core.pipeline import draft_paragraph
from core.settings import get_settings
from core.sources import add_source
from core.tenancy import Identity, bootstrap
from tests.pdf_factory import lines_pdf
from tests.test_pages import settle
from tests.ui_helpers import MakeApp

ROOT = Path(__file__).resolve().parent.parent
MARK = "hostile"
"""Every seeded value carries ``hostile<field>`` (letters only, so escaping leaves it as it is)."""


def hostile(field: str) -> str:
    """A value that would be live HTML, a live link and bold text if it reached markdown unescaped."""
    return (
        f'<img src=x onerror="alert(1)"> **{MARK}{field}** [click](javascript:alert(1)) '
        f"[x](http://evil.example) <script>alert(2)</script>"
    )


def hostile_email(role: str) -> str:
    """An e-mail address (no spaces, one @) that is markup too."""
    return f"<img/src=x/onerror=alert(1)>[x](javascript:alert(1)){MARK}mail{role.replace('_', '')}@evil.example"


HOSTILE_FILE = "<img src=x onerror=alert(1)>[x](javascript:alert(1)) hostilefile.pdf"
BAD_FILE = "<script>alert(6)</script>[x](javascript:alert(6)) hostilebadfile.pdf"
HOSTILE_MODEL = "http://evil.example/hostilemodel"
"""A model id is ``[\\w.:/@+-]``: no tags or brackets, but a bare URL GFM would turn into a link."""
HOSTILE_PDF_LINES = [
    "<script>alert(3)</script> **hostilepdftitle** [t](javascript:alert(3))",
    "Biochar reduced nitrate leaching by 34% in sandy plots <img src=x onerror=alert(4)> **hostilequote** "
    "[click](javascript:alert(4)) <script>alert(4)</script> over two seasons.",
    "Maize grain yield increased by 12% under biochar <img src=x onerror=alert(5)> [y](http://evil.example) "
    "hostilequotetwo compared with unamended control plots.",
]
"""A real PDF's lines: a title, and two statements the Librarian takes as facts, markup and all."""

RAW = re.compile(r"(?<!\\)<(?:img|script)|(?<!\\)\]\(|javascript:|https?://|(?<!\\)\*\*hostile", re.IGNORECASE)
"""What would become live HTML, a live link (markdown or a bare URL GFM links by itself) or bold text
if a seeded value reached markdown unescaped: escaped, every one of these characters is backslashed."""
SEEDED = re.compile(rf"{MARK}[a-z]+", re.IGNORECASE)
PLAIN = {"text", "code", "json", "arrow_data_frame", "plotly_chart", "exception"}
"""Element kinds Streamlit shows as plain text or data, never as markdown."""
MARKDOWN_FIELDS = {"body", "label", "help", "captions"}
"""Proto fields Streamlit renders as markdown: bodies (markdown, captions, alerts, badges, toasts) and
the labels, help texts and captions of widgets, expanders, popovers, tabs, metrics and page links."""


def _sources() -> list[Path]:
    return [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "core").rglob("*.py"))]


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_code_turns_html_rendering_on(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "unsafe_allow_html":
            pytest.fail(f"{path.name}:{node.value.lineno} passes unsafe_allow_html")
        if (
            isinstance(node, ast.Attribute)
            and node.attr == "html"
            and getattr(node.value, "id", "") in ("st", "components")
        ):
            pytest.fail(f"{path.name}:{node.lineno} renders raw HTML with {node.value.id}.html")  # type: ignore[attr-defined]


def _walk(node: Any) -> Iterator[Any]:
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def _strings(message: Any) -> Iterator[tuple[str, str]]:
    """Every (field name, string) of a proto message, nested messages and repeated fields included."""
    for descriptor, value in message.ListFields():
        repeated = not isinstance(value, str | bytes) and hasattr(value, "__len__") and not hasattr(value, "ListFields")
        items = list(value) if repeated else [value]
        for item in items:
            if hasattr(item, "ListFields"):
                yield from _strings(item)
            elif isinstance(item, str):
                yield descriptor.name, item


def markdown_shown(at: AppTest) -> list[str]:
    """Every string the page hands to Streamlit's markdown renderer."""
    out: list[str] = []
    for node in _walk(at._tree):
        proto = getattr(node, "proto", None)
        if proto is None or getattr(node, "type", "") in PLAIN:
            continue
        out.extend(value for name, value in _strings(proto) if name in MARKDOWN_FIELDS)
    return out


def everything_shown(at: AppTest) -> str:
    """All a page shows, plain text, options and table cells included (to see which values reached it)."""
    out = []
    for node in _walk(at._tree):
        proto = getattr(node, "proto", None)
        if proto is not None:
            out.append(str(proto))
        value = getattr(node, "value", None) if getattr(node, "type", "") == "arrow_data_frame" else None
        if value is not None and hasattr(value, "to_csv"):
            out.append(value.to_csv())
    return "\n".join(out)


def check_escaped(at: AppTest, where: str) -> set[str]:
    """Assert no markdown on the page carries a seeded value unescaped; return the values it carries."""
    assert not at.exception, (where, at.exception)
    seen = set()
    for body in markdown_shown(at):
        tags = {t.lower() for t in SEEDED.findall(body)}
        if tags:
            seen |= tags
            raw = RAW.search(body)
            assert raw is None, f"{where} renders {sorted(tags)} as live markdown/HTML ({raw.group(0)!r}): {body[:300]}"
    return seen


@pytest.mark.parametrize(
    "value", [hostile("x"), hostile_email("admin"), HOSTILE_FILE, *HOSTILE_PDF_LINES, HOSTILE_MODEL]
)
def test_the_check_tells_a_seeded_value_from_its_escaped_form(value: str) -> None:
    assert RAW.search(value), "as given, the value is live markup"
    assert not RAW.search(ui.md_escape(value)), "escaped with core.ui.md_escape, it is not"


@dataclass(frozen=True)
class HostileWorld:
    users: dict[str, Identity]
    """One account of each role in the hostile workspace, each named and addressed with markup."""
    manuscript_id: int
    paragraph_id: int


def seed_hostile(engine: Engine) -> HostileWorld:
    """A workspace where every free-text field holds markup, filled through the real core."""
    with db.session_scope(engine) as s:
        cli = authz.cli_identity(bootstrap(s).tenant_id)
        tenant_id = accounts.create_tenant(s, by=cli, slug="hostile", name=hostile("tenant"))
        for role in authz.ROLES:
            accounts.create_user(
                s,
                by=cli,
                tenant_id=tenant_id,
                email=hostile_email(role),
                display_name=hostile("name" + role.replace("_", "")),
                role=role,
            )
        users = {
            role: accounts.identity_of(s, user_id=accounts.user_id_by_email(s, email=hostile_email(role)))
            for role in authz.ROLES
        }
    researcher, admin = users[authz.RESEARCHER], users[authz.ADMIN]
    with db.session_scope(engine) as s:
        manuscript = create_manuscript(s, tenant_id=tenant_id, title=hostile("title"), user_id=researcher.user_id)
    with db.session_scope(engine) as s:
        add_source(
            s,
            identity=researcher,
            manuscript_id=manuscript.id,
            filename=HOSTILE_FILE,
            data=lines_pdf([HOSTILE_PDF_LINES]),
        )
    with db.session_scope(engine) as s:
        paragraph = add_paragraph(s, tenant_id=tenant_id, manuscript_id=manuscript.id, brief=hostile("brief"))
    with db.session_scope(engine) as s:
        draft_paragraph(s, tenant_id=tenant_id, user_id=researcher.user_id, paragraph_id=paragraph.id)
    with db.session_scope(engine) as s:
        for who in users.values():
            api_tokens.create(s, by=who, name=hostile("token"))
        first = alerts.rule_settings(s, tenant_id=tenant_id)[0]  # the one the Operations page shows first
        alerts.update_rule(
            s, tenant_id=tenant_id, rule=first.name, enabled=first.enabled, threshold=first.threshold, actor=admin
        )
        current = routing.current_config(s, tenant_id=tenant_id, settings=get_settings())
        routing.save_config(
            s, tenant_id=tenant_id, config=current.config, actor=admin, note=hostile("routing"), settings=get_settings()
        )
        reportable = reportable_sentences(s, tenant_id=tenant_id, manuscript_id=manuscript.id)
        assert reportable, "the hostile PDF's facts support a drafted sentence"
        report_false_support(
            s,
            tenant_id=tenant_id,
            user_id=researcher.user_id,
            sentence_check_id=reportable[0].sentence_check_id,
            note=hostile("report"),
        )
    controls.set_kill_switch(engine, engaged=True, reason=hostile("killswitch"), actor=admin)
    return HostileWorld(users, manuscript.id, paragraph.id)


def test_the_hostile_pdf_reaches_facts_quotes_and_sentences_with_its_markup(clean_db: Engine) -> None:
    """The walk below proves something only if the markup survived ingest and drafting."""
    world = seed_hostile(clean_db)
    tenant_id = world.users[authz.RESEARCHER].tenant_id
    with db.session_scope(clean_db) as s:
        [document] = list_documents(s, tenant_id=tenant_id, manuscript_id=world.manuscript_id)
        facts = list_facts(s, tenant_id=tenant_id, manuscript_id=world.manuscript_id)
        [version] = list_versions(s, tenant_id=tenant_id, paragraph_id=world.paragraph_id)
        sentences = [sentence.text for sentence in version.sentences]
    assert document.filename == HOSTILE_FILE
    assert "<script>" in (document.title or ""), document.title
    assert any("<img" in f.quote and "hostilequote" in f.quote for f in facts), [f.quote for f in facts]
    assert any("<img" in text and "hostilequote" in text for text in sentences), sentences


@pytest.mark.parametrize("role", authz.ROLES)
def test_hostile_values_reach_every_page_of_every_role_escaped(clean_db: Engine, make_app: MakeApp, role: str) -> None:
    world = seed_hostile(clean_db)
    pages = pages_spec.pages_for(role)
    at = make_app(identity=world.users[role])
    seen = check_escaped(at, f"{role} start page")  # only the start page keeps the sidebar in AppTest
    shown = everything_shown(at)
    for page in pages:
        at.switch_page(page.path).run()
        seen |= check_escaped(at, f"{page.path} as {role}")
        shown += everything_shown(at)
    short = role.replace("_", "")
    # What every role sees in markdown: who is signed in, their workspace, the kill switch's reason.
    assert {f"{MARK}name{short}", f"{MARK}mail{short}", f"{MARK}tenant", f"{MARK}killswitch"} <= seen, sorted(seen)
    expected_md = {  # and in each role's markdown, what its pages show of the rest
        authz.RESEARCHER: {"brief", "file", "pdftitle", "quote", "quotetwo", "nameadmin"},
        authz.OPS: {"nameadmin", "routing"},  # the alert rule and the routing version the admin saved
        authz.PROMPT_ENGINEER: {"brief", "file", "pdftitle", "quote", "routing"},
        authz.ADMIN: {"brief", "file", "pdftitle", "quote", "quotetwo", "routing"},
    }[role]
    assert {MARK + t for t in expected_md} <= seen, sorted(seen)
    # Shown as plain text or table cells (safe by construction), but shown: the walk reached them.
    for field in ("title", "token"):
        assert MARK + field in shown, (role, field)


def test_hostile_file_names_uploaded_on_the_write_page_are_escaped(clean_db: Engine, make_app: MakeApp) -> None:
    """Through the real uploader: the name is accepted as it is (a file name is the user's to choose)
    and shown escaped while queued, in the report of what was added and in the failure of a bad file."""
    with db.session_scope(clean_db) as s:
        ident = bootstrap(s)
        create_manuscript(s, tenant_id=ident.tenant_id, title=hostile("title"), user_id=ident.user_id)
    at = make_app("pages/write.py")
    at.file_uploader[0].set_value(
        [
            (HOSTILE_FILE, lines_pdf([HOSTILE_PDF_LINES]), "application/pdf"),
            (BAD_FILE, b"this is not a pdf", "application/pdf"),
        ]
    ).run()
    check_escaped(at, "Write, uploads queued")
    settle(at)
    seen = check_escaped(at, "Write, uploads done")
    assert {f"{MARK}file", f"{MARK}badfile"} <= seen, sorted(seen)
    assert any(e.value.startswith(f"{ui.md_escape(BAD_FILE)} was not added:") for e in at.error), at.error
    assert any(m.value.startswith(ui.md_escape(HOSTILE_FILE)) and "facts extracted" in m.value for m in at.success)
    with db.session_scope(clean_db) as s:
        [manuscript_id] = [m.id for m in list_manuscripts(s, tenant_id=ident.tenant_id)]
        assert [d.filename for d in list_documents(s, tenant_id=ident.tenant_id, manuscript_id=manuscript_id)] == [
            HOSTILE_FILE
        ], "the name is kept as given, and only escaped where it is shown"


def test_a_model_id_that_is_a_url_is_not_a_link_in_the_saved_message(clean_db: Engine, make_app: MakeApp) -> None:
    at = make_app("pages/models.py")
    at.text_input(key="models_new_model").input(HOSTILE_MODEL)
    at.text_input(key="models_new_provider").input("openai")
    at.button(key="FormSubmitter:models_new_register-Save model").click().run()
    seen = check_escaped(at, "Models, saved")
    assert f"{MARK}model" in seen, [m.value for m in at.success] + [e.value for e in at.error]
