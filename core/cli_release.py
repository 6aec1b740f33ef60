"""``python -m core release check [--json] [--actor NAME]``: the release checklist (``core.release``).

Prints a table (item, PASS/FAIL, reason) and the cost per paragraph under each configured model;
exits 0 only when every item passes, 1 otherwise. It never migrates the database (a pending
migration is one of the things it reports), so the command line's admin identity is found without
creating anything; the check and its audit entry are stored when the schema has their tables.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from core import db, release
from core.cli_common import reading_operator
from core.settings import get_settings


def cmd_check(args: argparse.Namespace) -> int:
    settings = get_settings()
    engine = db.get_engine(settings.resolved_database_url)
    report = release.run_check(engine, settings)
    try:
        stored = release.record(engine, report, actor=reading_operator(engine, args.actor))
    except SQLAlchemyError:  # the table still shows why; the database item says what is wrong
        stored = None
    if args.json:
        print(json.dumps({**report.as_json(), "release_check_id": stored}, indent=2, default=str))
    else:
        print(f"release check ({report.environment})")
        print("\n".join(release.table_lines(report)))
        costs = release.cost_lines(report)
        if costs:
            print()
            print("\n".join(costs))
        print()
        verdict = "PASSED" if report.passed else f"FAILED: {', '.join(report.failed)}"
        kept = f"stored as release check #{stored}" if stored is not None else "not stored: no release_checks table"
        print(f"{verdict} ({kept})")
    return 0 if report.passed else 1


def add_commands(sub: Any) -> None:
    group = sub.add_parser("release", help="the release checklist").add_subparsers(dest="action", required=True)
    check = group.add_parser("check", help="run every item of the release checklist; exit 1 if any fails")
    check.add_argument("--json", action="store_true", help="print the results as JSON")
    check.add_argument("--actor", metavar="NAME", help="who runs the check (default: the OS user)")
    check.set_defaults(func=cmd_check)
