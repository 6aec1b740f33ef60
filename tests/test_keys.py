"""Key management through the CLI (``python -m core keys ...``), on content sealed by real runs:
rotation to a new key, resuming a stopped rotation, missing and wrong keys, the development key.
"""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update

from core import crypto, db, gateway, llm_cache
from core.cli import main
from core.models import LlmCacheEntry, LlmToolCall, TrajectoryEvent
from core.settings import get_settings, reset_settings
from core.tenancy import Identity
from tests.test_tracing import _draft, _ingest, _paragraph, spans, trajectory
from tests.ui_helpers import MakeApp

OLD, NEW = crypto.new_key(), crypto.new_key()
Rows = dict[tuple[str, int], bytes]


@pytest.fixture(autouse=True)
def _settings_back() -> Iterator[None]:
    yield
    reset_settings()


def use_keys(monkeypatch: pytest.MonkeyPatch, ring: str | None) -> crypto.KeyRing | None:
    if ring is None:
        monkeypatch.delenv("WORKBENCH_ENCRYPTION_KEYS", raising=False)
    else:
        monkeypatch.setenv("WORKBENCH_ENCRYPTION_KEYS", ring)
    reset_settings()
    return crypto.key_ring(get_settings())


def ring_of(text: str) -> crypto.KeyRing:
    return crypto.KeyRing(crypto.parse_ring(text))


def sealed(engine: Engine) -> dict[tuple[str, int], tuple[str, bytes, bytes]]:
    """Every sealed row: (table, id) -> (key id, blob, associated data), the AADs written out here."""
    rows: dict[tuple[str, int], tuple[str, bytes, bytes]] = {}
    with db.session_scope(engine) as s:
        for span in s.scalars(select(TrajectoryEvent).where(TrajectoryEvent.content.is_not(None))):
            aad = crypto.span_aad(span.tenant_id, span.trace_id, span.span_id)
            rows["trajectory_events", span.id] = (span.key_id or "", span.content or b"", aad)
        for entry in s.scalars(select(LlmCacheEntry)):
            aad = llm_cache.aad(entry.tenant_id, entry.agent, entry.prompt_version, entry.model, entry.input_hash)
            rows["llm_cache_entries", entry.id] = (entry.key_id, entry.content, aad)
        for call in s.scalars(select(LlmToolCall)):
            aad = gateway.tool_call_aad(call.tenant_id, call.trace_id, call.usage_event_id, call.name)
            rows["llm_tool_calls", call.id] = (call.key_id, call.content, aad)
    return rows


def open_all(engine: Engine, ring: crypto.KeyRing) -> Rows:
    return {where: ring.open(kid, blob, aad=aad) for where, (kid, blob, aad) in sealed(engine).items()}


def key_ids(engine: Engine) -> dict[str, int]:
    counts: dict[str, int] = {}
    for kid, _, _ in sealed(engine).values():
        counts[kid] = counts.get(kid, 0) + 1
    return counts


def run_paragraph(engine: Engine, identity: Identity) -> int:
    """A PDF ingested and a paragraph drafted with the local provider; returns the paragraph id."""
    manuscript_id, paragraph_id = _paragraph(engine, identity)
    _ingest(engine, identity, manuscript_id, "ingest")
    _draft(engine, identity, paragraph_id, "draft")
    return paragraph_id


# -- keys new, keys status -----------------------------------------------------------------------------


def test_keys_new_prints_a_fresh_key_the_ring_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "new"]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["keys", "new", "--id", "prod-2027"]) == 0
    second = capsys.readouterr().out.strip()
    [(first_id, first_key)] = crypto.parse_ring(first)
    [(second_id, second_key)] = crypto.parse_ring(second)
    assert first_id.startswith("key-") and second_id == "prod-2027"
    assert len(first_key) == len(second_key) == 32 and first_key != second_key
    assert main(["keys", "new", "--id", "a:b"]) == 1
    assert "cannot be used" in capsys.readouterr().err


