# Two commands do all the set-up on a fresh machine:
#   make run   – the workbench on its embedded default (SQLite, in-process jobs, local provider, demo);
#                the first run prints the admin's generated password once
#   make test  – lint, types and the whole test suite (TEST_DATABASE_URL=postgresql://... for PostgreSQL)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8501
API_PORT ?= 8000

.PHONY: run api test venv chromium lint typecheck bench demo clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

# Browser tests drive Debian's Chromium; never a downloaded browser build.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for the browser test..."; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  { echo "ERROR: chromium is missing and could not be installed (apt-get install chromium)"; exit 1; }; }

# tests/test_deploy.py validates compose.yaml with `docker compose config`; without the v2 plugin, Debian's
# docker-compose (1.29) does it (no engine needed, nothing is built or started).
.PHONY: compose
compose:
	@docker compose version >/dev/null 2>&1 || docker-compose version >/dev/null 2>&1 || { \
	  echo "Installing Debian's docker-compose to validate compose.yaml..."; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null) || \
	  { echo "ERROR: neither docker compose nor docker-compose works and it could not be installed (apt-get install docker-compose)"; exit 1; }; }

run: venv
	$(PY) -m core migrate
	$(PY) -m core users first-run
	$(PY) -m core demo --if-empty
	$(VENV)/bin/streamlit run app.py --server.port $(PORT)

# The ops HTTP API (FastAPI) beside the workbench, on the same database: bearer tokens from the API tokens page.
api: venv
	$(PY) -m core migrate
	$(VENV)/bin/uvicorn api.app:app --host 127.0.0.1 --port $(API_PORT)

test: venv chromium compose
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy core workers api
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: venv
	$(PY) bench/pipeline.py
	$(PY) bench/gateway_overhead.py

# RQ workers on PostgreSQL and Redis at 127.0.0.1 (throw-away databases bench_throughput and bench_load,
# Redis dbs 12 and 13): scaling over 1, 2 and 4 workers, then 20 users at once (exit 1 if a job is lost).
.PHONY: bench-workers
bench-workers: venv
	$(PY) bench/throughput.py
	$(PY) bench/load.py

# The Costs dashboard on PostgreSQL at 127.0.0.1 (throw-away database bench_dashboard): 1,000,000 usage
# events and 200,000 trajectory events, then each dashboard query's P50 and the Costs page render time.
.PHONY: bench-dashboard
bench-dashboard: venv
	$(PY) bench/dashboard.py

# The ops API under load (throw-away database bench_api, filled like bench_dashboard and kept for reuse):
# the cost summary and the trajectory list served by uvicorn to 10 and 20 clients at once; P50/P95/P99 and
# requests per second, exit 1 if a request fails or a P99 is 500 ms or more.
.PHONY: bench-api
bench-api: venv
	$(PY) bench/api.py

# The golden set with the local provider on a fresh SQLite database in a temporary data directory;
# exits 1 on any regression (a failed expectation or a false support), naming the failing cases.
.PHONY: golden
golden: venv
	@data=$$(mktemp -d) && trap 'rm -rf "$$data"' EXIT && \
	  env -u DATABASE_URL WORKBENCH_DATA_DIR="$$data" WORKBENCH_PROVIDER=local $(PY) -m core golden run --label "$(or $(LABEL),make golden)"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
