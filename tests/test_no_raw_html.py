"""Nothing user-supplied is rendered as raw HTML: no page or helper may turn HTML on, and hostile
titles, file names and briefs reach every page's markdown escaped."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from sqlalchemy import Engine

from core import db
from core.manuscripts import add_paragraph, create_manuscript
from core.tenancy import bootstrap
from tests.test_isolation_pages import _walk
from tests.ui_helpers import PAGES, MakeApp

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = '<img src=x onerror="alert(1)"> **bold** [click](http://evil.example) <script>alert(2)</script>'
RAW = re.compile(r"(?<!\\)<(img|script)|(?<!\\)\]\(http")
"""What would become live HTML or a live link if it reached markdown unescaped (not backslash-escaped)."""


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


def test_hostile_titles_and_briefs_reach_every_page_escaped(clean_db: Engine, make_app: MakeApp) -> None:
    with db.session_scope(clean_db) as s:
        ident = bootstrap(s)
        manuscript = create_manuscript(s, tenant_id=ident.tenant_id, title=HOSTILE, user_id=ident.user_id)
    with db.session_scope(clean_db) as s:
        add_paragraph(s, tenant_id=ident.tenant_id, manuscript_id=manuscript.id, brief=HOSTILE)
    at = make_app()
    shown_somewhere = False
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        for node in _walk(at._tree):
            proto = getattr(node, "proto", None)
            body = str(getattr(proto, "body", "")) if proto is not None else ""
            if "onerror" in body or "evil.example" in body:
                shown_somewhere = True
                assert not RAW.search(body), f"{page} renders user text as markdown/HTML: {body[:120]}"
    assert shown_somewhere, "the hostile title was shown in markdown on some page (the check saw it)"
