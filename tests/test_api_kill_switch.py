"""The kill-switch drill (issue 8, Must show 3): the real API served by uvicorn in a subprocess on the
test database, thrown by ``curl`` as an incident script would. It stops queued and new generation,
shows on every page, is in the audit log, and is released by ``curl`` too."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from core import audit, authz, controls, job_runner, jobs
from tests.api_helpers import token, user
from tests.test_controls_ui import frozen_banners
from tests.ui_helpers import PAGES, MakeApp, seed_drafted

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="the drill is run with curl")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(clean_db: Engine) -> Iterator[str]:
    """``uvicorn api.app:app`` on a free port, against the test database (the environment conftest set)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.app:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "WORKBENCH_PROVIDER": "local"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while curl("GET", f"{base}/health")[0] not in (200, 503):
            assert server.poll() is None, server.stderr.read() if server.stderr else "uvicorn exited"
            assert time.monotonic() < deadline, "uvicorn did not answer within 60 s"
            time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def curl(method: str, url: str, *, secret: str | None = None, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """What an incident script runs: ``curl -sS -X ... -H 'Authorization: Bearer ...' -d '{...}'``."""
    command = ["curl", "-sS", "-X", method, "-w", "\n%{http_code}", url]
    if secret:
        command += ["-H", f"Authorization: Bearer {secret}"]
    if body is not None:
        command += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:  # not listening yet
        return 0, None
    text, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(text) if text else None


def test_the_kill_switch_thrown_by_curl_stops_queued_and_new_generation_shows_everywhere_and_is_audited(
    served: str, clean_db: Engine, make_app: MakeApp
) -> None:
    seeded = seed_drafted(clean_db)
    tenant_id = seeded.identity.tenant_id
    admin = user(clean_db, role="admin")
    admin_secret = token(clean_db, admin)
    researcher_secret = token(clean_db, seeded.identity)
    # A draft waiting in its queue when the incident starts (recorded QUEUED; no worker has taken it yet).
    queued = jobs.submit(
        clean_db,
        tenant_id=tenant_id,
        user_id=seeded.identity.user_id,
        kind="draft",
        payload={"paragraph_id": seeded.paragraph_id},
        trace_id="queued-before-the-drill",
    )

    status, switch = curl("POST", f"{served}/admin/kill-switch", secret=admin_secret, body={"reason": "drill"})
    assert status == 200 and switch["engaged"] and switch["changed"] and switch["reason"] == "drill"
    assert controls.status(clean_db).kill_switch.engaged

    # The queued job, when a worker picks it up: cancelled before it starts, with the reason.
    ended = job_runner.execute(clean_db, queued, worker="drill", dispatch=lambda _id, _queue: None)
    view = jobs.status(clean_db, tenant_id=tenant_id, job_id=queued)
    assert ended == jobs.CANCELLED == view.state and "drill" in (view.error or "")
    # New work is refused at the door, and nothing is queued.
    status, refused = curl(
        "POST",
        f"{served}/api/v1/paragraphs",
        secret=researcher_secret,
        body={"manuscript_id": seeded.manuscript_id, "brief": "Nitrate leaching under biochar"},
    )
    assert status == 409 and "kill switch" in refused["error"]["message"] and "drill" in refused["error"]["message"]
    assert curl("GET", f"{served}/health")[0] == 503

    # Every page shows the banner.
    for page in PAGES:
        at = make_app(page, role="admin")
        banners = frozen_banners(at)
        assert len(banners) == 1 and "drill" in banners[0], (page, banners)

    # The audit log names the token's user.
    with clean_db.connect() as connection:
        (entry,) = audit.search(connection, viewer=authz.cli_identity(tenant_id), event_types=[audit.KILL_SWITCH])
    assert entry.subject == "engaged" and entry.actor_user_id == admin.user_id
    assert admin.name in entry.actor and "via token obw_" in entry.actor and entry.details["reason"] == "drill"

    # Released by curl too: healthy again, and the release is audited after the engagement.
    status, released = curl("POST", f"{served}/admin/kill-switch/release", secret=admin_secret)
    assert status == 200 and not released["engaged"] and released["changed"]
    assert curl("GET", f"{served}/health")[0] == 200
    with clean_db.connect() as connection:
        latest = audit.search(connection, viewer=authz.cli_identity(tenant_id), event_types=[audit.KILL_SWITCH])
    assert [e.subject for e in latest] == ["released", "engaged"]
