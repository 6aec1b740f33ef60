"""Commands for users, tenants and the first-run admin (registered by ``core.cli``).

The command line acts as ``authz.cli_identity``: an admin without an account (whoever has a shell
and the database URL holds every key already); the audit log names the operating-system user.
"""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy import select

from core import accounts, authz, db
from core.cli_common import operator
from core.errors import NotFoundError
from core.models import Tenant


def _tenant_id(session: Any, slug: str) -> int:
    tenant_id = session.scalar(select(Tenant.id).where(Tenant.slug == slug.strip().lower()))
    if tenant_id is None:
        raise NotFoundError(f"There is no workspace {slug}; `python -m core tenants list` shows them.")
    return int(tenant_id)


def cmd_first_run(_args: argparse.Namespace) -> int:
    operator()
    with db.session_scope() as session:
        created = accounts.ensure_first_admin(session)
    if created is None:
        print("an admin exists already; nothing to do")
        return 0
    email, password = created
    print(f"First admin created: {email}")
    print(f"Password: {password}")
    print("This password is shown only now: note it, sign in, and add accounts on the Users and tenants page.")
    return 0


def cmd_users_list(_args: argparse.Namespace) -> int:
    by = operator()
    with db.session_scope() as session:
        rows = accounts.list_users(session, by=by)
    print("id\temail\tname\trole\tworkspace\tactive\tfailed\tlocked until\tlast sign-in")
    for u in rows:
        locked = u.locked_until.isoformat(timespec="seconds") if u.locked_until else "-"
        last = u.last_login_at.isoformat(timespec="seconds") if u.last_login_at else "-"
        print(
            f"{u.id}\t{u.email}\t{u.display_name}\t{u.role}\t{u.tenant_slug}\t{'yes' if u.active else 'no'}\t"
            f"{u.failed_logins}\t{locked}\t{last}"
        )
    return 0


def cmd_users_add(args: argparse.Namespace) -> int:
    by = operator()
    with db.session_scope() as session:
        name = args.name or args.email.split("@", 1)[0]
        password = accounts.create_user(
            session,
            by=by,
            tenant_id=_tenant_id(session, args.tenant),
            email=args.email,
            display_name=name,
            role=args.role,
        )
    print(f"Added {args.email.strip().lower()} ({args.role}) to {args.tenant}.")
    print(f"Password: {password}")
    print("This password is shown only now.")
    return 0


def _change(args: argparse.Namespace, what: str) -> int:
    by = operator()
    with db.session_scope() as session:
        user_id = accounts.user_id_by_email(session, email=args.email)
        if what == "role":
            accounts.set_role(session, by=by, user_id=user_id, role=args.role)
            print(f"{args.email} is now {args.role}.")
        elif what == "unlock":
            accounts.unlock(session, by=by, user_id=user_id)
            print(f"{args.email} is unlocked.")
        elif what in ("deactivate", "activate"):
            accounts.set_active(session, by=by, user_id=user_id, active=what == "activate")
            print(f"{args.email} is {what}d.")
        else:
            password = accounts.reset_password(session, by=by, user_id=user_id)
            print(f"New password for {args.email}: {password}")
            print("This password is shown only now; their open sessions have ended.")
    return 0


def cmd_tenants_list(_args: argparse.Namespace) -> int:
    by = operator()
    with db.session_scope() as session:
        rows = accounts.list_tenants(session, by=by)
    print("id\tslug\tname\tredact PII\taccounts")
    for t in rows:
        print(f"{t.id}\t{t.slug}\t{t.name}\t{'yes' if t.redact_pii else 'no'}\t{t.users}")
    return 0


def cmd_tenants_add(args: argparse.Namespace) -> int:
    by = operator()
    with db.session_scope() as session:
        tenant_id = accounts.create_tenant(session, by=by, slug=args.slug, name=args.name)
    print(f"Added workspace {args.slug} (id {tenant_id}).")
    return 0


def cmd_tenants_redact(args: argparse.Namespace) -> int:
    by = operator()
    with db.session_scope() as session:
        accounts.set_tenant_redact_pii(
            session, by=by, tenant_id=_tenant_id(session, args.slug), redact=args.state == "on"
        )
    print(f"PII redaction is {args.state} for {args.slug}.")
    return 0


def add_commands(sub: Any) -> None:
    """Add this module's sub-commands to the ``python -m core`` parser."""
    users = sub.add_parser("users", help="accounts: first-run admin, list, add, roles, passwords, lockouts")
    u = users.add_subparsers(dest="action", required=True)
    u.add_parser("first-run", help="create the first admin (password shown once) unless one exists").set_defaults(
        func=cmd_first_run
    )
    u.add_parser("list", help="every account of every workspace").set_defaults(func=cmd_users_list)
    add = u.add_parser("add", help="add an account; its generated password is shown once")
    add.add_argument("email")
    add.add_argument("--role", required=True, choices=authz.ROLES)
    add.add_argument("--tenant", required=True, metavar="SLUG", help="the workspace, by slug")
    add.add_argument("--name", help="display name (default: the part of the e-mail before @)")
    add.set_defaults(func=cmd_users_add)
    role = u.add_parser("set-role", help="change an account's role")
    role.add_argument("email")
    role.add_argument("role", choices=authz.ROLES)
    role.set_defaults(func=lambda a: _change(a, "role"))
    for name, text in (
        ("reset-password", "a new generated password, shown once (open sessions end)"),
        ("unlock", "clear a lockout after failed sign-ins"),
        ("deactivate", "refuse the account's sign-ins and end its sessions"),
        ("activate", "allow a deactivated account again"),
    ):
        command = u.add_parser(name, help=text)
        command.add_argument("email")
        command.set_defaults(func=lambda a, what=name: _change(a, what))
    tenants = sub.add_parser("tenants", help="workspaces: list, add, PII redaction")
    t = tenants.add_subparsers(dest="action", required=True)
    t.add_parser("list", help="every workspace").set_defaults(func=cmd_tenants_list)
    tadd = t.add_parser("add", help="add a workspace")
    tadd.add_argument("slug")
    tadd.add_argument("name")
    tadd.set_defaults(func=cmd_tenants_add)
    redact = t.add_parser("redact-pii", help="redact e-mail addresses and phone numbers before text leaves")
    redact.add_argument("slug")
    redact.add_argument("state", choices=("on", "off"))
    redact.set_defaults(func=cmd_tenants_redact)
