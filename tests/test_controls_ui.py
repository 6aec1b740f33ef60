"""The kill switch and circuit breakers as people meet them: the banner on every page, the Write
page turned read-only for generation, the Operations controls and ``python -m core kill-switch``.

Everything runs against the real test database and the real ``core.controls``/``core.breakers``.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from streamlit.testing.v1 import AppTest

from core import audit, breakers, controls, db, ui
from core.manuscripts import add_paragraph, list_versions
from core.models import ControlEvent
from core.settings import get_settings, reset_settings
from core.tenancy import Identity
from tests.ui_helpers import PAGES, MakeApp, seed_drafted

ROOT = Path(__file__).resolve().parent.parent
REASON = "Provider invoices look wrong, investigating"
ACTOR = "Ops on call"
OPS = Identity(tenant_id=1, user_id=0, role="ops", name=ACTOR)
BREAKER = breakers.provider_breaker("local")
UI_ACTOR = "Admin (admin@localhost)"
"""How the Operations page names the signed-in user (``make_app``'s admin) in the control log."""


def frozen_banners(at: AppTest) -> list[str]:
    return [e.value for e in at.error if e.value.startswith("**Generation is frozen.**")]


def breaker_banners(at: AppTest) -> list[str]:
    return [w.value for w in at.warning if w.value.startswith("**Circuit breaker")]


def button(at: AppTest, label: str) -> Any:
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r}; have {[b.label for b in at.button]}"
    return matches[0]


def control_events(engine: Engine) -> list[tuple[str, str | None, str, str, str]]:
    with db.session_scope(engine) as s:
        rows = s.scalars(select(ControlEvent).order_by(ControlEvent.id))
        return [(e.control, e.from_state, e.to_state, e.reason, e.actor) for e in rows]


def trip_breaker(engine: Engine, name: str = BREAKER) -> None:
    """Open a provider breaker the way the gateway does: one call whose attempts all failed, enough
    of them to outweigh what the window already counted (at least ``breaker_min_calls``)."""
    settings = get_settings()
    counted = next((b.window_total for b in breakers.list_breakers(engine) if b.name == name), 0)
    calls = max(settings.breaker_min_calls, counted)
    with engine.begin() as connection:
        breakers.record_attempts(connection, name, total=calls, failures=calls, trace_id="t-outage", settings=settings)
    assert {b.name: b.state for b in breakers.list_breakers(engine)}[name] == breakers.OPEN


# (a) The kill switch on every page --------------------------------------------------------------


def test_kill_switch_banner_on_every_page_and_write_is_read_only(make_app: MakeApp, clean_db: Engine) -> None:
    seeded = seed_drafted(clean_db)
    with db.session_scope(clean_db) as s:
        add_paragraph(
            s, tenant_id=seeded.identity.tenant_id, manuscript_id=seeded.manuscript_id, brief="Not drafted yet."
        )
    assert controls.set_kill_switch(clean_db, engaged=True, reason=REASON, actor=OPS)
    at = make_app()
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        banners = frozen_banners(at)
        assert len(banners) == 1, (page, [e.value for e in at.error])
        assert ui.md_escape(REASON) in banners[0] and ACTOR in banners[0]
        assert "Stored and verified work stays readable." in banners[0]

    at.switch_page("pages/write.py").run()
    assert button(at, "Draft").disabled, "the undrafted paragraph cannot be drafted"
    assert button(at, "Draft again").disabled and button(at, "Re-verify").disabled
    assert at.file_uploader[0].proto.disabled, "no PDF can be uploaded"
    assert not button(at, "Edit").disabled, "reading and opening an edit stay available"
    why = [c.value for c in at.caption if "Generation is frozen by the kill switch" in c.value]
    assert why and all(ui.md_escape(REASON) in c for c in why), "a caption says why"
    assert button(at, "Draft").proto.help == why[0].removeprefix(":material/block: ")

    button(at, "Edit").click().run()
    save = at.button(key=f"FormSubmitter:write_edit_form_{seeded.paragraph_id}_{seeded.version_id}-Save and verify")
    assert save.disabled, "an edit cannot be saved and verified while frozen"


def test_no_banner_and_buttons_enabled_when_all_clear(make_app: MakeApp, clean_db: Engine) -> None:
    seed_drafted(clean_db)
    at = make_app("pages/write.py")
    assert not frozen_banners(at) and not breaker_banners(at)
    assert not button(at, "Draft again").disabled and not button(at, "Re-verify").disabled
    assert not at.file_uploader[0].proto.disabled


