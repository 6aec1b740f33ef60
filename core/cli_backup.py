"""Commands that back up and restore the whole workbench (registered by ``core.cli``).

python -m core backup PATH      one .tar.gz with every table and the stored PDFs (PATH: a new file,
                                or an existing folder to write a dated archive into)
python -m core restore PATH     into an empty database and file store; the schema ends at head

Both act as ``authz.cli_identity`` (an admin) and need ``Permission.BACKUP``. Neither migrates
the source first: a backup records the schema revision it was taken at, and a restore brings
an empty database to that revision, loads, then upgrades to head.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from core import backup, db
from core.cli_common import reading_operator
from core.settings import get_settings


def _print_tables(manifest: backup.Manifest) -> None:
    for table in manifest.tables:
        if table.rows:
            print(f"  {table.name}\t{table.rows}")


def cmd_backup(args: argparse.Namespace) -> int:
    engine = db.get_engine(get_settings().resolved_database_url)
    summary = backup.create_backup(Path(args.path), engine=engine, actor=reading_operator(engine))
    manifest = summary.manifest
    print(
        f"backup written to {summary.path} ({summary.size_bytes / 1e6:.1f} MB): {manifest.rows} rows in "
        f"{len(manifest.tables)} tables, {len(manifest.blobs)} stored files; schema revision {manifest.schema_revision}"
    )
    _print_tables(manifest)
    for sha in manifest.missing_blobs:
        print(
            f"warning: the stored file {sha[:12]}... is missing or damaged in the file store and is not in the "
            "backup; its document cannot be opened after a restore until the PDF is uploaded again",
            file=sys.stderr,
        )
    if manifest.key_ids:
        dev_key = get_settings().data_dir / "dev-encryption.key"
        where = f"the development key {dev_key}" if summary.key_ring_is_development else "WORKBENCH_ENCRYPTION_KEYS"
        print(
            f"note: trace content in the backup is sealed with key(s) {', '.join(manifest.key_ids)}; the backup holds "
            f"no keys. Keep {where} safe apart from it: a restore reads traces only with the same keys."
        )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    engine = db.get_engine(get_settings().resolved_database_url)
    summary = backup.restore_backup(Path(args.path), engine=engine, actor=reading_operator(engine))
    manifest = summary.manifest
    print(
        f"restored {manifest.rows} rows in {len(manifest.tables)} tables and {len(manifest.blobs)} stored files from "
        f"the backup of {manifest.created_at} (schema {manifest.schema_revision}, now {summary.head_revision})"
    )
    _print_tables(manifest)
    print(f"audit chain intact: {summary.audit_entries} entries checked")
    if summary.missing_key_ids:
        print(
            f"warning: trace content is sealed with key(s) {', '.join(summary.missing_key_ids)}, which the configured "
            "key ring lacks; traces stay unreadable until WORKBENCH_ENCRYPTION_KEYS holds the same keys as the "
            "source workbench (or its data/dev-encryption.key is copied here)",
            file=sys.stderr,
        )
    elif manifest.key_ids:
        print(f"trace content opens with the configured key ring (key(s) {', '.join(manifest.key_ids)})")
    return 0


def add_commands(sub: Any) -> None:
    """Add this module's sub-commands to the ``python -m core`` parser."""
    made = sub.add_parser("backup", help="write every table and the stored PDFs to one archive (.tar.gz)")
    made.add_argument("path", help="a new archive file, or an existing folder to write a dated archive into")
    made.set_defaults(func=cmd_backup)
    restored = sub.add_parser("restore", help="restore a backup into an empty database and file store")
    restored.add_argument("path", help="the archive `python -m core backup` wrote")
    restored.set_defaults(func=cmd_restore)
