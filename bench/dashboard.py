"""The Costs dashboard on PostgreSQL at scale: 1,000,000 usage events, 200,000 trajectory events.

    .venv/bin/python bench/dashboard.py [--runs 7] [--keep]          (or: make bench-dashboard)

Creates a throw-away database ``bench_dashboard`` on 127.0.0.1:5432 (dropped first), migrates it
with the real migrations, then fills it in SQL (``INSERT ... SELECT`` over ``generate_series``, a
fixed seed) with 90 days of history for 5 tenants of unequal size (40/25/17/11/7 %), busier
towards today:

- 200,000 runs of 5 agent calls each: 85 % paragraph runs (Writer, Verifier, Verifier, Rewriter,
  Verifier) and 15 % ingest runs (Librarian); Writer models from four providers' price lists plus a
  local free model and an unpriced fine-tune; 12 % cache hits, 2.5 % errors of four classes,
  log-normal latencies per model; Writer prompt v2 as a canary for half the runs of the last 45 days.
- a paragraph and one version per paragraph run (verified with a probability set by the Writer's
  model and prompt), five sentence checks each with failure modes on the unsupported ones;
- 40,000 trajectories (every fifth run) with 5 events each: 200,000 trajectory events.

Then ANALYZE and VACUUM (the visibility map that lets index-only scans skip the heap), and prints
for the largest tenant and the month window: P50 and max of each dashboard query over ``--runs``
runs, the trajectory list page query, the Costs page fully rendered through Streamlit's AppTest,
and EXPLAIN (ANALYZE, BUFFERS) of the heaviest query. Targets: every query P50 < 300 ms, the page
< 2 s. Prints figures; asserts nothing. About 2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``core`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from psycopg import sql
from sqlalchemy import Engine, event, func, select, text
from sqlalchemy.orm import Session

from core import dashboard, db
from core.models import Trajectory
from core.settings import reset_settings

ROOT = Path(__file__).resolve().parent.parent
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
"""The PostgreSQL server the bench database is created on (trust auth)."""
DATABASE = "bench_dashboard"
RUNS = 200_000
"""Agent runs; each makes 5 calls, so 1,000,000 usage events."""
TRAJECTORY_EVERY = 5
"""Every fifth run was traced: 40,000 trajectories of 5 events, 200,000 trajectory events."""

LOAD = [
    (
        "tenants",
        """
INSERT INTO tenants (id, slug, name, created_at) VALUES
  (1, 'default', 'Default workspace', now() - interval '120 days'),
  (2, 'soil-lab', 'Soil lab', now() - interval '120 days'),
  (3, 'hydrology', 'Hydrology group', now() - interval '120 days'),
  (4, 'agronomy', 'Agronomy unit', now() - interval '120 days'),
  (5, 'climate', 'Climate team', now() - interval '120 days');
SELECT setval(pg_get_serial_sequence('tenants', 'id'), 5);
INSERT INTO manuscripts (id, tenant_id, title, created_at)
  SELECT g, 1 + (g - 1) / 20, 'Manuscript ' || g, now() - interval '100 days' FROM generate_series(1, 100) g;
SELECT setval(pg_get_serial_sequence('manuscripts', 'id'), 100);
""",
    ),
    (
        "runs",
        """