# (b) Engage and release from the Operations page -------------------------------------------------


def test_operations_engages_and_releases_the_kill_switch(make_app: MakeApp, clean_db: Engine) -> None:
    at = make_app("pages/operations.py")
    assert "Generation controls" in [h.value for h in at.subheader]

    at.text_input(key="operations_reason").input(REASON)
    at.button(key="FormSubmitter:operations_engage-Engage kill switch").click().run()
    assert not at.exception, at.exception
    switch = controls.status(clean_db).kill_switch
    assert switch.engaged and switch.reason == REASON and switch.actor == UI_ACTOR
    assert frozen_banners(at), "the banner appears at once"
    events = at.dataframe[
        [d.value.columns.tolist() for d in at.dataframe].index(["At", "Control", "From", "To", "Reason", "Actor"])
    ].value
    assert list(events["To"]) == ["engaged"] and list(events["Reason"]) == [REASON]

    button(at, "Release kill switch").click().run()
    assert not at.exception, at.exception
    assert not controls.status(clean_db).kill_switch.engaged
    assert not frozen_banners(at)
    assert control_events(clean_db) == [
        (controls.KILL_SWITCH, "released", "engaged", REASON, UI_ACTOR),
        (controls.KILL_SWITCH, "engaged", "released", "", UI_ACTOR),
    ]
    table = next(d.value for d in at.dataframe if "Control" in d.value.columns)
    assert list(table["To"]) == ["released", "engaged"], "newest first"


def test_operations_refuses_to_engage_without_a_reason(make_app: MakeApp, clean_db: Engine) -> None:
    at = make_app("pages/operations.py")
    at.button(key="FormSubmitter:operations_engage-Engage kill switch").click().run()
    assert not at.exception, at.exception
    assert any("a reason is required" in e.value for e in at.error), [e.value for e in at.error]
    assert not controls.status(clean_db).kill_switch.engaged
    assert control_events(clean_db) == []


# (c) An open breaker ---------------------------------------------------------------------------


def test_open_breaker_warns_on_every_page_and_resets_from_operations(make_app: MakeApp, clean_db: Engine) -> None:
    trip_breaker(clean_db)
    at = make_app()
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        warnings = breaker_banners(at)
        assert len(warnings) == 1 and ui.md_escape(BREAKER) in warnings[0], (page, warnings)
        assert "attempts failed" in warnings[0], "the reason is shown"
        assert not frozen_banners(at), "a breaker is not the kill switch"

    at.switch_page("pages/operations.py").run()
    table = next(d.value for d in at.dataframe if "Breaker" in d.value.columns)
    assert list(table["Breaker"]) == [BREAKER] and list(table["State"]) == ["open"]
    calls = get_settings().breaker_min_calls
    assert list(table["Window failures"]) == [calls] and list(table["Window total"]) == [calls]
    button(at, f"Reset {BREAKER}").click().run()
    assert not at.exception, at.exception
    assert [b.state for b in breakers.list_breakers(clean_db)] == [breakers.CLOSED]
    assert not breaker_banners(at)
    assert f"Reset {BREAKER}" not in [b.label for b in at.button]
    assert [(c, a, b, actor) for c, a, b, _reason, actor in control_events(clean_db)] == [
        (BREAKER, breakers.CLOSED, breakers.OPEN, "system"),
        (BREAKER, breakers.OPEN, breakers.CLOSED, UI_ACTOR),
    ]


