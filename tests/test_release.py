"""``python -m core release check`` (Must show 1): it fails, naming the item, on a pending migration, a
failing golden run, an unpinned prompt, a missing key (provider and encryption) and a development key in
production; it passes on a correct setup, with the local provider and with OpenAI (the fake server).

Everything is set up through the real core: golden runs of the local provider, activations through
``core.deployments``, a backup through ``python -m core backup``. The command is driven through
``core.cli.main`` and its table read from standard output.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from core import authz, cli, crypto, prompts, release
from core.errors import PermissionDeniedError
from core.golden_runner import run_golden
from core.models import AuditEntry, ReleaseCheck
from core.release_items import COSTS, GOLDEN, ITEMS, MIGRATIONS, PINNED, ROLLBACK, SECRETS
from core.settings import get_settings, reset_settings
from core.tenancy import Identity
from tests.fakellm import FakeLLM
from tests.release_helpers import (
    database_at,
    forget_engines,
    fresh_key,
    pin_every_agent,
    release_prompts,
    revision_of,
    use_database,
    use_prompts,
    use_ring,
)


@pytest.fixture(autouse=True)
def _settings_follow_the_environment() -> Iterator[None]:
    # Set up before each test's monkeypatch, so torn down after it has put the environment back.
    yield
    reset_settings()
    forget_engines()


@dataclass(frozen=True)
class Check:
    code: int
    out: str
    err: str

    def row(self, item: str) -> str:
        """The table's line of ``item``."""
        [line] = [line for line in self.out.splitlines() if line.startswith(item + " ")]
        return line

    def passed(self, item: str) -> bool:
        return self.row(item)[len(item) :].split()[0] == "PASS"


def check(capsys: pytest.CaptureFixture[str], *args: str) -> Check:
    capsys.readouterr()
    code = cli.main(["release", "check", *args])
    captured = capsys.readouterr()
    return Check(code, captured.out, captured.err)


@pytest.fixture
def admin(identity: Identity) -> Identity:
    return authz.cli_identity(identity.tenant_id)


@pytest.fixture
def ring(monkeypatch: pytest.MonkeyPatch) -> str:
    """A configured key ring (one key, 'release-1'), so nothing is sealed with the development key."""
    use_ring(monkeypatch, ("release-1", fresh_key()))
    return "release-1"


@pytest.fixture
def candidates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return use_prompts_here(tmp_path / "prompts", monkeypatch)


def use_prompts_here(folder: Path, monkeypatch: pytest.MonkeyPatch, *, weak_verifier: bool = False) -> Path:
    use_prompts(monkeypatch, release_prompts(folder, weak_verifier=weak_verifier))
    return folder


def backup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["backup", str(tmp_path / "backup.tar.gz")]) == 0
    capsys.readouterr()


