"""Deployment as documented: compose.yaml, the README's Production section and the systemd units.

1. ``docker compose config`` (or Debian's ``docker-compose config``, which ``make compose`` installs) accepts
   compose.yaml with deploy/env.example and renders every service; a broken copy is rejected.
2. The README's ``## Production`` section, followed block by block on this machine: the test starts a
   throw-away PostgreSQL cluster and a Redis of its own on free ports, points the section's site variables
   at them (``WORKBENCH_PROVIDER=local``), runs every fenced ``bash`` block in order in one bash (as the
   section asks: one shell), then checks the app, ``GET /health`` with both workers, and a draft queued over
   the API that succeeds on those workers. Marker: a block right after ``<!-- deploy-test: check-only CMD
   ... -->`` only installs packages, so instead of running it the test checks that each CMD is on PATH
   (or, with a slash, is an executable under the checkout). Everything it starts is stopped and every
   directory it made is removed at the end, pass or fail.
3. The systemd units: every Exec line names an executable that exists and arguments the project's own
   parsers (argparse for ``core`` and ``workers``, click for streamlit and uvicorn) accept; then
   ``systemd-analyze verify`` when it is installed.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "deploy" / "systemd"
ENV_EXAMPLE = ROOT / "deploy" / "env.example"
INSTALL_DIR = "/srv/opusblocks/"  # where docs/deploy.md puts the checkout; the units name it
SERVICES = {"postgres", "redis", "migrate", "release-check", "app", "worker", "api"}
CHECK_ONLY = re.compile(r"<!--\s*deploy-test:\s*check-only\s+(?P<commands>[^>]*?)\s*-->\s*$")


# -- 1. compose.yaml -----------------------------------------------------------------------------------


def _compose() -> list[str]:
    for command in (["docker", "compose"], ["docker-compose"]):
        with contextlib.suppress(OSError):
            if subprocess.run([*command, "version"], capture_output=True, timeout=60).returncode == 0:
                return command
    pytest.fail("Neither `docker compose` nor `docker-compose` works here: run `make compose` (make test does).")


def _compose_config(compose_file: Path, env_file: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "WORKBENCH_ENV_FILE": str(env_file)}
    return subprocess.run(
        [*_compose(), "--env-file", str(env_file), "-f", str(compose_file), "config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=compose_file.parent,
        timeout=120,
    )


def test_compose_config_accepts_the_stack_and_rejects_a_broken_copy(tmp_path: Path) -> None:
    rendered = _compose_config(ROOT / "compose.yaml", ENV_EXAMPLE)
    assert rendered.returncode == 0, rendered.stderr
    config = yaml.safe_load(rendered.stdout)
    services = config["services"]
    assert set(services) == SERVICES

    assert services["worker"]["deploy"]["replicas"] == 2
    for name in ("app", "worker", "api"):
        service = services[name]
        assert service["depends_on"]["release-check"]["condition"] == "service_completed_successfully"
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        # One volume holds the stored PDFs for the app and every worker.
        assert any(v.startswith("workbench-data:/data") for v in service["volumes"]), service["volumes"]
        assert service["environment"]["WORKBENCH_DATA_DIR"] == "/data"
        assert "@postgres:5432/workbench" in service["environment"]["DATABASE_URL"]
        assert service["environment"]["WORKBENCH_ENV"] == "production"  # from the env file
    assert services["release-check"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["release-check"]["command"] == ["python", "-m", "core", "release", "check"]
    assert {"postgres", "redis", "app", "api"} <= {n for n, s in services.items() if "healthcheck" in s}

    # A typo in a key is refused, naming it, so the check above can fail.
    text = (ROOT / "compose.yaml").read_text()
    broken = tmp_path / "compose.yaml"
    broken.write_text(text.replace("    stop_grace_period: 10m\n", "    stop_grace_period: 10m\n    replica: 3\n"))
    assert broken.read_text() != text
    refused = _compose_config(broken, ENV_EXAMPLE)
    assert refused.returncode != 0
    assert "replica" in refused.stderr

    # An env file without the database password is refused with the message compose.yaml gives.
    no_password = tmp_path / "workbench.env"
    no_password.write_text(re.sub(r"(?m)^POSTGRES_PASSWORD=.*\n", "", ENV_EXAMPLE.read_text()))
    refused = _compose_config(ROOT / "compose.yaml", no_password)
    assert refused.returncode != 0
    assert "set POSTGRES_PASSWORD in the env file" in refused.stderr


# -- 2. the README's Production section, followed on this machine ---------------------------------------


@dataclass(frozen=True)
class Step:
    number: int
    title: str
    code: str
    check_only: tuple[str, ...]


def production_steps(readme: str) -> list[Step]:
    """The ``bash`` blocks of the README's ``## Production`` section in order, each with the bold step
    title above it and, when marked, the commands to check instead of running it."""
    section = readme.split("\n## Production\n", 1)[1].split("\n## ", 1)[0]
    steps: list[Step] = []
    title = ""
    marker: tuple[str, ...] = ()
    lines = iter(section.splitlines())
    for line in lines:
        if heading := re.match(r"\*\*(\d+\.[^*]*)\*\*", line):
            title = heading.group(1).rstrip(".:")
        elif mark := CHECK_ONLY.match(line):
            marker = tuple(mark.group("commands").split())
        elif line.strip() == "```bash":
            code = []
            for body in lines:
                if body.strip() == "```":
                    break
                code.append(body)
            steps.append(Step(len(steps) + 1, title, "\n".join(code) + "\n", marker))
            marker = ()
        elif line.strip().startswith("```"):
            pytest.fail(f"README Production: a block that is not ```bash after {title!r}; make each step a bash block")
    return steps


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until(what: str, ready: Any, timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = ready()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def _pg_bin() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if not candidates:
        pytest.fail("PostgreSQL server binaries are missing (apt-get install postgresql)")
    return candidates[-1].parent


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[int]:
    """A PostgreSQL cluster of its own in a temp dir, trust auth on 127.0.0.1:<free port>; removed at the end."""
    bin_dir = _pg_bin()
    base = Path(tempfile.mkdtemp(prefix="deploy-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        as_postgres = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres", "postgres")
    data, port = base / "data", _free_port()
    ctl = [*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run(
            [*as_postgres, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = f"-p {port} -c listen_addresses=127.0.0.1 -k {base} -c fsync=off"
        started = subprocess.run(
            [*ctl, "-l", str(base / "server.log"), "-o", options, "-w", "-t", "60", "start"],
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert started.returncode == 0, started.stderr + _tail(base / "server.log")
        yield port
    finally:
        subprocess.run([*ctl, "-m", "immediate", "-w", "-t", "30", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def throwaway_redis(directory: Path) -> Iterator[int]:
    """``redis-server --port N`` of its own, no persistence; stopped at the end."""
    port = _free_port()
    options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"]
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--dir", str(directory), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def pong() -> bool:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
            return False

        _wait_until("redis-server answering PING", pong, 30)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group: the README's `&` processes outlive their bash."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(stat.parent.name))
    return members


def _stop_group(pgid: int) -> None:
    """SIGTERM (workers finish their job), then SIGKILL whatever is left after a bounded wait."""
    for sig, grace in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + grace
        while _group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not _group_members(pgid):
            return


def _tail(path: Path, lines: int = 60) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _http(url: str, *, method: str = "GET", token: str | None = None, body: Any = None) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode())
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _with_env_file(env: dict[str, str], command: str) -> subprocess.CompletedProcess[str]:
    """``command`` in a shell that loaded the env file the README wrote, as its later steps run."""
    script = f'set -euo pipefail; set -a; . "$ENV_FILE"; set +a; {command}'
    return subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


TOKEN_SNIPPET = """
from core import accounts, api_tokens, db
with db.session_scope() as s:
    admin = accounts.identity_of(s, user_id=accounts.user_id_by_email(s, email="admin@localhost"))
    secret, _view = api_tokens.create(s, by=admin, name="deploy test", days=1)
