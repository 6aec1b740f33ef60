"""The ops API under concurrent load: cost summary and trajectory list over 1,000,000 usage events.

    .venv/bin/python bench/api.py [--workers 1] [--clients 10 20] [--requests 25] [--reload] [--drop]
    (or: make bench-api)

Fills a throw-away PostgreSQL database ``bench_api`` on 127.0.0.1:5432 with the dashboard
benchmark's generator (``bench/dashboard.py``: 1,000,000 usage events, 40,000 trajectories,
200,000 trajectory events, 5 tenants) — or reuses it when it is already there and complete (the
row counts match and the newest event is under a day old) — then gives an ``ops`` account of the
largest tenant a bearer token at the highest rate a token may have (10,000 requests per minute, so
the per-token limiter does not throttle the benchmark), starts the real server
(``python -m uvicorn api.app:app``) on a free port with ``DATABASE_URL`` pointing at ``bench_api``,
waits for ``/health`` and warms up. Then, for each endpoint and each number of concurrent clients
(10 and 20: "5 to 20 users at once"), every client — a thread with its own keep-alive HTTP/1.1
connection — sends ``--requests`` requests one after another; it prints requests, errors, P50,
P95 and P99 latency and requests per second.

Exits 1 when any request failed (not 200) or a P99 is 500 ms or more (the target). The database is
kept for the next run unless ``--drop``. About 3 minutes to load, then 1 to 2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``core`` and ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from psycopg import sql
from sqlalchemy import text

from bench import dashboard as generator
from core import accounts, api_tokens, authz, db
from core.tenancy import Identity

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "bench_api"
URL = f"{generator.PG_SERVER}/{DATABASE}"
EXPECTED = {
    "llm_usage_events": generator.RUNS * 5,
    "trajectories": generator.RUNS // generator.TRAJECTORY_EVERY,
    "trajectory_events": generator.RUNS // generator.TRAJECTORY_EVERY * 5,
}
"""The row counts of a complete load (a load cut short leaves fewer)."""
EMAIL = "bench-api-ops@example.org"
TARGET_P99_MS = 500.0
ENDPOINTS = [
    ("cost summary, month", "/api/v1/ops/costs/summary?window=month"),
    ("cost summary, week", "/api/v1/ops/costs/summary?window=week"),
    ("trajectory list, page 1", "/api/v1/ops/trajectories?limit=50&offset=0"),
    ("trajectory list, page 201", "/api/v1/ops/trajectories?limit=50&offset=10000"),
]


# --- the data ---------------------------------------------------------------------------------


def _admin() -> psycopg.Connection:
    return psycopg.connect(f"{generator.PG_SERVER}/postgres", autocommit=True)


def _counts() -> dict[str, int] | None:
    """Row counts of the bench tables and the newest event's age in hours; None without the database."""
    with _admin() as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
            return None
    counts: dict[str, int] = {}
    with psycopg.connect(URL) as connection:
        for table in EXPECTED:
            exists = connection.execute("SELECT to_regclass(%s)", (table,)).fetchone()
            if not exists or exists[0] is None:
                return counts
            row = connection.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
            counts[table] = int(row[0]) if row else 0
        age = connection.execute(
            "SELECT coalesce(extract(epoch FROM now() - max(created_at)) / 3600, 1e9) FROM llm_usage_events"
        ).fetchone()
        counts["newest event, hours ago"] = int(age[0]) if age else 10**9
    return counts


def _complete(counts: dict[str, int] | None) -> bool:
    if not counts:
        return False
    return all(counts.get(table) == n for table, n in EXPECTED.items()) and counts["newest event, hours ago"] < 24


def prepare(*, reload: bool) -> dict[str, int]:
    """The bench database, reused when complete and fresh, else dropped, created, migrated and filled."""
    counts = _counts()
    if not reload and _complete(counts):
        print(f"Reusing {DATABASE} (complete: the row counts match; newest event under a day old).")
        db.migrate(db.get_engine(URL))  # any migration added since it was loaded
        return counts or {}
    why = "asked to reload" if reload else ("absent" if counts is None else f"incomplete or stale: {counts}")
    print(f"Loading {DATABASE} ({why}; drop, create, migrate, fill with bench/dashboard.py's generator):", flush=True)
    started = time.perf_counter()
    drop()
    with _admin() as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    db.migrate(db.get_engine(URL))
    generator.load(URL)
    print(f"  loaded in {time.perf_counter() - started:.0f} s", flush=True)
    return _counts() or {}


def drop() -> None:
    db.get_engine(URL).dispose()
    with _admin() as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))


def bench_token() -> tuple[str, int]:
    """A fresh bearer secret of the bench's ``ops`` account in the largest tenant, at the highest rate."""
    engine = db.get_engine(URL)
    tenant_id = generator.largest_tenant(engine)
    with db.session_scope(engine) as s:
        user_id = s.execute(text("SELECT id FROM users WHERE email = :e"), {"e": EMAIL}).scalar()
        if user_id is None:
            accounts.create_user(
                s,
                by=authz.cli_identity(tenant_id),
                tenant_id=tenant_id,
                email=EMAIL,
                display_name="API benchmark",
                role=authz.OPS,
                password="a long enough benchmark password",
            )
            user_id = accounts.user_id_by_email(s, email=EMAIL)
        who: Identity = accounts.identity_of(s, user_id=user_id)
        secret, _view = api_tokens.create(s, by=who, name="bench/api.py", days=1, rate_per_minute=10_000)
    return secret, who.tenant_id