def test_keys_status_counts_sealed_rows_per_key_id(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], clean_db: Engine, identity: Identity
) -> None:
    use_keys(monkeypatch, f"old:{OLD}")
    run_paragraph(clean_db, identity)
    with db.session_scope(clean_db) as s:
        spans_n = len(list(s.scalars(select(TrajectoryEvent.id).where(TrajectoryEvent.content.is_not(None)))))
        cache_n = len(list(s.scalars(select(LlmCacheEntry.id))))
        tools_n = len(list(s.scalars(select(LlmToolCall.id))))
    assert spans_n and cache_n and tools_n
    use_keys(monkeypatch, f"new:{NEW},old:{OLD}")
    assert main(["keys", "status"]) == 0
    out = capsys.readouterr().out
    assert "active key: new\n" in out and "development" not in out
    assert f"trajectory_events: old: {spans_n}" in out
    assert f"llm_cache_entries: old: {cache_n}" in out and f"llm_tool_calls: old: {tools_n}" in out
    assert f"rows to rotate to the active key: {spans_n + cache_n + tools_n}" in out
    assert OLD not in out and NEW not in out  # ids only, never the keys


# -- (c) rotation ----------------------------------------------------------------------------------------


def test_rotation_reseals_everything_under_the_new_key_and_the_old_key_no_longer_opens_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], clean_db: Engine, identity: Identity
) -> None:
    use_keys(monkeypatch, f"old:{OLD}")
    paragraph_id = run_paragraph(clean_db, identity)
    before = open_all(clean_db, ring_of(f"old:{OLD}"))
    assert set(key_ids(clean_db)) == {"old"}

    use_keys(monkeypatch, f"new:{NEW},old:{OLD}")
    assert main(["keys", "rotate", "--batch", "7"]) == 0
    out = capsys.readouterr().out
    assert "trajectory_events:" in out and "re-encrypted to key 'new'" in out and "rotation complete" in out
    assert key_ids(clean_db) == {"new": len(before)}
    assert open_all(clean_db, ring_of(f"new:{NEW},old:{OLD}")) == before
    assert open_all(clean_db, ring_of(f"new:{NEW}")) == before  # the old key can now be retired

    # Rotated content opens with the right key only: not with the old one, not with other bytes under "new".
    kid, blob, aad = next(iter(sealed(clean_db).values()))
    with pytest.raises(crypto.DecryptionError, match="sealed with key 'new', which is not in the key ring"):
        ring_of(f"old:{OLD}").open(kid, blob, aad=aad)
    with pytest.raises(crypto.DecryptionError, match="does not open this content"):
        ring_of(f"new:{crypto.new_key()}").open(kid, blob, aad=aad)

    # With the old key retired, the workbench serves the same paragraph from its re-sealed cache.
    use_keys(monkeypatch, f"new:{NEW}")
    _draft(clean_db, identity, paragraph_id, "after-rotation")
    assert trajectory(clean_db, "after-rotation").status == "ok"
    agents = [s for s in spans(clean_db, "after-rotation") if s.kind == "agent"]
    assert agents and all(a.attributes["cache_hit"] and a.key_id == "new" for a in agents)
    assert main(["keys", "status"]) == 0
    assert "rows to rotate to the active key: 0" in capsys.readouterr().out


def test_a_stopped_rotation_goes_on_from_where_it_was(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], clean_db: Engine, identity: Identity
) -> None:
    use_keys(monkeypatch, f"old:{OLD}")
    run_paragraph(clean_db, identity)
    before = open_all(clean_db, ring_of(f"old:{OLD}"))
    use_keys(monkeypatch, f"new:{NEW},old:{OLD}")

    assert main(["keys", "rotate", "--batch", "5", "--max-batches", "1"]) == 3
    out = capsys.readouterr().out
    assert "trajectory_events: 5 of" in out and f"{len(before) - 5} remain" in out
    assert key_ids(clean_db) == {"new": 5, "old": len(before) - 5}
    rotated = sorted(i for (table, i), (kid, _, _) in sealed(clean_db).items() if kid == "new")
    first_spans = sorted(i for table, i in before if table == "trajectory_events")[:5]
    assert rotated == first_spans  # in primary-key order

    assert main(["keys", "rotate", "--batch", "5"]) == 0
    assert "rotation complete" in capsys.readouterr().out
    assert key_ids(clean_db) == {"new": len(before)}
    assert open_all(clean_db, ring_of(f"new:{NEW}")) == before


# -- (d) missing and wrong keys ------------------------------------------------------------------------------


def test_a_key_missing_from_the_ring_stops_rotation_before_it_changes_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], clean_db: Engine, identity: Identity
) -> None:
    use_keys(monkeypatch, f"old:{OLD}")
    run_paragraph(clean_db, identity)
    count = len(sealed(clean_db))
    use_keys(monkeypatch, f"new:{NEW}")
    assert main(["keys", "rotate"]) == 1
    err = capsys.readouterr().err
    assert f"key 'old' seals {count} rows" in err and "Add it to WORKBENCH_ENCRYPTION_KEYS" in err
    assert key_ids(clean_db) == {"old": count}
    assert main(["keys", "status"]) == 1
    assert f"MISSING from the key ring: key 'old' seals {count} rows" in capsys.readouterr().out