print(secret)
"""


@pytest.mark.slow  # about a minute: each step is a fresh process, as an operator runs it
def test_production_section_is_followed_step_by_step() -> None:
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("starts its own PostgreSQL and Redis, so it runs once, in the SQLite pass of make test")
    steps = production_steps((ROOT / "README.md").read_text())
    assert len(steps) >= 10, [s.title for s in steps]

    for step in (s for s in steps if s.check_only):
        for command in step.check_only:
            found = os.access(ROOT / command, os.X_OK) if "/" in command else shutil.which(command)
            assert found, f"step {step.number} ({step.title}) needs {command}, which is missing here"
    script = ["set -euo pipefail"]
    for step in (s for s in steps if not s.check_only):
        script += [f'echo {shlex.quote(f"::step {step.number}: {step.title}")} "(at $SECONDS s)"', step.code]

    work = Path(tempfile.mkdtemp(prefix="deploy-readme-"))
    log = work / "readme-run.log"
    run: subprocess.Popen[bytes] | None = None
    try:
        (work / "home").mkdir()
        (work / "redis").mkdir()
        with throwaway_postgres() as pg_port, throwaway_redis(work / "redis") as redis_port:
            app_port, api_port = _free_port(), _free_port()
            env = {
                "PATH": os.environ["PATH"],
                "HOME": str(work / "home"),
                "LANG": "C.UTF-8",
                # The site values of step 2, pointing at what this test started.
                "PGHOST": "127.0.0.1",
                "PGPORT": str(pg_port),
                "PGUSER": "postgres",
                "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                "ENV_FILE": str(work / "etc" / "workbench.env"),
                "WORKBENCH_DATA_DIR": str(work / "data"),
                "BACKUP_DIR": str(work / "backups"),
                "WORKBENCH_PROVIDER": "local",
                "APP_PORT": str(app_port),
                "API_PORT": str(api_port),
            }
            with log.open("wb") as output:
                run = subprocess.Popen(
                    ["bash", "-c", "\n".join(script)],
                    cwd=ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: the `&` services are stopped with it
                )
            try:
                code = run.wait(timeout=420)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the README's Production steps did not finish within 420 s:\n{_tail(log)}")
            if code != 0:
                done = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("::step")]
                failed = done[-1] if done else "before the first step"
                pytest.fail(f"README Production failed at {failed} (exit {code}):\n{_tail(log)}")

            _check_running_stack(env, app_port, api_port, pg_port)
    finally:
        if run is not None:
            _stop_group(run.pid)  # the bash ran as its process group's leader (start_new_session)
            with contextlib.suppress(subprocess.TimeoutExpired):
                run.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def _check_running_stack(env: dict[str, str], app_port: int, api_port: int, pg_port: int) -> None:
    """The app serves, /health lists both workers alive, and a draft queued over the API succeeds on them."""
    assert _http(f"http://127.0.0.1:{app_port}/_stcore/health") == (200, "ok")
    status, page = _http(f"http://127.0.0.1:{app_port}/")
    assert status == 200 and 'id="root"' in page

    host = subprocess.run(["hostname"], capture_output=True, text=True, check=True).stdout.strip()
    workers = {f"{host}-1", f"{host}-2"}  # the names step 10 gives them
    status, body = _http(f"http://127.0.0.1:{api_port}/health")
    health = json.loads(body)
    assert status == 200 and health["healthy"], health
    detail = next(c["detail"] for c in health["checks"] if c["name"] == "Workers")
    assert detail.startswith("2 alive") and all(name in detail for name in workers), detail

    seeded = _with_env_file(env, ".venv/bin/python -m core demo")
    assert seeded.returncode == 0, seeded.stderr
    seeded_id = re.search(r"seeded demo manuscript (\d+)", seeded.stdout)
    assert seeded_id, seeded.stdout
    manuscript_id = int(seeded_id.group(1))
    minted = _with_env_file(env, f".venv/bin/python -c {shlex.quote(TOKEN_SNIPPET)}")
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip().splitlines()[-1]

    status, body = _http(
        f"http://127.0.0.1:{api_port}/api/v1/paragraphs",
        method="POST",
        token=token,
        body={"manuscript_id": manuscript_id, "brief": "What did biochar do to nitrate leaching?"},
    )
    assert status == 202, body
    queued = json.loads(body)

    def ended() -> dict[str, Any] | None:
        code, text = _http(f"http://127.0.0.1:{api_port}{queued['status_url']}", token=token)
        assert code == 200, text
        draft = json.loads(text)
        return draft if draft["state"] in ("SUCCEEDED", "FAILED", "CANCELLED") else None

    draft = _wait_until("the queued draft to end", ended, 120)
    assert draft["state"] == "SUCCEEDED", draft
    assert draft["version"] and draft["version"]["sentences"], draft
    # The Writer on the generation queue, then the verification it queued: both on the README's workers.
    assert [(j["kind"], j["state"]) for j in draft["jobs"]] == [("draft", "SUCCEEDED"), ("verify_draft", "SUCCEEDED")]

    query = f"select worker from jobs where trace_id = '{queued['trace_id']}' and state = 'SUCCEEDED'"
    ran_on = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres", "-d", "workbench", "-Atc", query],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    assert len(ran_on) == 2 and set(ran_on) <= workers, ran_on


# -- 3. the systemd units --------------------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, list[str]]:
    """``Section.Key`` -> values in order (systemd allows a key more than once); comments skipped."""
    entries: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        entries.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return entries


def _specifiers(value: str) -> str:
    # What systemd puts in: %H the host name, %i the instance (opusblocks-worker@1), %% a percent sign.
    return value.replace("%%", "\0").replace("%H", "host").replace("%i", "1").replace("\0", "%")


def exec_problems(unit_text: str) -> list[str]:
    """Why the unit's Exec lines would not start what they mean to; empty when every one would."""
    problems = []
    entries = parse_unit(unit_text)
    lines = [v for k, vs in entries.items() if k.split(".", 1)[1].startswith("Exec") for v in vs]
    if entries.get("Service.Type") != ["oneshot"] and len(entries.get("Service.ExecStart", [])) != 1:
        problems.append("a long-running service needs exactly one ExecStart")
    for line in lines:
        argv = shlex.split(_specifiers(line.lstrip("-@+!:")))
        executable = argv[0]
        local = ROOT / executable.removeprefix(INSTALL_DIR) if executable.startswith(INSTALL_DIR) else Path(executable)
        if not os.access(local, os.X_OK):
            problems.append(f"{executable} is not an executable here ({local})")
            continue
        try:
            problems += _argument_problems(Path(executable).name, argv[1:])
        except SystemExit as exit_:  # argparse reports a bad argument by exiting
            problems.append(f"{line}: the arguments do not parse (exit {exit_.code})")
        except Exception as error:  # a click parse error, or an entry point that does not import
            problems.append(f"{line}: {type(error).__name__}: {error}")
    return problems


