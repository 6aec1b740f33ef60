"""Backup and restore throughput on a generated database. Prints figures; asserts nothing.

A demo manuscript is drafted through the real core, then ``--rows`` usage events and as many
trajectory events (each with 1 KiB of sealed-looking content) are added in bulk; the workbench
is backed up and restored into a fresh database and data directory.

    .venv/bin/python bench/backup.py [--rows 100000]
    .venv/bin/python bench/backup.py --source-url postgresql://...@host/empty_a --target-url postgresql://...@host/empty_b

Both databases must be empty (PostgreSQL ones are created by you and left filled afterwards).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``core`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine

from core import authz, backup, crypto, db
from core.models import LlmUsageEvent, TrajectoryEvent, table_of
from core.settings import reset_settings
from tests.ui_helpers import seed_drafted

BATCH = 5_000
"""Rows per bulk INSERT while generating."""


def _point_at(data_dir: Path, url: str) -> None:
    os.environ["WORKBENCH_DATA_DIR"], os.environ["DATABASE_URL"] = str(data_dir), url
    reset_settings()


def _generate(engine: Engine, rows: int, tenant_id: int) -> None:
    now = datetime.now(UTC)
    usage, events = table_of(LlmUsageEvent), table_of(TrajectoryEvent)
    for start in range(0, rows, BATCH):
        count = min(BATCH, rows - start)
        with engine.begin() as connection:
            connection.execute(
                usage.insert(),
                [
                    {"tenant_id": tenant_id, "trace_id": f"bench{start + i:012d}", "agent": "writer",
                     "provider": "local", "model": "local-writer", "prompt_version": "v1",
                     "input_hash": secrets.token_hex(32), "input_tokens": 900, "output_tokens": 120,
                     "cost_usd": 0.00012345, "latency_ms": 12.5, "attempts": [], "created_at": now}
                    for i in range(count)
                ],
            )  # fmt: skip
            connection.execute(
                events.insert(),
                [
                    {"tenant_id": tenant_id, "trace_id": f"bench{start + i:012d}", "span_id": f"s{start + i}",
                     "kind": "agent", "name": "writer", "attributes": {"tier": "simple"}, "started_at": now,
                     "content": secrets.token_bytes(1024), "key_id": "bench"}
                    for i in range(count)
                ],
            )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="usage events and trajectory events to add")
    parser.add_argument("--source-url", help="an empty database to fill (default: SQLite in a temporary folder)")
    parser.add_argument("--target-url", help="an empty database to restore into (default: SQLite)")
    args = parser.parse_args()
    os.environ.setdefault("WORKBENCH_ENCRYPTION_KEYS", f"bench:{crypto.new_key()}")
    with tempfile.TemporaryDirectory(prefix="bench-backup-") as tmp:
        root = Path(tmp)
        source_url = args.source_url or f"sqlite:///{root / 'source' / 'workbench.db'}"
        target_url = args.target_url or f"sqlite:///{root / 'target' / 'workbench.db'}"
        _point_at(root / "source", source_url)
        source = db.get_engine(source_url)
        db.migrate(source)
        seeded = seed_drafted(source)
        started = time.perf_counter()
        _generate(source, args.rows, seeded.identity.tenant_id)
        print(f"generated {2 * args.rows} rows in {time.perf_counter() - started:.1f} s ({source.dialect.name})")

        admin = authz.cli_identity(seeded.identity.tenant_id)
        started = time.perf_counter()
        made = backup.create_backup(root / "bench.tar.gz", engine=source, actor=admin)
        took = time.perf_counter() - started
        rows = made.manifest.rows
        print(f"backup:  {rows} rows, {made.size_bytes / 1e6:.1f} MB archive in {took:.2f} s: "
              f"{rows / took:,.0f} rows/s, {made.size_bytes / 1e6 / took:.1f} MB/s")  # fmt: skip

        _point_at(root / "target", target_url)
        target = db.get_engine(target_url)
        started = time.perf_counter()
        backup.restore_backup(made.path, engine=target, actor=admin)
        took = time.perf_counter() - started
        print(f"restore: {rows} rows in {took:.2f} s ({target.dialect.name}, verified): {rows / took:,.0f} rows/s, "
              f"{made.size_bytes / 1e6 / took:.1f} MB/s of archive")  # fmt: skip
        source.dispose()
        target.dispose()


if __name__ == "__main__":
    main()
