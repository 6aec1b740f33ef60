"""Commands for the audit log: verify, export, access review (registered by ``core.cli``).

python -m core audit verify                      prove the chain intact, or name the first broken entry
python -m core audit export [--type T ...] [--since ISO] [--until ISO] -o FILE|-
python -m core audit access-review [--since ISO] [--until ISO] -o FILE|-

The command line acts as ``authz.cli_identity`` of the default tenant (an admin without an
account); exports are recorded in the log like any other.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from core import audit, db, environments
from core.cli_common import operator


def _when(text: str) -> datetime:
    """An ISO date or date-time for argparse; a time without a zone is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO date or time, e.g. 2025-01-31 or 2025-01-31T08:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _write(document: dict[str, Any], target: str) -> None:
    text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    if target == "-":
        sys.stdout.write(text)
        return
    with open(target, "w", encoding="utf-8") as out:
        out.write(text)


def cmd_verify(args: argparse.Namespace) -> int:
    environments.prepare_schema()  # local: migrate; elsewhere: refuse a schema behind head
    with db.get_engine().connect() as connection:
        report = audit.verify(connection, batch=args.batch)
    if report.intact:
        print(f"audit log intact: {report.checked} entr{'y' if report.checked == 1 else 'ies'}")
        return 0
    print(f"audit log BROKEN at entry {report.broken_seq}: {report.reason}")
    return 1


def cmd_export(args: argparse.Namespace) -> int:
    viewer = operator()
    with db.get_engine().begin() as connection:  # the EXPORT entry commits with the read
        document = audit.export(
            connection, viewer=viewer, event_types=args.type or (), since=args.since, until=args.until
        )
    _write(document, args.output)
    if args.output != "-":
        print(f"exported {document['count']} entries to {args.output}")
    return 0


def cmd_access_review(args: argparse.Namespace) -> int:
    viewer = operator()
    with db.session_scope() as session:
        document = audit.access_review(session, viewer=viewer, since=args.since, until=args.until)
    _write(document, args.output)
    if args.output != "-":
        print(f"access review of {len(document['users'])} users, {len(document['activity'])} events to {args.output}")
    return 0


def _add_range(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", type=_when, metavar="ISO", help="from this moment on (inclusive; UTC if no zone)")
    parser.add_argument("--until", type=_when, metavar="ISO", help="up to this moment (exclusive; UTC if no zone)")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="write the JSON here; - for stdout")


def add_commands(sub: Any) -> None:
    """Add this module's sub-commands to the ``python -m core`` parser."""
    group = sub.add_parser("audit", help="the hash-chained audit log").add_subparsers(dest="action", required=True)
    verify = group.add_parser("verify", help="prove the chain intact or name the first broken entry")
    verify.add_argument("--batch", type=int, default=5_000, metavar="N", help="entries read per query (default 5000)")
    verify.set_defaults(func=cmd_verify)
    export = group.add_parser("export", help="entries by event type and time range, as JSON")
    export.add_argument(
        "--type",
        action="append",
        choices=audit.EVENT_TYPES,
        metavar="T",
        help=f"event type (repeatable): {', '.join(audit.EVENT_TYPES)}",
    )
    _add_range(export)
    export.set_defaults(func=cmd_export)
    review = group.add_parser("access-review", help="who can see what, and who looked at what, as JSON")
    _add_range(review)
    review.set_defaults(func=cmd_access_review)
