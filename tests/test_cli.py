"""``python -m core`` as a researcher or a script would run it, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, data_dir: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WORKBENCH_DATA_DIR": str(data_dir), "WORKBENCH_PROVIDER": "local"}
    env.pop("DATABASE_URL", None)  # each CLI test gets its own SQLite file under data_dir
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_verify_jsonl_adds_verdict_failure_mode_and_reason(tmp_path: Path) -> None:
    facts = [
        {"id": "F1", "text": "Biochar reduced nitrate leaching by 23% in sandy soils."},
        {"id": "F2", "text": "Maize yield did not change with biochar."},
    ]
    items = [
        {"sentence": "Biochar reduced nitrate leaching by 23% in sandy soils.", "facts": facts, "cited": ["F1"]},
        {"sentence": "Biochar reduced nitrate leaching by 32% in sandy soils.", "facts": facts, "cited": ["F1"]},
        {"sentence": "Maize yield changed with biochar.", "facts": facts, "cited": ["F2"]},
        {"sentence": "Biochar reduced nitrate leaching by 23% in sandy soils.", "facts": facts, "cited": []},
        {"sentence": "Biochar reduced nitrate leaching by 23% in sandy soils.", "facts": facts, "cited": ["F7"]},
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps(i) for i in items) + "\n")
    result = run_cli("verify", str(source), data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["verdict"], r["failure_mode"]) for r in rows] == [
        ("supported", None),
        ("unsupported", "number_mismatch"),
        ("unsupported", "negation"),
        ("unsupported", "no_citation"),
        ("unsupported", "unknown_citation"),
    ]
    assert all(r["reason"] for r in rows)
    assert rows[1]["sentence"] == items[1]["sentence"] and rows[1]["facts"] == facts  # the input is kept


def test_verify_reports_bad_lines_and_keeps_the_good_ones(tmp_path: Path) -> None:
    good = {"sentence": "Yield rose by 5%.", "facts": [{"id": "F1", "text": "Yield rose by 5%."}], "cited": ["F1"]}
    stdin = json.dumps(good) + "\n{not json\n" + json.dumps({"facts": []}) + "\n"
    result = run_cli("verify", "-", data_dir=tmp_path, stdin=stdin)
    assert result.returncode == 2
    assert json.loads(result.stdout)["verdict"] == "supported"
    assert "line 2 is not JSON" in result.stderr and 'line 3 needs a "sentence"' in result.stderr


def test_verify_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("verify", str(tmp_path / "nope.jsonl"), data_dir=tmp_path)
    assert result.returncode == 2 and "no such file" in result.stderr


@pytest.mark.slow
def test_demo_ingest_draft_and_show(tmp_path: Path) -> None:
    assert run_cli("demo", data_dir=tmp_path).returncode == 0
    again = run_cli("demo", "--if-empty", data_dir=tmp_path)
    assert again.returncode == 0 and "already present" in again.stdout
    listing = run_cli("manuscripts", data_dir=tmp_path)
    assert "Biochar and microbes" in listing.stdout
    shown = run_cli("show", "1", data_dir=tmp_path)
    assert shown.returncode == 0 and "(verified, drafted" in shown.stdout and "-> supported" in shown.stdout
    added = run_cli("paragraph", "add", "1", "How does biochar change water-use efficiency?", data_dir=tmp_path)
    paragraph_id = added.stdout.strip()
    drafted = run_cli("draft", paragraph_id, data_dir=tmp_path)
    assert drafted.returncode == 0 and "[F" in drafted.stdout
    assert run_cli("accept", "1", "1", data_dir=tmp_path).returncode == 0
    assert run_cli("reverify", "1", "1", data_dir=tmp_path).returncode == 0
    history = run_cli("history", "1", data_dir=tmp_path)
    assert history.stdout.splitlines()[0].startswith("2\tverified\treverified")
    assert "(accepted)" in history.stdout.splitlines()[1]
    missing = run_cli("accept", "1", "9", data_dir=tmp_path)
    assert missing.returncode == 1 and "has no version 9" in missing.stderr
    bad = tmp_path / "notes.pdf"
    bad.write_text("just some notes")
    ingest = run_cli("ingest", "1", str(bad), data_dir=tmp_path)
    assert ingest.returncode == 1 and "notes.pdf" in ingest.stderr and "Traceback" not in ingest.stderr


def test_unreadable_file_and_unreachable_database_are_clear_errors(tmp_path: Path) -> None:
    missing = run_cli("ingest", "1", str(tmp_path / "gone.pdf"), data_dir=tmp_path)
    assert missing.returncode == 1 and "gone.pdf: cannot read the file" in missing.stderr
    env = {**os.environ, "WORKBENCH_DATA_DIR": str(tmp_path), "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    down = subprocess.run(
        [sys.executable, "-m", "core", "manuscripts"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert down.returncode == 1
    assert "cannot be reached" in down.stderr and "Traceback" not in down.stderr
