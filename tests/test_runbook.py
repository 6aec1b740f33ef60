"""The runbook as SREs meet it: ``docs/runbook.md`` held to the code (every alert rule, breaker,
incident step and go-live criterion has a procedure; every command in it parses against the real
command line), the Runbook page rendering each procedure and opening the one a link names, and the
Operations page linking each firing alert to its procedure. Real database, real pages (AppTest)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from core import alerts, authz, breakers, db, executors, golive, runbook
from core.cli import build_parser
from core.errors import ConfigurationError, PermissionDeniedError
from core.models import FalseSupportReport
from core.pages_spec import pages_for
from core.tenancy import bootstrap
from core.ui import md_escape
from tests.ui_helpers import MakeApp

PAGE = "pages/runbook.py"
BOOK = runbook.load()


@pytest.fixture(autouse=True)
def _no_background_evaluations() -> Iterator[None]:
    # An in-process executor left by an earlier test evaluates alerts on its own clock.
    executors.reset_executors()
    yield
    executors.reset_executors()


# The document held to the code ---------------------------------------------------------------------


@pytest.mark.parametrize("rule", list(alerts.RULES))
def test_every_alert_rule_in_the_code_has_a_procedure(rule: str) -> None:
    procedure = BOOK.for_alert(rule)
    assert procedure is not None, f"alert rule {rule} has no procedure: add `alert:{rule}` to a Triggers: line"
    assert procedure.commands or "python -m" in procedure.body, "a procedure says what to run"


def test_every_breaker_incident_step_and_go_live_criterion_has_a_procedure() -> None:
    for name in (breakers.provider_breaker("openai"), breakers.provider_breaker("local"), breakers.VERIFICATION):
        assert BOOK.for_breaker(name) is not None, name
    assert BOOK.for_breaker(breakers.COST) is not None
    steps = [BOOK.for_incident_step(step) for step in runbook.INCIDENT_STEPS]
    assert None not in steps
    assert len({p.anchor for p in steps if p}) == len(runbook.INCIDENT_STEPS), "one procedure per step"
    for key in golive.CRITERIA:
        assert BOOK.for_criterion(key) is not None, key


def test_every_trigger_in_the_document_names_something_that_exists() -> None:
    known = {
        "alert": set(alerts.RULES),
        "breaker": set(runbook.BREAKER_KINDS),
        "incident": set(runbook.INCIDENT_STEPS),
        "golive": set(golive.CRITERIA),
        "health": {"database", "job-queue", "workers"},
        "task": {"key-rotation", "restore", "kill-switch-drill", "release"},
    }
    for procedure in BOOK.procedures:
        for trigger in procedure.triggers:
            kind, _, name = trigger.partition(":")
            assert name in known.get(kind, set()), f"{procedure.anchor}: unknown trigger {trigger}"


def test_incident_steps_follow_the_seed_order_and_name_their_commands() -> None:
    anchors = [p.anchor for p in BOOK.procedures]
    steps = [BOOK.for_incident_step(step) for step in runbook.INCIDENT_STEPS]
    positions = [anchors.index(p.anchor) for p in steps if p]
    assert positions == sorted(positions)
    commands = " ".join(c for p in steps if p for c in p.commands)
    for expected in (
        "incident freeze --reason",
        "incident scope TRACE_ID",
        "incident rollback --prompt",
        "incident rollback --model",
        "golden run",
        "incident thaw",
    ):
        assert expected in commands, expected
    assert "python -m core drill kill-switch" in BOOK.for_criterion("kill_switch_tested").commands  # type: ignore[union-attr]


@pytest.mark.parametrize("procedure", BOOK.procedures, ids=lambda p: p.anchor)
def test_every_command_of_a_procedure_parses_against_the_real_cli(
    procedure: runbook.Procedure, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = build_parser()
    for command, argv in zip(procedure.commands, procedure.argv(), strict=True):
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{procedure.anchor}: `{command}` does not parse: {capsys.readouterr().err.strip()}")


def test_anchors_are_the_ones_github_gives_and_unique() -> None:
    anchors = [p.anchor for p in BOOK.procedures]
    assert len(anchors) == len(set(anchors))
    assert runbook.slug("Incident: patch with a regression test") == "incident-patch-with-a-regression-test"
    assert runbook.slug("Kill-switch drill") == "kill-switch-drill"
    text = runbook.RUNBOOK_FILE.read_text(encoding="utf-8")
    for target in {a for p in BOOK.procedures for a in re.findall(r"\]\(#([^)]+)\)", p.body)}:
        assert BOOK.get(target) is not None, f"a link to #{target} leads nowhere"
    assert "## Cost per paragraph high" in text and BOOK.get("cost-per-paragraph-high") is not None


def test_a_malformed_or_missing_runbook_is_refused_with_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="has no 'Triggers:' line"):
        runbook.parse("## Something\n\nNo triggers here.\n")
    with pytest.raises(ConfigurationError, match="anchor 'twice'"):
        runbook.parse("## Twice\nTriggers: `task:a`\n\n## Twice\nTriggers: `task:b`\n")
    # A heading inside a code block is not a section.
    book = runbook.parse("## Real\nTriggers: `task:x`\n\n```sh\n## not a heading\npython -m core migrate\n```\n")
    assert [p.anchor for p in book.procedures] == ["real"] and book.procedures[0].commands == (
        "python -m core migrate",
    )
    inline = runbook.parse("## A\nTriggers: `task:x`\n\nFirst run `python -m core keys status`, then go on.\n")
    assert inline.procedures[0].commands == ("python -m core keys status",), "inline commands are checked too"
    with pytest.raises(ConfigurationError, match="cannot be read"):
        runbook.load(tmp_path / "missing.md")
    assert runbook.procedure_for_alert("budget", tmp_path / "missing.md") is None, "the Operations page still renders"


# The Runbook page ----------------------------------------------------------------------------------


def expanders(at: AppTest) -> dict[str, bool]:
    return {e.label: e.proto.expanded for e in at.get("expander")}


def open_runbook(make_app: MakeApp, *, procedure: str | None = None, role: str = "admin") -> AppTest:
    at = make_app(role=role)
    if procedure is not None:
        at.query_params["procedure"] = procedure
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def test_the_page_renders_every_procedure_closed_without_a_link(make_app: MakeApp, clean_db: Engine) -> None:
    at = open_runbook(make_app)
    shown = expanders(at)
    assert list(shown) == [md_escape(p.title) for p in BOOK.procedures]
    assert not any(shown.values()) and not opened(at)
    bodies = "\n".join(m.value for m in at.markdown)
    for procedure in BOOK.procedures:
        assert procedure.body.splitlines()[0][:40] in bodies or procedure.body[:40] in bodies, procedure.anchor
    assert all(not m.proto.allow_html for m in at.markdown), "never raw HTML"
    assert "[Incident: freeze generation](#" not in bodies, "same-page anchors would reload the app"
    links = {(p.proto.label, p.proto.query_string) for p in at.get("page_link")}
    assert ("See: " + md_escape("Incident: freeze generation"), "procedure=incident-freeze-generation") in links
    table = at.dataframe[0].value
    assert list(table["Alert rule"]) == [r.title for r in alerts.RULES.values()]
    assert "none" not in set(table["Procedure"])


def opened(at: AppTest) -> list[str]:
    """Titles of the procedures shown whole on top (opened by a link)."""
    return [m.value[len("#### ") :] for m in at.markdown if m.value.startswith("#### ")]


@pytest.mark.parametrize("anchor", ["cost-per-paragraph-high", "incident-thaw", "kill-switch-drill"])
def test_a_link_with_a_procedure_opens_that_one_only(make_app: MakeApp, clean_db: Engine, anchor: str) -> None:
    procedure = BOOK.get(anchor)
    assert procedure is not None
    at = open_runbook(make_app, procedure=anchor)
    assert opened(at) == [md_escape(procedure.title)]
    listed = expanders(at)
    assert md_escape(procedure.title) not in listed and len(listed) == len(BOOK.procedures) - 1
    assert not any(listed.values()), "the others stay closed"
    assert runbook.without_anchor_links(procedure.body) in [m.value for m in at.markdown]
    assert all("There is no procedure" not in w.value for w in at.warning)


def test_an_unknown_procedure_in_the_address_is_named_escaped(make_app: MakeApp, clean_db: Engine) -> None:
    hostile = "<img src=x onerror=alert(1)>**x**"
    at = open_runbook(make_app, procedure=hostile)
    [warning] = [w.value for w in at.warning if "There is no procedure" in w.value]
    assert md_escape(hostile) in warning and "<img" not in warning.replace("\\<img", "")
    assert not opened(at) and len(expanders(at)) == len(BOOK.procedures)


@pytest.mark.parametrize("role", [authz.RESEARCHER, authz.PROMPT_ENGINEER])
def test_researchers_and_prompt_engineers_cannot_open_the_runbook(
    make_app: MakeApp, clean_db: Engine, role: str
) -> None:
    assert PAGE not in {spec.path for spec in pages_for(role)}
    at = make_app(role=role)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(PAGE)
    with db.session_scope(clean_db) as s:
        viewer = bootstrap(s)
        with pytest.raises(PermissionDeniedError):
            golive.status(s, viewer=viewer.__class__(viewer.tenant_id, viewer.user_id, role, "someone"))


@pytest.mark.parametrize("role", [authz.OPS, authz.ADMIN])
def test_ops_and_admins_open_it(make_app: MakeApp, clean_db: Engine, role: str) -> None:
    assert PAGE in {spec.path for spec in pages_for(role)}
    at = open_runbook(make_app, role=role)
    assert [t.value for t in at.title] == ["Runbook"]
    assert {s.value for s in at.subheader} >= {"Go-live criteria", "Procedures"}


# The Operations page links each firing alert to its procedure ---------------------------------------


def test_each_firing_alert_on_the_operations_page_links_to_its_procedure(make_app: MakeApp, clean_db: Engine) -> None:
    with db.session_scope(clean_db) as s:
        tenant_id = bootstrap(s).tenant_id
        s.add(FalseSupportReport(tenant_id=tenant_id, note="the sentence overstates the effect"))
    at = make_app("pages/operations.py")
    firing = [e.value for e in at.error if "firing since" in e.value]
    assert firing and md_escape(alerts.RULES["false_support"].title) in firing[0]
    links = [(p.proto.page, p.proto.label, p.proto.query_string) for p in at.get("page_link")]
    procedure = BOOK.for_alert("false_support")
    assert procedure is not None
    assert any(
        page.endswith("runbook")
        and label == f"What to do: {md_escape(procedure.title)}"
        and query == f"procedure={procedure.anchor}"
        for page, label, query in links
    ), links
    # Following it opens that procedure on the Runbook page.
    at.query_params["procedure"] = procedure.anchor
    at.switch_page(PAGE).run()
    assert opened(at) == [md_escape(procedure.title)]
