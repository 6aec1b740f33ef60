"""``python -m core drill kill-switch``: throw the real kill switch, check it holds, release it (``core.drills``).

Exit 0 when every step held, 1 otherwise (or when refused: the switch is engaged already, so a drill
would have to release someone's real freeze). Acts as ``core.cli_common.operator``; ``--actor NAME``.
"""

from __future__ import annotations

import argparse
from typing import Any

from core import db, drills
from core.cli_common import operator


def cmd_kill_switch(args: argparse.Namespace) -> int:
    by = operator(args.actor)
    record = drills.kill_switch_drill(db.get_engine(), by=by)
    for step in record.steps:
        print(f"{'ok  ' if step.passed else 'FAIL'}\t{step.name}\t{step.detail}")
    print(f"drill {record.id}: {'passed' if record.passed else 'FAILED'}")
    return 0 if record.passed else 1


def add_commands(sub: Any) -> None:
    """Add ``drill`` and its kinds to the top-level sub-parsers."""
    group = sub.add_parser("drill", help="operational drills").add_subparsers(dest="action", required=True)
    kill = group.add_parser("kill-switch", help="engage the kill switch, check it holds, release it")
    kill.add_argument("--actor", metavar="NAME", help="who is at the keyboard (kept in the audit log)")
    kill.set_defaults(func=cmd_kill_switch)