def _argument_problems(program: str, args: list[str]) -> list[str]:
    if program.startswith("python"):
        if args[:1] != ["-m"] or len(args) < 2:
            return [f"python without -m MODULE: {args}"]
        module, rest = args[1], args[2:]
        if module == "workers":
            importlib.import_module("workers.__main__").parse_args(rest)
            return []
        if module == "core":
            parsed = importlib.import_module("core.cli").build_parser().parse_args(rest)
            return [] if callable(getattr(parsed, "func", None)) else [f"core {rest}: no command"]
        return [f"python -m {module}: not a workbench entry point"]
    if program == "streamlit":
        from streamlit.web import cli

        context = cli.main.commands[args[0]].make_context(args[0], args[1:])
        target = ROOT / str(context.params["target"])
        return [] if target.is_file() else [f"streamlit target {target} is missing"]
    if program == "uvicorn":
        context = importlib.import_module("uvicorn.main").main.make_context("uvicorn", list(args))
        module, _, attribute = str(context.params["app"]).partition(":")
        return [] if hasattr(importlib.import_module(module), attribute) else [f"{context.params['app']} not found"]
    if program == "find":
        return []
    return [f"{program}: not a command this check knows; teach tests/test_deploy.py"]


def _unit_files() -> list[Path]:
    return sorted(UNITS.glob("*.service")) + sorted(UNITS.glob("*.timer"))