def test_open_breaker_pauses_drafting_until_its_cooldown_ends(
    make_app: MakeApp, clean_db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_drafted(clean_db)
    trip_breaker(clean_db)
    at = make_app("pages/write.py")
    assert button(at, "Draft again").disabled
    assert any("circuit breaker" in c.value and "one trial run" in c.value for c in at.caption)

    # Once the cooldown is over the next run is the breaker's trial, so the buttons come back.
    monkeypatch.setenv("BREAKER_COOLDOWN_S", "0")
    reset_settings()
    at.run()
    assert not at.exception, at.exception
    assert breaker_banners(at), "still open until the trial run answers"
    assert not button(at, "Draft again").disabled


# (d) The CLI ------------------------------------------------------------------------------------


def run_cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WORKBENCH_DATA_DIR": str(data_dir), "WORKBENCH_PROVIDER": "local"}
    env.pop("DATABASE_URL", None)  # a SQLite file of its own under data_dir
    return subprocess.run(
        [sys.executable, "-m", "core", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_cli_kill_switch_round_trip(tmp_path: Path) -> None:
    cli = f"cli:{getpass.getuser()}"  # the command line acts as authz.cli_identity
    alice = f"alice ({cli})"  # --actor names the person; the OS user stays beside it
    engaged = run_cli("kill-switch", "engage", "--reason", REASON, "--actor", "alice", data_dir=tmp_path)
    assert engaged.returncode == 0, engaged.stderr
    assert f"engaged by {alice}: {REASON}" in engaged.stdout

    status = run_cli("kill-switch", "status", data_dir=tmp_path)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[:3] == ["kill switch: engaged", f"  reason: {REASON}", f"  actor:  {alice}"]
    assert lines[3].startswith("  since:  20") and lines[3].endswith(" UTC")

    released = run_cli("kill-switch", "release", data_dir=tmp_path)
    assert released.returncode == 0, released.stderr
    after = run_cli("kill-switch", "status", data_dir=tmp_path).stdout.splitlines()
    assert after[0] == "kill switch: released" and after[2] == f"  actor:  {cli}"

    engine = db.get_engine(f"sqlite:///{tmp_path / 'workbench.db'}")
    assert [(e[2], e[4]) for e in control_events(engine)] == [("engaged", alice), ("released", cli)]
    with engine.connect() as connection:
        assert [(e.event_type, e.subject, e.actor) for e in audit.search(connection, viewer=OPS)] == [
            (audit.KILL_SWITCH, "released", cli),
            (audit.KILL_SWITCH, "engaged", alice),
        ]


def test_cli_engage_without_a_reason_is_a_usage_error(tmp_path: Path) -> None:
    for args in (("kill-switch", "engage"), ("kill-switch", "engage", "--reason", "  ")):
        result = run_cli(*args, data_dir=tmp_path)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "--reason TEXT" in result.stderr
    assert run_cli("kill-switch", "status", data_dir=tmp_path).stdout.startswith("kill switch: released")


def test_cli_lists_and_resets_breakers(tmp_path: Path) -> None:
    empty = run_cli("breakers", data_dir=tmp_path)
    assert empty.returncode == 0 and "no breakers yet" in empty.stdout
    engine = db.get_engine(f"sqlite:///{tmp_path / 'workbench.db'}")  # migrated by the command above
    trip_breaker(engine)

    listed = run_cli("breakers", data_dir=tmp_path)
    assert listed.returncode == 0
    row = next(line.split("\t") for line in listed.stdout.splitlines() if line.startswith(BREAKER))
    assert row[1] == "open" and row[3] == f"{get_settings().breaker_min_calls}/{get_settings().breaker_min_calls}"
    assert f"breaker {BREAKER}: open since" in run_cli("kill-switch", "status", data_dir=tmp_path).stdout

    unknown = run_cli("breakers", "reset", "provider:nope", data_dir=tmp_path)
    assert unknown.returncode == 2 and "no breaker named 'provider:nope'" in unknown.stderr

    reset = run_cli("breakers", "reset", BREAKER, "--actor", "bob", data_dir=tmp_path)
    assert reset.returncode == 0 and f"breaker {BREAKER} reset to closed by bob (cli:" in reset.stdout
    assert [b.state for b in breakers.list_breakers(engine)] == [breakers.CLOSED]
    again = run_cli("breakers", "reset", BREAKER, data_dir=tmp_path)
    assert again.returncode == 0 and "already closed" in again.stdout


# (e) Verified work stays readable while frozen ----------------------------------------------------


def test_verified_output_stays_visible_while_frozen(make_app: MakeApp, clean_db: Engine) -> None:
    seeded = seed_drafted(clean_db)
    with db.session_scope(clean_db) as s:
        version = list_versions(s, tenant_id=seeded.identity.tenant_id, paragraph_id=seeded.paragraph_id)[0]
        sentences = [sc.text for sc in version.sentences]
        verified = version.verified
    assert sentences
    controls.set_kill_switch(clean_db, engaged=True, reason=REASON, actor=OPS)

    at = make_app("pages/write.py")
    assert frozen_banners(at)
    shown = [t.value for t in at.text]
    for index, sentence in enumerate(sentences, start=1):
        assert f"{index}. {sentence}" in shown
    assert "Version 1" in " ".join(c.value for c in at.caption)
    accept = button(at, "Accept")
    assert accept.disabled is (not verified), "accepting a verified version needs no model"
    if verified:
        accept.click().run()
        assert "Accepted" in [b.label for b in at.button]
