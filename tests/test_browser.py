"""The real server in Debian's Chromium: create, upload, draft, read the verdicts and the quoted source.

Starts ``streamlit run app.py`` on a free port against a database in a temp dir, drives it with
Playwright's sync API and Debian's ``/usr/bin/chromium`` (never a downloaded browser), and saves
``docs/screenshot.png`` for the README.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from core import accounts, authz, db
from core.demo_corpus import DEMO_BRIEFS, demo_pdfs
from core.tenancy import bootstrap
from tests.test_prompts_page import PromptSet, candidate_prompts
from tests.ui_helpers import APP

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = APP.parent / "docs" / "screenshot.png"
TIMEOUT_MS = 120_000
EMAIL, PASSWORD = "ana@lab.example", "browser test password"
ENGINEER = "pat@lab.example"
"""The prompt engineer who, after the researcher, compares two prompt versions on the Prompts page."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    raise RuntimeError(f"streamlit did not answer within {timeout}s:\n{log.read_text()}")


def _pick(page: Page, label: str, option: str) -> None:
    """Choose ``option`` in the Streamlit selectbox labelled ``label``."""
    from playwright.sync_api import expect

    box = page.get_by_label(label, exact=True)
    box.click()
    if box.get_attribute("aria-expanded") != "true":  # the click focused it without opening the list
        box.press("ArrowDown")
    page.get_by_role("option", name=option, exact=True).click()
    expect(box).to_have_value(option)


def _add_researcher(database_url: str) -> None:
    """The account the test signs in with, in the server's database (migrated here first)."""
    engine = db.get_engine(database_url)
    db.migrate(engine)
    with db.session_scope(engine) as session:
        by = authz.cli_identity(bootstrap(session).tenant_id)
        accounts.create_user(
            session,
            by=by,
            tenant_id=by.tenant_id,
            email=EMAIL,
            display_name="Ana Researcher",
            role="researcher",
            password=PASSWORD,
        )
        accounts.create_user(
            session,
            by=by,
            tenant_id=by.tenant_id,
            email=ENGINEER,
            display_name="Pat Engineer",
            role="prompt_engineer",
            password=PASSWORD,
        )
    engine.dispose()


@pytest.fixture
def prompt_set(tmp_path: Path) -> PromptSet:
    """The shipped prompts and two Writer candidates, the server's prompts folder."""
    return candidate_prompts(tmp_path / "prompts")