def test_systemd_units_start_commands_that_exist(tmp_path: Path) -> None:
    names = {p.name for p in _unit_files()}
    assert {"opusblocks-app.service", "opusblocks-api.service", "opusblocks-worker@.service"} <= names
    for unit in (p for p in _unit_files() if p.suffix == ".service"):
        text = unit.read_text()
        assert exec_problems(text) == [], unit.name
        entries = parse_unit(text)
        # The same environment file and checkout for every process (docs/deploy.md).
        assert entries["Service.EnvironmentFile"] == ["/etc/opusblocks/workbench.env"], unit.name
        assert entries["Service.WorkingDirectory"] == ["/srv/opusblocks"], unit.name
    worker = parse_unit((UNITS / "opusblocks-worker@.service").read_text())
    assert worker["Service.KillSignal"] == ["SIGTERM"] and int(worker["Service.TimeoutStopSec"][0]) >= 60
    timer = parse_unit((UNITS / "opusblocks-backup.timer").read_text())
    assert timer["Timer.Persistent"] == ["true"]

    # The check can fail: a misspelt flag, an unknown command and a missing executable are each named.
    app = (UNITS / "opusblocks-app.service").read_text()
    worker_text = (UNITS / "opusblocks-worker@.service").read_text()
    assert exec_problems(app.replace("--server.port", "--server.prot"))
    assert exec_problems(worker_text.replace("--name", "--nmae"))
    assert exec_problems(worker_text.replace("-m workers", "-m core backups"))
    assert exec_problems(app.replace(".venv/bin/streamlit", ".venv/bin/streamlitt"))

    if not shutil.which("systemd-analyze"):
        return  # the parse above stands; systemd's own verification needs systemd-analyze
    for unit in _unit_files():
        # Checked in place of /srv/opusblocks: systemd-analyze verifies that each ExecStart is executable.
        (tmp_path / unit.name).write_text(unit.read_text().replace(INSTALL_DIR, f"{ROOT}/"))
    verify = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    ours = [line for line in (verify.stdout + verify.stderr).splitlines() if "opusblocks" in line]
    assert verify.returncode == 0 and not ours, verify.stdout + verify.stderr
