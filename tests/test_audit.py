"""The audit log on the real database: the chain holds over many entries and concurrent writers,
tampering with any column or row is named by ``audit verify`` (core and CLI), search is scoped by
role and tenant, exports filter and are themselves audited, the access review says who can see what
and who looked at what, and the Audit log page works by role."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import Session

from core import audit, authz, db
from core.cli import main
from core.errors import PermissionDeniedError
from core.models import AuditEntry, User, utcnow
from core.tenancy import Identity, create_tenant
from core.trajectories import get_trace
from tests.test_trajectories import SpanSpec, add_run, ring
from tests.ui_helpers import MakeApp

_A = AuditEntry.__table__


def who(ident: Identity, role: str, name: str | None = None) -> Identity:
    return Identity(
        tenant_id=ident.tenant_id, user_id=ident.user_id, role=role, name=name or f"{role} of {ident.tenant_id}"
    )


def append(engine: Engine, event_type: str, *, actor: Identity | None, tenant_id: int | None, **kw: Any) -> int:
    with engine.begin() as connection:
        return audit.record(connection, event_type, actor=actor, tenant_id=tenant_id, **kw)


def chain(engine: Engine, ident: Identity, n: int) -> None:
    """``n`` mixed entries: several types, tenants and actors, nested and non-ASCII details."""
    kinds = [audit.LOGIN, audit.ROUTING_CHANGED, audit.KILL_SWITCH, audit.TRACE_VIEWED, audit.EXPORT]
    for i in range(n):
        append(
            engine,
            kinds[i % len(kinds)],
            actor=None if i % 7 == 0 else who(ident, authz.OPS, f"Ops Ünal {i} <ops@lab>"),
            tenant_id=None if i % 3 == 0 else ident.tenant_id,
            subject=f"subject {i}",
            details={"i": i, "nested": {"list": [1, 2.5, "drei"], "none": None}, "text": "µg/L → 23 %"},
        )


def verify(engine: Engine, batch: int = 5_000) -> audit.ChainReport:
    with engine.connect() as connection:
        return audit.verify(connection, batch=batch)


def seqs(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        return list(connection.scalars(select(_A.c.seq).order_by(_A.c.seq)))


def row(engine: Engine, seq: int) -> Any:
    with engine.connect() as connection:
        return connection.execute(select(_A).where(_A.c.seq == seq)).one()


# -- the chain holds -------------------------------------------------------------------------------


def test_a_long_chain_of_mixed_entries_verifies_in_batches(clean_db: Engine, identity: Identity) -> None:
    assert verify(clean_db).intact and verify(clean_db).checked == 0  # an empty log holds
    chain(clean_db, identity, 240)
    for batch in (1, 7, 5_000):
        report = verify(clean_db, batch=batch)
        assert report.intact and report.checked == 240, (batch, report)
    assert seqs(clean_db) == list(range(1, 241))
    first = row(clean_db, 1)
    assert first.prev_hash == audit.GENESIS and first.actor == "workbench" and first.actor_user_id is None
    assert row(clean_db, 2).details["text"] == "µg/L → 23 %" and row(clean_db, 2).prev_hash == first.hash


def test_concurrent_appenders_never_fork_the_chain(clean_db: Engine, identity: Identity) -> None:
    threads, each, errors = 6, 15, []

    def writer(number: int) -> None:
        try:
            for i in range(each):
                append(clean_db, audit.LOGIN, actor=None, tenant_id=identity.tenant_id, subject=f"t{number}-{i}")
        except Exception as error:  # collected and asserted on below: a thread's error must fail the test
            errors.append(error)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert seqs(clean_db) == list(range(1, threads * each + 1))
    report = verify(clean_db)
    assert report.intact and report.checked == threads * each
    with clean_db.connect() as connection:
        links = connection.execute(select(func.count(func.distinct(_A.c.prev_hash)))).scalar()
    assert links == threads * each, "every entry links to a different predecessor: no fork"


# -- tampering is named --------------------------------------------------------------------------------

MIDDLE = 5


TAMPER: dict[str, Any] = {
    "at": lambda v: v + timedelta(microseconds=1),
    "tenant_id": lambda v: (v or 0) + 1000,
    "actor_user_id": lambda v: (v or 0) + 1000,
    "actor": lambda v: "mallory",
    "event_type": lambda v: audit.EXPORT if v == audit.LOGIN else audit.LOGIN,
    "subject": lambda v: v + " (edited)",
    "details": lambda v: {**v, "reason": "nothing to see"},
    "prev_hash": lambda v: "f" * 64,
    "hash": lambda v: "0" * 64,
}
"""A different value for each column of an entry, made from the one it holds."""


@pytest.mark.parametrize("column", list(TAMPER))
def test_changing_any_column_of_one_entry_is_named(clean_db: Engine, identity: Identity, column: str) -> None:
    chain(clean_db, identity, 9)
    current = getattr(row(clean_db, MIDDLE), column)
    with clean_db.begin() as connection:  # straight into the table, as someone with database access would
        connection.execute(update(_A).where(_A.c.seq == MIDDLE).values({column: TAMPER[column](current)}))
    report = verify(clean_db, batch=3)
    assert report.broken_seq == MIDDLE and not report.intact, report
    assert report.checked == MIDDLE - 1
    assert f"entry {MIDDLE}" in report.reason


def test_a_deleted_middle_entry_is_named(clean_db: Engine, identity: Identity) -> None:
    chain(clean_db, identity, 9)
    with clean_db.begin() as connection:
        connection.execute(delete(_A).where(_A.c.seq == MIDDLE))
    report = verify(clean_db)
    assert (report.broken_seq, report.checked) == (MIDDLE, MIDDLE - 1)
    assert report.reason == f"entry {MIDDLE} is missing (found {MIDDLE + 1} after {MIDDLE - 1})"


def test_a_removed_tail_is_named(clean_db: Engine, identity: Identity) -> None:
    chain(clean_db, identity, 9)
    with clean_db.begin() as connection:
        connection.execute(delete(_A).where(_A.c.seq == 9))
    report = verify(clean_db)
    assert report.broken_seq == 9 and report.reason == "entries 9 to 9 were removed"


def _forged(engine: Engine, seq: int, prev_hash: str) -> dict[str, Any]:
    forged = {
        "seq": seq,
        "at": utcnow(),
        "tenant_id": None,
        "actor_user_id": None,
        "actor": "mallory",
        "event_type": audit.KILL_SWITCH,
        "subject": "released",
        "details": {"engaged": False},
        "prev_hash": prev_hash,
    }
    return {**forged, "hash": audit.entry_hash(**forged)}  # a forger who knows the recipe


def test_a_forged_entry_after_the_last_is_named(clean_db: Engine, identity: Identity) -> None:
    chain(clean_db, identity, 9)
    with clean_db.begin() as connection:
        connection.execute(_A.insert().values(**_forged(clean_db, 10, row(clean_db, 9).hash)))
    report = verify(clean_db)
    assert report.broken_seq == 10 and report.reason == "entry 10 was inserted after the chain's last entry"
    assert report.checked == 9


def test_a_forged_entry_in_the_middle_is_named(clean_db: Engine, identity: Identity) -> None:
    chain(clean_db, identity, 9)
    with clean_db.begin() as connection:  # make room at MIDDLE, one row at a time from the end
        for seq in range(9, MIDDLE - 1, -1):
            connection.execute(update(_A).where(_A.c.seq == seq).values(seq=seq + 1))
    naive = {**_forged(clean_db, MIDDLE, row(clean_db, MIDDLE - 1).hash), "hash": "a" * 64}
    with clean_db.begin() as connection:
        connection.execute(_A.insert().values(**naive))
    report = verify(clean_db)
    assert report.broken_seq == MIDDLE and "was changed" in report.reason

    # A forger who computes a valid hash for the inserted row breaks the next link instead.
    with clean_db.begin() as connection:
        connection.execute(update(_A).where(_A.c.seq == MIDDLE).values(hash=audit.entry_hash(
            **{k: v for k, v in naive.items() if k != "hash"}
        )))  # fmt: skip
    report = verify(clean_db)
    assert report.broken_seq == MIDDLE + 1 and report.reason == f"entry {MIDDLE + 1} does not link to entry {MIDDLE}"


def test_cli_audit_verify_exit_codes_and_output(
    clean_db: Engine, identity: Identity, capsys: pytest.CaptureFixture[str]
) -> None:
    chain(clean_db, identity, 12)
    assert main(["audit", "verify"]) == 0
    assert capsys.readouterr().out.strip() == "audit log intact: 12 entries"
    with clean_db.begin() as connection:
        connection.execute(update(_A).where(_A.c.seq == 7).values(actor="someone else"))
    assert main(["audit", "verify", "--batch", "4"]) == 1
    assert capsys.readouterr().out.strip() == "audit log BROKEN at entry 7: entry 7 was changed after it was written"


# -- search is scoped by role and tenant ---------------------------------------------------------------


@pytest.fixture
def two_tenants(clean_db: Engine, identity: Identity) -> tuple[Identity, Identity]:
    with db.session_scope(clean_db) as s:
        other = create_tenant(s, slug="lab-b", name="Lab B")
    append(clean_db, audit.LOGIN, actor=who(identity, authz.OPS, "Ann A"), tenant_id=identity.tenant_id)
    append(clean_db, audit.KILL_SWITCH, actor=who(identity, authz.OPS, "Ann A"), tenant_id=None, subject="engaged")
    append(clean_db, audit.LOGIN, actor=who(other, authz.OPS, "Bob B"), tenant_id=other.tenant_id)
    append(clean_db, audit.ROUTING_CHANGED, actor=who(other, authz.OPS, "Bob B"), tenant_id=other.tenant_id)
    return identity, other


def test_search_shows_a_tenant_its_own_and_workbench_entries_and_an_admin_all(
    clean_db: Engine, two_tenants: tuple[Identity, Identity]
) -> None:
    a, b = two_tenants
    with clean_db.connect() as connection:
        mine = audit.search(connection, viewer=who(a, authz.OPS))
        assert [(e.seq, e.actor) for e in mine] == [(2, "Ann A"), (1, "Ann A")], "newest first, no tenant B"
        everything = audit.search(connection, viewer=who(a, authz.ADMIN))
        assert [e.seq for e in everything] == [4, 3, 2, 1]
        only_b = audit.search(connection, viewer=who(a, authz.ADMIN), tenant_id=b.tenant_id)
        assert [e.seq for e in only_b] == [4, 3, 2]
        assert [e.seq for e in audit.search(connection, viewer=who(a, authz.ADMIN), actor_contains="bob")] == [4, 3]
        typed = audit.search(connection, viewer=who(a, authz.ADMIN), event_types=[audit.LOGIN], limit=1, offset=1)
        assert [e.seq for e in typed] == [1]
        with pytest.raises(PermissionDeniedError):
            audit.search(connection, viewer=who(a, authz.OPS), tenant_id=b.tenant_id)
        for role in (authz.RESEARCHER, authz.PROMPT_ENGINEER):
            with pytest.raises(PermissionDeniedError, match="search the audit log"):
                audit.search(connection, viewer=who(a, role))


# -- export ---------------------------------------------------------------------------------------------


def test_export_filters_by_type_and_time_checks_offline_and_is_audited(clean_db: Engine, identity: Identity) -> None:
    ops = who(identity, authz.OPS)
    append(clean_db, audit.LOGIN, actor=ops, tenant_id=identity.tenant_id, subject="before")
    time.sleep(0.01)
    since = utcnow()
    for i in range(3):
        append(clean_db, audit.LOGIN, actor=ops, tenant_id=identity.tenant_id, subject=f"inside {i}")
        append(clean_db, audit.KILL_SWITCH, actor=ops, tenant_id=None, subject="engaged")
    until = utcnow()
    time.sleep(0.01)
    append(clean_db, audit.LOGIN, actor=ops, tenant_id=identity.tenant_id, subject="after")

    admin = authz.cli_identity(identity.tenant_id)
    with clean_db.begin() as connection:
        document = audit.export(
            connection, viewer=admin, event_types=[audit.LOGIN], since=since, until=until
        )  # fmt: skip
    assert document["count"] == 3 and [e["subject"] for e in document["entries"]] == [f"inside {i}" for i in range(3)]
    assert [e["seq"] for e in document["entries"]] == [2, 4, 6]
    assert {"seq", "prev_hash", "hash", "at", "details"} <= set(document["entries"][0])
    assert document["head"]["seq"] == 8 and document["filters"]["event_types"] == [audit.LOGIN]
    assert audit.check_export(json.loads(json.dumps(document))) == [], "holds after a JSON round trip"
    document["entries"][1]["actor"] = "mallory"
    assert audit.check_export(document) == ["entry 4 does not match its hash"]

    with clean_db.begin() as connection:
        whole = audit.export(connection, viewer=admin)
    assert whole["count"] == 9 and audit.check_export(whole) == [], "the first export is in the second"
    assert whole["entries"][-1]["event_type"] == audit.EXPORT
    assert whole["entries"][-1]["details"] == {
        "what": "audit_log",
        "event_types": [audit.LOGIN],
        "since": since.isoformat(),
        "until": until.isoformat(),
        "count": 3,
    }
    assert whole["entries"][-1]["actor"] == admin.name and verify(clean_db).intact

    with clean_db.begin() as connection, pytest.raises(PermissionDeniedError, match="export the audit log"):
        audit.export(connection, viewer=ops)


def test_cli_export_writes_json_by_type(
    clean_db: Engine, identity: Identity, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    chain(clean_db, identity, 10)
    target = tmp_path / "export.json"
    assert main(["audit", "export", "--type", "kill_switch", "--type", "login", "-o", str(target)]) == 0
    assert f"exported 4 entries to {target}" in capsys.readouterr().out
    document = json.loads(target.read_text(encoding="utf-8"))
    assert {e["event_type"] for e in document["entries"]} == {audit.KILL_SWITCH, audit.LOGIN}
    assert audit.check_export(document) == []
    assert main(["audit", "export", "--since", "2000-01-01", "--until", "2000-01-02", "-o", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 0
    assert row(clean_db, 12).event_type == audit.EXPORT and row(clean_db, 12).actor.startswith("cli:")
    with pytest.raises(SystemExit):
        main(["audit", "export", "--type", "nonsense", "-o", "-"])


# -- access review ------------------------------------------------------------------------------------------


def test_access_review_lists_users_permissions_and_who_viewed_which_trace(
    clean_db: Engine, session: Session, identity: Identity, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    other = create_tenant(session, slug="lab-b", name="Lab B")
    session.add_all(
        [
            User(tenant_id=identity.tenant_id, email="ops@lab", display_name="Olga Ops", role=authz.OPS),
            User(
                tenant_id=other.tenant_id,
                email="pe@lab-b",
                display_name="Pia PE",
                role=authz.PROMPT_ENGINEER,
                locked_until=utcnow() + timedelta(minutes=10),
                last_login_at=utcnow() - timedelta(days=1),
            ),
            User(tenant_id=other.tenant_id, email="gone@lab-b", display_name="Gone", role=authz.ADMIN, active=False),
        ]
    )
    trace_id = add_run(session, tenant_id=identity.tenant_id, spans=[SpanSpec("writer", content={"prompt": "p"})])
    session.commit()
    viewer = who(identity, authz.OPS, "Olga Ops (ops@lab)")
    get_trace(session, viewer=viewer, trace_id=trace_id, ring=ring())
    session.commit()

    admin = authz.cli_identity(identity.tenant_id)
    review = audit.access_review(session, viewer=admin, since=utcnow() - timedelta(hours=1))
    session.commit()
    users = {u["email"]: u for u in review["users"]}
    assert set(users) == {"researcher@localhost", "researcher@lab-b", "ops@lab", "pe@lab-b", "gone@lab-b"}
    assert users["ops@lab"]["permissions"] == sorted(p.value for p in authz.GRANTS[authz.OPS])
    assert users["pe@lab-b"]["tenant"] == "lab-b" and users["pe@lab-b"]["locked"] and users["pe@lab-b"]["last_login_at"]
    assert not users["gone@lab-b"]["active"] and "view_all_tenants" in users["gone@lab-b"]["permissions"]
    assert users["researcher@localhost"]["permissions"] == ["draft", "use_api", "view_verification"]
    [viewed] = [e for e in review["activity"] if e["event_type"] == audit.TRACE_VIEWED]
    assert (viewed["subject"], viewed["actor"]) == (trace_id, "Olga Ops (ops@lab)")
    assert viewed["details"] == {"kind": "paragraph", "spans_opened": 1}, "which trace, never its content"
    with db.session_scope(clean_db) as s:
        [entry] = audit.search(s.connection(), viewer=admin, event_types=[audit.EXPORT])
    assert entry.details["what"] == "access_review" and entry.details["users"] == 5

    with pytest.raises(PermissionDeniedError):
        audit.access_review(session, viewer=viewer)
    target = tmp_path / "review.json"
    assert main(["audit", "access-review", "-o", str(target)]) == 0
    assert "access review of 5 users" in capsys.readouterr().out
    assert json.loads(target.read_text(encoding="utf-8"))["roles"]["researcher"] == [
        "draft",
        "use_api",
        "view_verification",
    ]


# -- the page ------------------------------------------------------------------------------------------------


def test_audit_page_searches_verifies_and_exports_for_admins(make_app: MakeApp, clean_db: Engine) -> None:
    append(clean_db, audit.LOGIN_FAILED, actor=None, tenant_id=None, actor_label="<i>x</i>@lab", subject="x")
    at = make_app("pages/audit.py")
    assert [t.value for t in at.title] == ["Audit log"]
    table = at.dataframe[0].value
    assert "<i>x</i>@lab" in set(table["Actor"]) and "login failed" in set(table["Event"])
    at.button(key="audit_verify").click().run()
    assert not at.exception and any(s.value.startswith("Audit log intact:") for s in at.success)

    with clean_db.begin() as connection:  # tamper, then the page names the entry
        connection.execute(update(_A).where(_A.c.seq == 1).values(subject="<b>edited</b>"))
    at.button(key="audit_verify").click().run()
    assert any("BROKEN at entry 1" in e.value for e in at.error)
    assert "<b>edited</b>" in set(at.dataframe[0].value["Subject"]), "shown as plain text in the table"

    with clean_db.begin() as connection:
        connection.execute(update(_A).where(_A.c.seq == 1).values(subject="x"))  # as it was
    before = len(seqs(clean_db))
    at.button(key="audit_prepare_audit").click().run()
    assert not at.exception, at.exception
    assert len(seqs(clean_db)) > before and row(clean_db, seqs(clean_db)[-1]).event_type == audit.EXPORT
    assert json.loads(at.session_state["audit_audit_json"])["format"] == audit.EXPORT_FORMAT


def test_audit_page_for_ops_has_no_exports_and_researchers_do_not_get_it(make_app: MakeApp) -> None:
    at = make_app("pages/audit.py", role="ops")
    assert not at.exception and not [b for b in at.button if b.key and b.key.startswith("audit_prepare")]
    assert any("for admins" in c.value for c in at.caption)
    with pytest.raises(ValueError, match="Could not find a navigation page"):  # not in a researcher's navigation
        make_app("pages/audit.py", role="researcher")