@pytest.fixture
def server(tmp_path: Path, prompt_set: PromptSet) -> Iterator[str]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (make chromium installs it)")
    port = _free_port()
    database_url = f"sqlite:///{tmp_path / 'browser.db'}"
    _add_researcher(database_url)
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env |= {
        "DATABASE_URL": database_url,
        "WORKBENCH_DATA_DIR": str(tmp_path),
        "WORKBENCH_PROVIDER": "local",
        "WORKBENCH_PROMPTS_DIR": str(tmp_path / "prompts"),
    }
    log = tmp_path / "streamlit.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(APP),
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
            ],
            cwd=APP.parent,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def test_researcher_drafts_a_verified_paragraph_from_a_pdf(server: str, prompt_set: PromptSet) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1250})
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)
            # The first request after start-up is a deep link: it must still run inside the frame
            # (app.py: sign-in, navigation, status, banner), not the page file on its own. Signed
            # out, that is the sign-in form and nothing else; signed in, the page that was asked for.
            page.goto(f"{server}/write")
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
            expect(page.get_by_text("Provider: local (offline, no cost)")).to_have_count(0)
            page.get_by_label("E-mail").fill(EMAIL)
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_text("Signed in as Ana Researcher (ana@lab.example) · researcher")).to_be_visible()
            expect(page.get_by_role("heading", name="Write")).to_be_visible()
            expect(page.get_by_text("Provider: local (offline, no cost)")).to_be_visible()
            expect(page.get_by_text("Page not found")).to_have_count(0)
            expect(page.get_by_role("link", name="app")).to_have_count(0)

            # A first manuscript.
            expect(page.get_by_text("Start with a manuscript")).to_be_visible()
            page.get_by_label("Title").fill("Biochar and microbes under drought")
            page.get_by_role("button", name="Create manuscript").click()
            expect(page.get_by_role("heading", name="Sources")).to_be_visible()

            # Upload the demo PDFs; each one finishes ingesting with its facts counted.
            pdfs = demo_pdfs()
            page.locator("input[type='file']").set_input_files(
                [{"name": name, "mimeType": "application/pdf", "buffer": data} for name, data in pdfs]
            )
            expect(page.get_by_text(f"Documents · {len(pdfs)}")).to_be_visible()
            report = page.get_by_test_id("stAlertContentSuccess")
            for name, _ in pdfs:
                expect(report).to_contain_text(re.compile(re.escape(name) + r": \d+ pages, \d+ facts extracted"))

            # A paragraph brief, then Draft.
            page.get_by_label("Brief for a new paragraph").fill(DEMO_BRIEFS[0])
            page.get_by_role("button", name="Add paragraph").click()
            expect(page.get_by_text("Paragraph 1")).to_be_visible()
            page.get_by_role("button", name="Draft", exact=True).click()
            expect(page.get_by_text(re.compile(r"Version 1 · drafted"))).to_be_visible()

            # Sentences with verdicts and citation chips.
            expect(page.get_by_text(re.compile(r"Supported$")).first).to_be_visible()
            chips = page.get_by_role("button", name=re.compile(r"F\d+"))
            assert chips.count() >= 1, "drafted sentences cite facts"
            expect(page.get_by_text(re.compile(r"(Verified|Needs review · \d+ of \d+ sentences)$"))).to_be_visible()

            # A citation chip opens the fact with its verbatim quote, document and page.
            chips.first.click()
            expect(page.get_by_text("Verbatim quote")).to_be_visible()
            expect(page.get_by_text(re.compile(r"\.pdf, page \d+"))).to_be_visible()

            # For the README: the paragraph at the top of the view, the last sentence's source open.
            page.keyboard.press("Escape")
            page.get_by_text("Paragraph 1", exact=True).evaluate("e => e.scrollIntoView({block: 'start'})")
            chips.last.click()
            expect(page.get_by_text("Verbatim quote")).to_be_visible()
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=False)

            # A prompt engineer picks two Writer versions, runs the golden set for each and sees the
            # two paragraphs of every case side by side, with the metrics table (issue 7, Must show 4).
            page.get_by_role("button", name="Sign out").click()
            page.get_by_label("E-mail").fill(ENGINEER)
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("link", name="Prompts").click()
            expect(page.get_by_role("heading", name="Prompts")).to_be_visible()
            _pick(page, "Agent", prompt_set.agent)
            run_weak = page.get_by_role("button", name=f"Run golden set for {prompt_set.agent} {prompt_set.weak}")
            expect(run_weak).to_be_visible()  # the page has run again for this agent
            _pick(page, "Version A", prompt_set.base)
            _pick(page, "Version B", prompt_set.weak)
            for version in (prompt_set.base, prompt_set.weak):
                page.get_by_role("button", name=f"Run golden set for {prompt_set.agent} {version}").click()
                expect(page.get_by_text(f"{prompt_set.agent} {version} has no finished golden run")).to_have_count(0)
            expect(page.get_by_text("B is worse than A on: Cases passed")).to_be_visible()
            case = page.get_by_text("Case hedges", exact=True)
            expect(case).to_be_visible()
            box = case.locator("xpath=ancestor::div[@data-testid='stVerticalBlock'][1]")
            columns = box.get_by_test_id("stColumn")
            expect(columns).to_have_count(2)
            expect(columns.nth(0)).to_contain_text(re.compile(r"^A · passed · verified"))
            expect(columns.nth(1)).to_contain_text(re.compile(r"^B · failed · verified"))  # max_sentences: 2
            for column in (columns.nth(0), columns.nth(1)):
                first = column.get_by_text(re.compile(r"^1\. .*\bsupported · cites F\d+"))
                expect(first).to_be_visible()
        finally:
            browser.close()
