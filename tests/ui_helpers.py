"""Shared by the page and browser tests: a small real PDF and a seeded, drafted manuscript."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from core import accounts, authz, db, pages_spec
from core.demo_corpus import DEMO_BRIEFS, demo_pdfs
from core.errors import NotFoundError
from core.manuscripts import add_paragraph, create_manuscript
from core.pipeline import draft_paragraph
from core.sources import add_source
from core.tenancy import Identity, bootstrap

APP = Path(__file__).resolve().parent.parent / "app.py"
PAGES = tuple(spec.path for spec in pages_spec.PAGES)

PDF_NAME = "okafor-2022-biochar-leaching.pdf"
BRIEF = DEMO_BRIEFS[0]
"""About nitrate leaching: the first demo paper alone can support it."""


def paper_pdf() -> bytes:
    """The first demo paper (biochar and nitrate leaching), a real multi-page PDF."""
    return demo_pdfs()[0][1]


@dataclass(frozen=True)
class Seeded:
    identity: Identity
    manuscript_id: int
    paragraph_id: int
    version_id: int


def seed_drafted(engine: Engine, *, title: str = "Seeded manuscript") -> Seeded:
    """A manuscript with one ingested PDF and one drafted paragraph, through the real core."""
    with db.session_scope(engine) as s:
        ident = bootstrap(s)
        manuscript = create_manuscript(s, tenant_id=ident.tenant_id, title=title, user_id=ident.user_id)
    with db.session_scope(engine) as s:
        add_source(
            s,
            identity=ident,
            manuscript_id=manuscript.id,
            filename=PDF_NAME,
            data=paper_pdf(),
            progress=lambda _f, _m: None,
        )
    with db.session_scope(engine) as s:
        paragraph = add_paragraph(s, tenant_id=ident.tenant_id, manuscript_id=manuscript.id, brief=BRIEF)
    with db.session_scope(engine) as s:
        version = draft_paragraph(s, tenant_id=ident.tenant_id, user_id=ident.user_id, paragraph_id=paragraph.id)
    return Seeded(ident, manuscript.id, paragraph.id, version.id)


def role_user(engine: Engine, role: str = "admin") -> Identity:
    """A signed-in-able user with ``role`` in the default tenant: ``<role>@localhost``, created through
    ``core.accounts`` on first use (``researcher@localhost`` is the bootstrap user)."""
    with db.session_scope(engine) as s:
        tenant_id = bootstrap(s).tenant_id
        email = f"{role}@localhost"
        try:
            user_id = accounts.user_id_by_email(s, email=email)
        except NotFoundError:
            name = role.replace("_", " ").capitalize()
            by = authz.cli_identity(tenant_id)
            accounts.create_user(s, by=by, tenant_id=tenant_id, email=email, display_name=name, role=role)
            user_id = accounts.user_id_by_email(s, email=email)
        return accounts.identity_of(s, user_id=user_id)


def session_token(engine: Engine, *, role: str = "admin", identity: Identity | None = None) -> str:
    """A live sign-in token for ``identity``'s user, or for the ``role`` user of the default tenant."""
    return accounts.start_session(engine, identity or role_user(engine, role))


MakeApp = Callable[..., AppTest]
"""The ``make_app`` fixture (conftest): ``make_app("pages/write.py", role="ops")`` gives a run AppTest
on that page, signed in as that role's user of the default tenant (admin unless said otherwise), or
as ``identity=``'s user."""