@pytest.fixture
def ready(
    clean_db: Engine, admin: Identity, ring: str, candidates: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> int:
    """A correct setup: migrated, a passing golden run of the serving versions, every agent activated,
    a configured key ring, a recent backup, the local provider. Returns the golden run's id."""
    run_id = pin_every_agent(clean_db, admin)
    backup(tmp_path, capsys)
    return run_id


def test_a_correct_setup_passes_every_item_and_the_check_is_stored_and_audited(
    ready: int, clean_db: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    result = check(capsys, "--actor", "Release Manager")
    assert result.code == 0, result.out
    assert all(result.passed(item) for item in ITEMS), result.out
    assert f"golden run #{ready}" in result.row(GOLDEN)
    assert "local-writer-1" in result.out and "cap $1" in result.out, "the cost table names each model and the cap"
    assert "key 'release-1'" in result.row(SECRETS) and "opens" in result.row(SECRETS)
    assert "PASSED" in result.out
    with clean_db.connect() as connection:
        [stored] = connection.execute(select(ReleaseCheck)).all()
        [entry] = connection.execute(select(AuditEntry).where(AuditEntry.event_type == "release_check")).all()
    assert stored.passed and stored.environment == "local" and "Release Manager" in stored.actor
    assert [r["item"] for r in stored.results] == list(ITEMS) and all(r["passed"] for r in stored.results)
    assert entry.details["passed"] is True and entry.details["failed"] == []
    assert entry.details["release_check_id"] == stored.id


def test_json_output_carries_every_item_and_the_cost_table(ready: int, capsys: pytest.CaptureFixture[str]) -> None:
    result = check(capsys, "--json")
    data = json.loads(result.out)
    assert result.code == 0 and data["passed"] is True and data["environment"] == "local"
    assert [r["item"] for r in data["results"]] == list(ITEMS)
    [costs] = [r for r in data["results"] if r["item"] == COSTS]
    assert {row["model"] for row in costs["details"]["table"]} == {
        f"local-{a}-1" for a in ("librarian", "writer", "verifier", "rewriter")
    }
    assert all(row["max_usd"] == 0 for row in costs["details"]["table"]), "the local model costs nothing"


def test_a_pending_migration_fails_the_first_item_and_nothing_is_migrated(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with database_at(database_url, tmp_path, "0008") as old:
        use_database(monkeypatch, old)
        result = check(capsys)
        assert result.code == 1
        assert not result.passed(MIGRATIONS)
        row = result.row(MIGRATIONS)
        assert "0008" in row and "0009" in row and "python -m core migrate" in row
        assert "not stored" in result.out, "the schema has no release_checks table yet: printed, not stored"
        assert revision_of(old) == "0008", "the check must never migrate"


def test_a_failing_golden_run_of_the_serving_versions_fails_naming_its_cases(
    clean_db: Engine, ring: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_prompts_here(tmp_path / "weak", monkeypatch, weak_verifier=True)
    run = run_golden(clean_db, label="lenient verifier serving")
    assert run.status == "failed" and run.failing_cases
    result = check(capsys)
    assert result.code == 1 and not result.passed(GOLDEN)
    row = result.row(GOLDEN)
    assert f"#{run.id}" in row and str(run.failing_cases[0]) in row and "python -m core golden run" in row
    assert "golden regression passed" in result.out.splitlines()[-1], "the verdict names the failed item"


def test_no_golden_run_of_the_serving_versions_fails_with_the_command(
    clean_db: Engine, admin: Identity, ring: str, candidates: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_golden(clean_db, prompt_pins={"writer": "v2"}, label="another writer")  # not what serves
    result = check(capsys)
    assert not result.passed(GOLDEN) and "python -m core golden run" in result.row(GOLDEN)
    assert not result.passed(COSTS) and "python -m core golden run" in result.row(COSTS)


def test_an_unpinned_agent_fails_naming_it_and_the_activate_command(
    clean_db: Engine,
    admin: Identity,
    ring: str,
    candidates: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pin_every_agent(clean_db, admin, agents=("librarian", "writer", "verifier"))
    backup(tmp_path, capsys)
    result = check(capsys)
    assert result.code == 1 and not result.passed(PINNED)
    row = result.row(PINNED)
    assert "rewriter" in row and "writer," not in row and "python -m core prompts activate AGENT VERSION" in row
    assert result.passed(MIGRATIONS) and result.passed(ROLLBACK) and result.passed(SECRETS)


def test_the_rollback_plan_needs_a_recent_backup_and_loadable_targets(
    clean_db: Engine, admin: Identity, ring: str, candidates: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pin_every_agent(clean_db, admin)
    result = check(capsys)
    assert not result.passed(ROLLBACK) and "python -m core backup PATH" in result.row(ROLLBACK)
    (candidates / "writer" / "v1.md").unlink()  # the writer's rollback target is gone
    prompts.load.cache_clear()  # as a new process finds it: the command runs in one
    row = check(capsys).row(ROLLBACK)
    assert "writer's rollback target v1 does not load" in row


def test_provider_openai_without_a_key_fails_the_secrets_item(
    ready: int, fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WORKBENCH_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.openai_base_url)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    reset_settings()
    result = check(capsys)
    assert result.code == 1 and not result.passed(SECRETS)
    assert "OPENAI_API_KEY is not set" in result.row(SECRETS)


def test_provider_openai_with_a_working_key_passes_and_a_refused_key_fails_unprinted(
    ready: int, fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "sk-release-check-0123456789"
    fake.api_key = secret
    monkeypatch.setenv("WORKBENCH_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.openai_base_url)
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    reset_settings()
    result = check(capsys)
    assert result.code == 0, result.out
    assert "openai key accepted" in result.row(SECRETS)
    assert any(r.path.startswith("/v1/models") for r in fake.requests), "the key was proven by a real request"
    assert get_settings().openai_model in result.out, "the cost table prices the provider's model"

    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-9876543210")
    reset_settings()
    result = check(capsys)
    assert result.code == 1 and not result.passed(SECRETS)
    assert "refused OPENAI_API_KEY" in result.row(SECRETS) and "401" in result.row(SECRETS)
    assert "sk-wrong-key-9876543210" not in result.out + result.err and secret not in result.out + result.err


def test_a_model_without_a_price_or_over_the_cap_fails_the_cost_item(
    ready: int, fake: FakeLLM, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WORKBENCH_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.openai_base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-any")
    monkeypatch.setenv("WORKBENCH_MODELS", json.dumps({"verifier": "mystery-model-1"}))
    monkeypatch.setenv("BREAKER_PARAGRAPH_COST_USD", "0.0000001")
    reset_settings()
    result = check(capsys)
    assert result.code == 1 and not result.passed(COSTS)
    row = result.row(COSTS)
    assert "mystery-model-1 has no price" in row and "python -m core models add mystery-model-1" in row
    assert f"{get_settings().openai_model} costs up to $" in row and "BREAKER_PARAGRAPH_COST_USD" in row
    assert "no price" in result.out.split("cost per paragraph", 1)[1], "the table shows the unpriced model"


def test_a_ring_without_the_newest_events_key_fails_naming_that_key(
    ready: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_ring(monkeypatch, ("release-2", fresh_key()))  # release-1, which sealed everything, is gone
    result = check(capsys)
    assert result.code == 1 and not result.passed(SECRETS)
    assert "'release-1'" in result.row(SECRETS) and "cannot open the newest sealed trace event" in result.row(SECRETS)


def test_the_development_key_fails_in_production_and_passes_with_a_note_in_local(
    clean_db: Engine,
    admin: Identity,
    candidates: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("WORKBENCH_ENCRYPTION_KEYS", raising=False)
    reset_settings()
    pin_every_agent(clean_db, admin)
    backup(tmp_path, capsys)
    local = check(capsys)
    assert local.code == 0, local.out
    assert "development key (allowed in local" in local.row(SECRETS)

    monkeypatch.setenv("WORKBENCH_ENV", "production")
    reset_settings()
    production = check(capsys)
    assert production.code == 1 and not production.passed(SECRETS)
    assert "development key in production" in production.row(SECRETS)
    assert "python -m core keys new" in production.row(SECRETS)
    assert all(production.passed(item) for item in ITEMS if item != SECRETS), production.out

    # The development key's own bytes inside a configured ring are refused just the same.
    dev_line = (get_settings().data_dir / crypto.DEV_KEY_FILE).read_text().strip()
    monkeypatch.setenv("WORKBENCH_ENCRYPTION_KEYS", f"prod-1:{fresh_key()},{dev_line}")
    reset_settings()
    row = check(capsys).row(SECRETS)
    assert "development key in production" in row and "holds the development key" in row
    assert dev_line.split(":", 1)[1] not in row


def test_the_functions_report_every_item_in_order_without_changing_anything(
    ready: int, clean_db: Engine, admin: Identity
) -> None:
    report = release.run_check(clean_db, get_settings())
    assert [r.item for r in report.results] == list(ITEMS) and report.passed and report.failed == []
    with clean_db.connect() as connection:
        assert connection.execute(select(ReleaseCheck)).all() == [], "run_check stores nothing"
    assert release.record(clean_db, report, actor=admin) is not None
    with pytest.raises(PermissionDeniedError):
        release.record(clean_db, report, actor=replace(admin, role="researcher"))