SELECT setseed(0.42);
CREATE UNLOGGED TABLE bench_runs AS
-- ids follow time, as they do when rows arrive as runs happen (and so does the heap's order)
SELECT row_number() OVER (ORDER BY started_at) AS id, *
FROM (
  SELECT CASE WHEN t < 0.40 THEN 1 WHEN t < 0.65 THEN 2 WHEN t < 0.82 THEN 3 WHEN t < 0.93 THEN 4 ELSE 5 END
           AS tenant_id,
         CASE WHEN k < 0.15 THEN 'ingest' ELSE 'paragraph' END AS kind,
         -- half uniform over 90 days, half ramping up towards today: a workbench in growing use
         now() - (CASE WHEN a < 0.5 THEN 90 * b ELSE 90 * (1 - sqrt(b)) END) * interval '1 day' AS started_at,
         CASE WHEN w < 0.45 THEN 'gpt-4.1-mini' WHEN w < 0.75 THEN 'claude-sonnet-4-5' WHEN w < 0.92 THEN 'gpt-4.1'
              WHEN w < 0.97 THEN 'local-small' ELSE 'acme-writer-ft' END AS writer_model,
         CASE WHEN v < 0.7 THEN 'gpt-4.1-nano' ELSE 'claude-haiku-4-5' END AS verifier_model,
         p AS canary, q AS outcome
  FROM (SELECT random() t, random() k, random() a, random() b, random() w, random() v, random() p, random() q
        FROM generate_series(1, %(runs)s) r) s
) timed;
ALTER TABLE bench_runs ADD COLUMN trace_id text;
UPDATE bench_runs SET trace_id = 'bench-' || lpad(id::text, 8, '0');
ALTER TABLE bench_runs ADD COLUMN writer_version text;
UPDATE bench_runs SET writer_version = CASE WHEN started_at > now() - interval '45 days' AND canary < 0.5
                                            THEN 'v2' ELSE 'v1' END;
ALTER TABLE bench_runs ADD PRIMARY KEY (id);
""",
    ),
    (
        "1,000,000 usage events",
        """
INSERT INTO llm_usage_events (tenant_id, trace_id, job_id, paragraph_id, agent, provider, model, prompt_version,
  input_hash, input_tokens, output_tokens, cached_tokens, tokens_estimated, cost_usd, pricing, latency_ms, retries,
  attempts, cache_hit, error_class, routing_tier, routing_reason, routing_score, created_at)
SELECT tenant_id, trace_id, NULL, paragraph_id, agent, provider, model, prompt_version,
  md5(trace_id || c) || md5(c || trace_id), tin, tout, 0, false,
  CASE WHEN hit THEN 0 WHEN model = 'acme-writer-ft' THEN NULL WHEN model LIKE 'local-%%' THEN 0
       ELSE round(((tin * pin + tout * pout) / 1e6)::numeric, 8) END,
  CASE WHEN hit THEN 'cache_hit' WHEN model = 'acme-writer-ft' THEN 'unknown_model'
       WHEN model LIKE 'local-%%' THEN 'free' ELSE 'priced' END,
  CASE WHEN hit THEN 1 + 2 * u1 WHEN err = 'timeout' THEN 30000
       ELSE base * exp(0.45 * sqrt(-2 * ln(greatest(u1, 1e-9))) * cos(2 * pi() * u2)) END,
  CASE WHEN err IS NULL THEN 0 ELSE 1 END, '[]'::json, hit, err,
  CASE WHEN u2 < 0.5 THEN 'standard' WHEN u2 < 0.8 THEN 'simple' ELSE 'complex' END, 'bench', u2,
  started_at + c * interval '4 seconds'
FROM (
  SELECT r.*, e.agent, e.model, e.prompt_version,
         CASE WHEN r.kind = 'paragraph' THEN r.id END AS paragraph_id,
         CASE WHEN e.model LIKE 'claude%%' THEN 'anthropic' WHEN e.model LIKE 'local%%' THEN 'local' ELSE 'openai' END
           AS provider,
         CASE WHEN hit OR x >= 0.025 THEN NULL WHEN x < 0.01 THEN 'timeout' WHEN x < 0.017 THEN 'rate_limit'
                   WHEN x < 0.022 THEN 'server_error' ELSE 'invalid_json' END AS err,
         CASE WHEN hit OR x < 0.025 THEN 0 ELSE (600 + 2400 * u1)::int END AS tin,
         CASE WHEN hit OR x < 0.025 THEN 0 ELSE (80 + 500 * u2)::int END AS tout,
         CASE e.model WHEN 'gpt-4.1' THEN 2.0 WHEN 'gpt-4.1-mini' THEN 0.4 WHEN 'gpt-4.1-nano' THEN 0.1
              WHEN 'claude-sonnet-4-5' THEN 3.0 WHEN 'claude-haiku-4-5' THEN 1.0 ELSE 0 END AS pin,
         CASE e.model WHEN 'gpt-4.1' THEN 8.0 WHEN 'gpt-4.1-mini' THEN 1.6 WHEN 'gpt-4.1-nano' THEN 0.4
              WHEN 'claude-sonnet-4-5' THEN 15.0 WHEN 'claude-haiku-4-5' THEN 5.0 ELSE 0 END AS pout,
         CASE e.model WHEN 'gpt-4.1' THEN 1500 WHEN 'gpt-4.1-mini' THEN 900 WHEN 'gpt-4.1-nano' THEN 400
              WHEN 'claude-sonnet-4-5' THEN 2200 WHEN 'claude-haiku-4-5' THEN 700 WHEN 'local-small' THEN 30
              ELSE 1200 END AS base
  FROM (
    -- volatile random() in a select list is drawn per row (a lateral subquery could be memoized)
    SELECT r.*, c, random() < 0.12 AS hit, random() AS x, random() AS u1, random() AS u2
    FROM bench_runs r CROSS JOIN generate_series(0, 4) c
  ) r
  CROSS JOIN LATERAL (
    SELECT CASE WHEN r.kind = 'ingest' THEN 'librarian'
                ELSE (ARRAY['writer', 'verifier', 'verifier', 'rewriter', 'verifier'])[r.c + 1] END AS agent
  ) a
  CROSS JOIN LATERAL (
    SELECT a.agent,
           CASE a.agent WHEN 'librarian' THEN 'gpt-4.1-mini' WHEN 'verifier' THEN r.verifier_model
                ELSE r.writer_model END AS model,
           CASE a.agent WHEN 'writer' THEN r.writer_version ELSE 'v1' END AS prompt_version
  ) e
) s
ORDER BY started_at, c;
""",
    ),
    (
        "paragraphs, versions and sentence checks",
        """
INSERT INTO paragraphs (id, tenant_id, manuscript_id, position, brief, created_at)
  SELECT id, tenant_id, (tenant_id - 1) * 20 + id %% 20 + 1, id, 'Bench brief ' || id, started_at
  FROM bench_runs WHERE kind = 'paragraph' ORDER BY id;
INSERT INTO paragraph_versions (id, tenant_id, paragraph_id, number, text, status, origin, trace_id, prompt_versions,
                                provider, created_at)
  SELECT id, tenant_id, id, 1, 'Bench paragraph ' || id,
         CASE WHEN outcome < CASE writer_model WHEN 'claude-sonnet-4-5' THEN 0.85 WHEN 'gpt-4.1' THEN 0.8
                                  WHEN 'gpt-4.1-mini' THEN 0.7 WHEN 'local-small' THEN 0.5 ELSE 0.6 END
                             + CASE WHEN writer_version = 'v2' THEN 0.05 ELSE 0 END
              THEN 'verified' ELSE 'needs_review' END,
         'drafted', trace_id,
         json_build_object('writer', writer_version, 'verifier', 'v1', 'rewriter', 'v1'),
         'openai', started_at + interval '25 seconds'
  FROM bench_runs WHERE kind = 'paragraph' ORDER BY id;
INSERT INTO sentence_checks (tenant_id, version_id, ordinal, text, cites, verdict, failure_mode, reason,
                             rewrite_rounds, needs_review)
  SELECT v.tenant_id, v.id, o, 'Sentence ' || o, '["F1"]'::json,
         CASE WHEN bad THEN 'unsupported' ELSE 'supported' END,
         CASE WHEN bad THEN (ARRAY['number_mismatch', 'unsupported_content', 'no_citation', 'negation',
                                   'unit_mismatch', 'hedge_dropped', 'scope_widened'])[1 + (v.id / 7 + o) %% 7] END,
         CASE WHEN bad THEN 'bench' ELSE '' END, CASE WHEN bad THEN 1 ELSE 0 END, bad
  FROM paragraph_versions v
  CROSS JOIN generate_series(1, 5) o
  CROSS JOIN LATERAL (SELECT v.status <> 'verified' AND (o = 1 + v.id %% 5 OR o = 1 + (v.id / 5) %% 5) AS bad) b
  ORDER BY v.id, o;
SELECT setval(pg_get_serial_sequence('paragraphs', 'id'), (SELECT max(id) FROM paragraphs));
SELECT setval(pg_get_serial_sequence('paragraph_versions', 'id'), (SELECT max(id) FROM paragraph_versions));
""",
    ),
    (
        "40,000 trajectories and 200,000 trajectory events",
        """
INSERT INTO trajectories (trace_id, tenant_id, kind, status, paragraph_id, calls, errors, input_tokens, output_tokens,
                          cost_usd, error_class, started_at, ended_at, duration_ms)
  SELECT r.trace_id, r.tenant_id, r.kind, CASE WHEN u.errors > 0 THEN 'error' ELSE 'ok' END,
         CASE WHEN r.kind = 'paragraph' THEN r.id END, u.calls, u.errors, u.tin, u.tout, u.cost, u.err,
         r.started_at, r.started_at + u.ms * interval '1 millisecond', u.ms
  FROM bench_runs r
  CROSS JOIN LATERAL (
    SELECT count(*) AS calls, count(error_class) AS errors, sum(input_tokens) AS tin, sum(output_tokens) AS tout,
           sum(cost_usd) AS cost, max(error_class) AS err, sum(latency_ms) AS ms
    FROM llm_usage_events e WHERE e.trace_id = r.trace_id
  ) u
  WHERE r.id %% %(every)s = 0
  ORDER BY r.id;
INSERT INTO trajectory_events (tenant_id, trace_id, span_id, parent_span_id, kind, name, agent, provider, model,
                               prompt_version, status, error_class, started_at, duration_ms, input_tokens,
                               output_tokens, cost_usd, usage_event_id, attributes, content, key_id)
  SELECT e.tenant_id, e.trace_id, substr(md5(e.id::text), 1, 16), NULL, 'agent', e.agent || ' call', e.agent,
         e.provider, e.model, e.prompt_version, CASE WHEN e.error_class IS NULL THEN 'ok' ELSE 'error' END,
         e.error_class, e.created_at, e.latency_ms, e.input_tokens, e.output_tokens, e.cost_usd, e.id,
         '{}'::json, NULL, NULL
  FROM trajectories t JOIN llm_usage_events e ON e.trace_id = t.trace_id
  ORDER BY e.id;
""",
    ),
]


def recreate_database() -> str:
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    return f"{PG_SERVER}/{DATABASE}"


def load(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        for label, statements in LOAD:
            started = time.perf_counter()
            connection.execute(statements % {"runs": RUNS, "every": TRAJECTORY_EVERY})  # type: ignore[arg-type]
            print(f"  {label}: {time.perf_counter() - started:.1f} s", flush=True)
        started = time.perf_counter()
        connection.execute("DROP TABLE bench_runs")
        # VACUUM sets the visibility map (index-only scans need it) and ANALYZE the statistics;
        # autovacuum does both on a live database as rows arrive.
        connection.execute("VACUUM ANALYZE")
        print(f"  vacuum analyze: {time.perf_counter() - started:.1f} s", flush=True)
        for table in ("llm_usage_events", "trajectory_events", "trajectories", "paragraph_versions", "sentence_checks"):
            rows = connection.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
            size = connection.execute("SELECT pg_size_pretty(pg_total_relation_size(%s))", (table,)).fetchone()
            print(f"  {table}: {rows[0] if rows else 0:,} rows, {size[0] if size else '?'} with indexes")
        index = connection.execute("SELECT pg_size_pretty(pg_relation_size('ix_usage_tenant_created'))").fetchone()
        print(f"  covering index ix_usage_tenant_created: {index[0] if index else '?'}")


def largest_tenant(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text("SELECT tenant_id FROM llm_usage_events GROUP BY tenant_id ORDER BY count(*) DESC LIMIT 1")
            ).scalar_one()
        )


def _trajectories_module() -> Any:
    try:
        from core import trajectories  # the trajectory viewer's queries (issue 5)
    except ImportError:
        return None
    return trajectories if hasattr(trajectories, "list_trajectories") else None


def trajectory_list(session: Session, tenant_id: int) -> Any:
    """The viewer's list page: ``core.trajectories.list_trajectories`` when it exists, else the
    same query written here (newest 50 of the tenant, and how many there are)."""
    viewer = _trajectories_module()
    if viewer is not None:
        return viewer.list_trajectories(session, tenant_id=tenant_id, filters=None, page=1, page_size=50)
    page = session.scalars(
        select(Trajectory).where(Trajectory.tenant_id == tenant_id).order_by(Trajectory.started_at.desc()).limit(50)
    ).all()
    count = session.scalar(select(func.count()).select_from(Trajectory).where(Trajectory.tenant_id == tenant_id))
    return page, count


def queries(tenant_id: int, now: datetime) -> dict[str, Callable[[Session], Any]]:
    w: dict[str, Any] = {"tenant_id": tenant_id, "window": "month", "now": now}
    return {
        "totals (month and the month before)": lambda s: dashboard.totals(s, **w),
        "series (daily buckets)": lambda s: dashboard.series(s, **w),
        "breakdowns (agent, model, provider, prompt)": lambda s: dashboard.breakdowns(s, **w),
        "spend by tenant (admin view, 5 tenants)": lambda s: dashboard.spend_by_tenant(
            s, tenant_ids=[1, 2, 3, 4, 5], window="month", now=now
        ),
        "latency P50/P95 per agent and model": lambda s: dashboard.latency(s, **w),
        "error rates per provider and model": lambda s: dashboard.error_rates(s, **w),
        "paragraph runs (cost per paragraph, model)": lambda s: dashboard.paragraph_runs(s, **w),
        "quality (rates, failure modes, prompts)": lambda s: dashboard.quality_report(s, **w),
        "trajectory list (page 1 of 50 + count)": lambda s: trajectory_list(s, tenant_id),
        **(
            {"trajectory filter options": lambda s: viewer.filter_options(s, tenant_id=tenant_id, now=now)}
            if (viewer := _trajectories_module()) is not None and hasattr(viewer, "filter_options")
            else {}
        ),
    }


def time_queries(engine: Engine, tenant_id: int, runs: int) -> dict[str, float]:
    now = datetime.now(UTC)
    p50s: dict[str, float] = {}
    source = "core.trajectories" if _trajectories_module() is not None else "an equivalent query (no core.trajectories)"
    print(f"\nDashboard queries, tenant {tenant_id}, month window, {runs} runs each (ms); trajectory list: {source}")
    print(f"  {'query':42} {'P50':>8} {'max':>8}")
    for name, run in queries(tenant_id, now).items():
        times = []
        for _ in range(runs):
            with db.session_scope(engine) as s:
                started = time.perf_counter()
                run(s)
                times.append((time.perf_counter() - started) * 1000)
        p50s[name] = statistics.median(times)
        flag = "" if p50s[name] < 300 else "  OVER 300 ms"
        print(f"  {name:42} {p50s[name]:8.1f} {max(times):8.1f}{flag}", flush=True)
    return p50s


def _plans(engine: Engine, run: Callable[[Session], Any], explain: str) -> list[list[str]]:
    """The plan of each statement ``run`` sends (captured as sent, then explained in one
    transaction with the reporting settings it runs with)."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with db.session_scope(engine) as s:
            run(s)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    plans = []
    with engine.begin() as connection:
        for statement, parameters in captured:
            if statement.startswith("SET "):
                connection.exec_driver_sql(statement, parameters)
                continue
            plans.append([row[0] for row in connection.exec_driver_sql(f"{explain} {statement}", parameters)])
    return plans


def explain(engine: Engine, tenant_id: int, heaviest: str) -> None:
    """Which index each query's statements scan, then the full plan of the heaviest query."""
    print("\nScans per query (EXPLAIN):")
    for name, run in queries(tenant_id, datetime.now(UTC)).items():
        scans = {
            line.strip().removeprefix("->").strip().split("  (")[0]
            for plan in _plans(engine, run, "EXPLAIN")
            for line in plan
            if " Scan " in f" {line.strip().removeprefix('->').strip()}" and "CTE Scan" not in line
        }
        print(f"  {name:42} {'; '.join(sorted(scans))}")
    print(f"\nEXPLAIN (ANALYZE, BUFFERS) of the heaviest query, {heaviest}:")
    for plan in _plans(engine, queries(tenant_id, datetime.now(UTC))[heaviest], "EXPLAIN (ANALYZE, BUFFERS)"):
        print("\n".join("  " + line for line in plan))


def time_page(url: str, runs: int) -> None:
    """The Costs page through the whole app (app.py, its frame, then the page), as a user opens it."""
    import streamlit as st
    from streamlit.runtime import pages_manager
    from streamlit.testing.v1 import AppTest

    # As in tests/conftest.py: keep Streamlit out of its legacy pages/ folder mode, which AppTest
    # would otherwise restore before each run and so run the page file without the frame.
    original_init = pages_manager.PagesManager.__init__

    def init_as_after_navigation(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        pages_manager.PagesManager.uses_pages_directory = False

    pages_manager.PagesManager.__init__ = init_as_after_navigation  # type: ignore[method-assign]
    os.environ["DATABASE_URL"] = url
    os.environ["WORKBENCH_PROVIDER"] = "local"
    os.environ.pop("REDIS_URL", None)
    times: list[float] = []
    metrics: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as data_dir:
        os.environ["WORKBENCH_DATA_DIR"] = data_dir
        st.cache_resource.clear()
        reset_settings()
        # Open the Costs page directly (the default page, Write, is not what is measured here).
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.switch_page("pages/costs.py").run()
        at.radio(key="costs_window").set_value("month")
        for _ in range(runs):
            started = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - started)
            if at.exception:
                print(f"  the page raised: {at.exception}")
                return
        metrics = {m.label: m.value for m in at.metric}
    print(f"\nCosts page fully rendered (AppTest: app.py frame and the page, month window), {runs} runs:")
    print(f"  P50 {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms (target < 2000 ms)")
    print("  metrics shown: " + "; ".join(f"{k}: {v}" for k, v in metrics.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=7, help="timed runs per query")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards (to explore it)")
    parser.add_argument("--reuse", action="store_true", help="time an existing bench database, no reload")
    args = parser.parse_args()
    url = f"{PG_SERVER}/{DATABASE}"
    if not args.reuse:
        print(f"Loading {DATABASE} (drop, create, migrate, fill):", flush=True)
        started = time.perf_counter()
        url = recreate_database()
        engine = db.get_engine(url)
        db.migrate(engine)
        load(url)
        print(f"  loaded in {time.perf_counter() - started:.0f} s")
    engine = db.get_engine(url)
    tenant = largest_tenant(engine)
    p50s = time_queries(engine, tenant, args.runs)
    explain(engine, tenant, max(p50s, key=lambda k: p50s[k]))
    time_page(url, max(3, args.runs // 2))
    if not args.keep and not args.reuse:
        engine.dispose()
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))


if __name__ == "__main__":
    main()
