"""Tenant isolation in the browser: every page each role may open, as tenant B's user, shows nothing
of tenant A's (content, trace ids, job ids), also when a link names A's trace."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from core import accounts, authz, db, pages_spec
from core.tenancy import Identity
from tests.isolation_probe import leaks
from tests.test_isolation import World, world  # noqa: F401  (the fixture)
from tests.ui_helpers import MakeApp

CROSS_TENANT_METADATA = {"pages/audit.py", "pages/users.py", "pages/api_tokens.py"}
"""Pages that show admins other tenants' metadata (never content) by design."""


def _walk(node: Any) -> Iterator[Any]:
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def shown(at: AppTest) -> list[str]:
    """Everything a page shows: text, labels, options and every cell of every table."""
    out: list[str] = []
    for node in _walk(at._tree):
        for attr in ("value", "label", "body", "options", "placeholder", "help"):
            try:
                value = getattr(node, attr, None)
            except (AttributeError, KeyError, TypeError, ValueError, IndexError):
                continue  # AppTest nodes raise for attributes their element kind lacks
            if isinstance(value, str):
                out.append(value)
            elif isinstance(value, list | tuple):
                out.extend(str(v) for v in value)
            elif hasattr(value, "to_csv"):
                out.append(value.to_csv())
        proto = getattr(node, "proto", None)
        if proto is not None and getattr(node, "type", "") not in ("arrow_data_frame", "plotly_chart"):
            out.append(str(proto))
    return out


def b_user(engine: Engine, w: World, role: str) -> Identity:
    with db.session_scope(engine) as s:
        accounts.create_user(
            s,
            by=authz.cli_identity(w.b.tenant_id),
            tenant_id=w.b.tenant_id,
            email=f"{role}@beta.example",
            display_name=f"Beta {role}",
            role=role,
            password="correct horse battery staple",
        )
        return accounts.identity_of(s, user_id=accounts.user_id_by_email(s, email=f"{role}@beta.example"))


@pytest.mark.parametrize("role", authz.ROLES)
def test_every_page_as_another_tenants_user_shows_nothing_of_theirs(
    world: World,  # noqa: F811
    clean_db: Engine,
    make_app: MakeApp,
    role: str,
) -> None:
    who = b_user(clean_db, world, role)
    pages = pages_spec.pages_for(role)
    assert pages, role
    at = make_app(identity=who)
    seen: list[str] = []
    for page in pages:
        at.switch_page(page.path).run()
        assert not at.exception, (page.path, at.exception)
        # Admins run the whole workbench: the audit log and the user list are workbench-wide for
        # them (ids, names, event types). Content stays in its tenant for everyone.
        wide = page.path in CROSS_TENANT_METADATA and authz.allowed(who, authz.Permission.VIEW_ALL_TENANTS)
        found = leaks(shown(at), world.content + (() if wide else world.run_ids), tenant_id=world.a.tenant_id)
        assert not found, f"{role} on {page.path} sees tenant A's {found[:3]}"
        seen += shown(at)
    assert any("Beta's own manuscript" in text for text in seen), "the walk saw B's own work (it reads the pages)"


def test_a_link_to_another_tenants_trace_shows_nothing(world: World, clean_db: Engine, make_app: MakeApp) -> None:  # noqa: F811
    who = b_user(clean_db, world, "admin")
    at = make_app(identity=who)
    at.query_params["trace"] = world.ids["trace_id"]
    at.switch_page("pages/trajectories.py").run()
    assert not at.exception
    text = "\n".join(shown(at))
    assert not leaks(text, world.content, tenant_id=world.a.tenant_id)