def test_a_wrong_key_under_the_right_id_is_a_clear_error_not_garbage(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], clean_db: Engine, identity: Identity
) -> None:
    use_keys(monkeypatch, f"old:{OLD}")
    run_paragraph(clean_db, identity)
    kid, blob, aad = next(iter(sealed(clean_db).values()))
    impostor = ring_of(f"old:{crypto.new_key()}")
    with pytest.raises(crypto.DecryptionError, match="Key 'old' in the key ring does not open this content"):
        impostor.open(kid, blob, aad=aad)
    with pytest.raises(crypto.DecryptionError, match="Check WORKBENCH_ENCRYPTION_KEYS"):
        impostor.open_json(kid, blob, aad=aad)
    with pytest.raises(crypto.DecryptionError, match="sealed with key 'old', which is not in the key ring"):
        ring_of(f"other:{OLD}").open(kid, blob, aad=aad)
    # The right key on another row's associated data does not open it either (copied ciphertext).
    with pytest.raises(crypto.DecryptionError):
        ring_of(f"old:{OLD}").open(kid, blob, aad=aad + b"x")

    # Rotation with the impostor names the row it could not open and changes nothing.
    count = len(sealed(clean_db))
    impostor_b64 = base64.b64encode(os.urandom(32)).decode()
    use_keys(monkeypatch, f"new:{NEW},old:{impostor_b64}")
    assert main(["keys", "rotate"]) == 1
    err = capsys.readouterr().err
    assert "Cannot rotate trajectory_events row" in err and "does not open this content" in err
    assert key_ids(clean_db) == {"old": count}


def test_a_tampered_span_does_not_open(monkeypatch: pytest.MonkeyPatch, clean_db: Engine, identity: Identity) -> None:
    use_keys(monkeypatch, f"old:{OLD}")
    run_paragraph(clean_db, identity)
    [writer] = [s for s in spans(clean_db, "draft") if s.kind == "agent" and s.agent == "writer"]
    flipped = bytearray(writer.content or b"")
    flipped[-1] ^= 1
    with db.session_scope(clean_db) as s:
        s.execute(update(TrajectoryEvent).where(TrajectoryEvent.id == writer.id).values(content=bytes(flipped)))
    [tampered] = [s for s in spans(clean_db, "draft") if s.id == writer.id]
    ring = crypto.key_ring(get_settings())
    with pytest.raises(crypto.DecryptionError, match="altered"):
        ring.open_json(
            tampered.key_id or "",
            tampered.content or b"",
            aad=crypto.span_aad(tampered.tenant_id, tampered.trace_id, tampered.span_id),
        )


# -- (g) the development key ------------------------------------------------------------------------------------


def test_without_a_configured_ring_a_development_key_is_made_once_readable_by_its_owner_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], clean_db: Engine
) -> None:
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "fresh"))
    ring = use_keys(monkeypatch, None)
    assert ring is not None and ring.development and ring.active_id.startswith("dev-")
    key_file = tmp_path / "fresh" / crypto.DEV_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    content = key_file.read_text()
    reset_settings()
    crypto._rings.clear()  # a new process reads the same file, it does not make another key
    assert crypto.key_ring(get_settings()).keys == ring.keys and key_file.read_text() == content
    assert main(["keys", "status"]) == 0
    out = capsys.readouterr().out
    assert f"active key: {ring.active_id} (development key)" in out and str(key_file) in out


def test_every_page_warns_while_the_development_key_is_in_use(
    monkeypatch: pytest.MonkeyPatch, make_app: MakeApp
) -> None:
    use_keys(monkeypatch, None)
    for page in (None, "pages/costs.py"):
        at = make_app(page)
        warnings = [w.value for w in at.warning if "development key" in str(w.value)]
        assert len(warnings) == 1 and crypto.DEV_KEY_FILE in warnings[0] and "WORKBENCH_ENCRYPTION_KEYS" in warnings[0]
    use_keys(monkeypatch, f"prod:{NEW}")
    at = make_app()
    assert not [w for w in at.warning if "development key" in str(w.value)]