# --- the server -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(port: int, workers: int, data_dir: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
    env.update(DATABASE_URL=URL, WORKBENCH_DATA_DIR=data_dir, WORKBENCH_PROVIDER="local")
    command = [sys.executable, "-m", "uvicorn", "api.app:app", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers), "--no-access-log", "--log-level", "warning"]
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_for_health(port: int, server: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> int:
    """The status of the first answer of ``/health`` (any HTTP answer means the server is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"uvicorn exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            status = connection.getresponse().status
            connection.close()
            return status
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"uvicorn did not answer /health within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


# --- the load ---------------------------------------------------------------------------------


@dataclass
class Result:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


def _client(
    port: int, path: str, headers: dict[str, str], requests: int, start: threading.Barrier, out: Result
) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies: list[float] = []
    errors, first_error = 0, ""
    start.wait()
    for _ in range(requests):
        began = time.perf_counter()
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            body = response.read()
            elapsed = (time.perf_counter() - began) * 1000
            if response.status != 200:
                errors += 1
                first_error = first_error or f"{response.status} {body[:300].decode(errors='replace')}"
            else:
                json.loads(body)
            latencies.append(elapsed)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # a dropped connection or a body that is not JSON is a failed request; reconnect and go on
            errors += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.close()
    with out.lock:
        out.latencies_ms.extend(latencies)
        out.errors += errors
        out.first_error = out.first_error or first_error


def run_load(port: int, path: str, headers: dict[str, str], *, clients: int, requests: int) -> tuple[Result, float]:
    """``clients`` threads each sending ``requests`` requests; the result and the wall time, s."""
    out = Result()
    start = threading.Barrier(clients + 1)
    threads = [
        threading.Thread(target=_client, args=(port, path, headers, requests, start, out), daemon=True)
        for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return out, time.perf_counter() - began


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by the nearest-rank method: a value that was actually observed."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1, see README)")
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 20], help="concurrent clients per round")
    parser.add_argument("--requests", type=int, default=10, help="requests each client sends per round")
    parser.add_argument("--warmup", type=int, default=10, help="requests per endpoint before timing")
    parser.add_argument("--path", action="append", help="benchmark this path instead (repeatable; e.g. /health)")
    parser.add_argument("--reload", action="store_true", help="drop and reload the database even if complete")
    parser.add_argument("--drop", action="store_true", help="drop the database afterwards (else kept for reuse)")
    args = parser.parse_args()

    counts = prepare(reload=args.reload)
    secret, tenant_id = bench_token()
    endpoints = [(p, p) for p in args.path] if args.path else ENDPOINTS
    width = max(len(name) for name, _path in endpoints)
    headers = {"Authorization": f"Bearer {secret}", "Connection": "keep-alive"}
    print(f"\nDatabase: {URL}")
    print("  rows: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    print(f"  token: an ops account of tenant {tenant_id} (the largest), rate 10,000 requests per minute")
    load_1, load_5, _ = os.getloadavg()
    print(
        f"uvicorn workers: {args.workers}; machine cores: {os.cpu_count()}; load average {load_1:.1f} (1 min),"
        f" {load_5:.1f} (5 min) before the run"
    )
    print(f"clients: {' and '.join(map(str, args.clients))} at once, {args.requests} requests each, keep-alive")

    failed = False
    with tempfile.TemporaryDirectory() as data_dir:
        log = Path(data_dir) / "uvicorn.log"
        port = free_port()
        server = start_server(port, args.workers, data_dir, log)
        try:
            status = wait_for_health(port, server, log)
            print(f"server: http://127.0.0.1:{port}, /health answered {status}")
            for _name, path in endpoints:  # warm up: connections, plans, caches
                run_load(port, path, headers, clients=min(2, args.warmup), requests=max(1, args.warmup // 2))
            print(
                f"\n  {'endpoint':{width}} {'clients':>7} {'requests':>8} {'errors':>6} {'P50 ms':>8} {'P95 ms':>8}"
                f" {'P99 ms':>8} {'req/s':>7}"
            )
            for name, path in endpoints:
                for clients in args.clients:
                    result, wall = run_load(port, path, headers, clients=clients, requests=args.requests)
                    sent = clients * args.requests
                    lat = result.latencies_ms or [float("nan")]
                    p99 = percentile(lat, 0.99)
                    missed = result.errors > 0 or not p99 < TARGET_P99_MS
                    failed = failed or missed
                    print(
                        f"  {name:{width}} {clients:7d} {sent:8d} {result.errors:6d} {percentile(lat, 0.50):8.1f}"
                        f" {percentile(lat, 0.95):8.1f} {p99:8.1f} {sent / wall:7.1f}" + ("  MISSED" if missed else ""),
                        flush=True,
                    )
                    if result.first_error:
                        print(f"    first error: {result.first_error}")
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
            server_log = log.read_text(errors="replace").strip() if log.exists() else ""
    if server_log:
        print("\nuvicorn's log (last lines):\n  " + "\n  ".join(server_log.splitlines()[-15:]))
    if args.drop:
        drop()
        print(f"\nDropped {DATABASE}.")
    else:
        print(f"\nKept {DATABASE} for the next run (--drop removes it, --reload refills it).")
    if failed:
        print(f"MISSED the target: a request failed or a P99 is {TARGET_P99_MS:.0f} ms or more.")
        return 1
    print(f"Target met: no failed request, every P99 under {TARGET_P99_MS:.0f} ms.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
