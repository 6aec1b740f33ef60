"""The Prompts page (issue 7, Must show 4 and the UI half of Must show 2): versions and their diff,
golden runs of two versions side by side, the release gate refusing an activation, who sees what,
and the history chart. Golden runs are made by the real runner with the ``local`` provider."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, func, select
from streamlit.testing.v1 import AppTest

from core import audit, authz, db, golden_results, model_registry, prompt_diff, prompts, prompts_view
from core.golden_runner import run_golden
from core.models import AuditEntry, PromptDeployment, utcnow
from core.prompts import PROMPTS_DIR, lock_new_versions
from core.settings import reset_settings
from core.ui import md_escape
from tests.test_model_registry import register_models
from tests.ui_helpers import MakeApp

PAGE = "pages/prompts.py"


@dataclass(frozen=True)
class PromptSet:
    agent: str
    base: str
    """The newest shipped version of the agent."""
    good: str
    """A candidate that only adds a line to the template: it passes the golden set."""
    weak: str
    """A candidate that declares ``max_sentences: 2``: the local Writer drops facts, cases fail."""


GOOD_LINE = "Prefer the facts closest to the brief."


def candidate_prompts(folder: Path) -> PromptSet:
    """The shipped prompts copied to ``folder``, plus two locked Writer candidates (good and weak)."""
    agent = "writer"
    shutil.copytree(PROMPTS_DIR, folder)
    base = prompt_diff.versions(agent, prompts_dir=folder)[-1]
    number = int(base.lstrip("v"))
    good, weak = f"v{number + 1}", f"v{number + 2}"
    shipped = (folder / agent / f"{base}.md").read_text()
    for version, extra in ((good, ""), (weak, "max_sentences: 2\n")):
        meta, _, body = shipped.replace(f"version: {base}\n", f"version: {version}\n", 1).partition("\n---\n")
        # The extra parameter goes last in the front matter, so it wins over one the base declares.
        (folder / agent / f"{version}.md").write_text(f"{meta}\n{extra}---\n{body}{GOOD_LINE}\n")
    lock_new_versions(folder)
    return PromptSet(agent, base, good, weak)


@pytest.fixture
def prompt_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PromptSet:
    """The candidates of ``candidate_prompts``, configured as the workbench's prompts folder
    (``WORKBENCH_PROMPTS_DIR``, read by the gateway, the runner and the page alike)."""
    folder = tmp_path / "prompts"
    found = candidate_prompts(folder)
    monkeypatch.setenv("WORKBENCH_PROMPTS_DIR", str(folder))
    reset_settings()
    return found


def _run(engine: Engine, agent: str, version: str) -> int:
    return run_golden(engine, prompt_pins={agent: version}, label=f"{agent} {version}", triggered_by="test").id


def _texts(at: AppTest) -> list[str]:
    return [m.value for m in [*at.markdown, *at.caption, *at.info, *at.error, *at.warning]]


def _frame(at: AppTest, column: str) -> pd.DataFrame:
    """The table on the page that has ``column`` (AppTest does not expose a dataframe's key)."""
    [frame] = [d.value for d in at.dataframe if column in d.value.columns]
    return frame


def _open(make_app: MakeApp, agent: str, role: str = "prompt_engineer") -> AppTest:
    at = make_app(PAGE, role=role)
    at.selectbox(key="prompts_agent").set_value(agent).run()
    assert not at.exception, at.exception
    return at


def test_versions_with_their_parameters_and_the_diff_between_two(prompt_set: PromptSet, make_app: MakeApp) -> None:
    agent, old, new = prompt_set.agent, prompt_set.good, prompt_set.weak
    at = _open(make_app, agent)
    versions = _frame(at, "Release gate")
    assert list(versions["Version"]) == prompt_diff.versions(agent)
    assert set(versions["Serves"]) >= {"active"}, "the shipped default serves until a deployment says otherwise"
    params = _frame(at, "Parameter")
    assert {"Parameter", old, new} <= set(params.columns) and "temperature" in set(params["Parameter"])
    at.selectbox(key=f"prompts_{agent}_diff_old").set_value(old)
    at.selectbox(key=f"prompts_{agent}_diff_new").set_value(new).run()
    [diff] = [c.value for c in at.code]
    assert f"--- {agent}/{old}.md" in diff and f"+++ {agent}/{new}.md" in diff
    assert diff == prompt_diff.unified_diff(agent, old, new).rstrip("\n")
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == [f"-version: {old}", f"+version: {new}", "+max_sentences: 2"]


def test_two_versions_side_by_side_with_verdicts_and_metrics(
    prompt_set: PromptSet, make_app: MakeApp, clean_db: Engine
) -> None:
    agent, old, new = prompt_set.agent, prompt_set.base, prompt_set.weak
    first = _run(clean_db, agent, old)
    at = _open(make_app, agent)
    at.selectbox(key=f"prompts_{agent}_side_A_version").set_value(old)
    at.selectbox(key=f"prompts_{agent}_side_B_version").set_value(new).run()
    assert any("has no finished golden run" in t for t in _texts(at)), "B has no run yet: the page says so"
    at.button(key="prompts_run_B").click().run()  # the "Run golden set for this version" button
    assert not at.exception, at.exception
    with db.session_scope(clean_db) as s:
        [second] = golden_results.runs_for(s, agent=agent, version=new)
    assert second.id != first and "prompt_engineer@localhost" in second.triggered_by

    metrics = _frame(at, "B against A")
    assert list(metrics["Metric"]) == [
        "Cases passed",
        "Cases",
        "Expectations passed",
        "Sentence support rate",
        "Paragraph verification rate",
        "False supports",
        "Tokens",
        "Cost",
        "Latency",
    ]
    judged = metrics.set_index("Metric")["B against A"]
    assert judged["Cases passed"] == "worse" and judged["Cases"] == "same", "the weak candidate fails cases"
    assert any("B is worse than A on: Cases passed" in w.value for w in at.warning)
    cases = [m.value for m in at.markdown if m.value.startswith("**Case ")]
    assert len(cases) == second.cases_total >= 10
    heads = [m.value for m in at.markdown if m.value.startswith(("**A** · ", "**B** · "))]
    assert sum(h.startswith("**A**") for h in heads) == sum(h.startswith("**B**") for h in heads) == len(cases)
    verdicts = [m.value for m in at.markdown if "**supported**" in m.value or "**unsupported · " in m.value]
    assert any(":green[" in v for v in verdicts) and any(":red[" in v for v in verdicts)
    with db.session_scope(clean_db) as s:
        run_b = golden_results.get_run(s, run_id=second.id)
    sentence = run_b.cases[0].sentences[0]
    assert any(md_escape(sentence["text"]) in v for v in verdicts), "the paragraph's own sentences are shown"


def test_any_two_golden_runs_can_be_compared(prompt_set: PromptSet, make_app: MakeApp, clean_db: Engine) -> None:
    agent = prompt_set.agent
    a, b = _run(clean_db, agent, prompt_set.base), _run(clean_db, agent, prompt_set.weak)
    at = _open(make_app, agent)
    at.radio(key="prompts_compare_mode").set_value("Any two golden runs").run()
    titles = at.selectbox(key="prompts_side_A_run").options
    assert [t.split(" ")[0] for t in titles] == [f"#{b}", f"#{a}"], "newest first"
    at.selectbox(key="prompts_side_A_run").set_value(titles[1])
    at.selectbox(key="prompts_side_B_run").set_value(titles[0]).run()
    assert _frame(at, "B against A").set_index("Metric").loc["Cases passed", "B against A"] == "worse"
    every_case = len([m for m in at.markdown if m.value.startswith("**Case ")])
    at.toggle(key="prompts_only_differ").set_value(True).run()
    assert not at.exception, at.exception
    differing = [m.value for m in at.markdown if m.value.startswith("**Case ")]
    assert 0 < len(differing) < every_case


def test_activation_without_a_passing_run_is_refused_on_the_page(
    prompt_set: PromptSet, make_app: MakeApp, clean_db: Engine
) -> None:
    agent, new = prompt_set.agent, prompt_set.weak
    _run(clean_db, agent, new)  # it runs, and fails: still no passing run of this file
    at = _open(make_app, agent)
    at.selectbox(key=f"prompts_{agent}_deploy_version").set_value(new)
    at.text_input(key="prompts_deploy_reason").input("try it")
    at.button(key="prompts_activate").click().run()
    assert not at.exception, at.exception
    [refusal] = [e.value for e in at.error]
    assert "no passing golden run" in refusal and "python \\-m core golden run" in refusal
    assert "did not pass" in refusal and "failing cases" in refusal, "the gate names what failed"
    with db.session_scope(clean_db) as s:
        assert s.scalar(select(func.count()).select_from(PromptDeployment)) == 0
        changes = select(func.count()).where(AuditEntry.event_type == audit.PROMPT_CHANGED)
        assert s.scalar(changes) == 0


def test_activation_after_a_passing_run_serves_the_version(
    prompt_set: PromptSet, make_app: MakeApp, clean_db: Engine
) -> None:
    agent, new = prompt_set.agent, prompt_set.good
    _run(clean_db, agent, new)
    at = _open(make_app, agent)
    at.selectbox(key=f"prompts_{agent}_deploy_version").set_value(new)
    at.text_input(key="prompts_deploy_reason").input("golden run passed")
    at.button(key="prompts_activate").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    rows = _frame(at, "Canary share")
    assert rows.set_index("Agent").loc[agent, "Active"] == new


def test_a_researcher_cannot_open_the_page_and_ops_sees_it_without_actions(make_app: MakeApp) -> None:
    researcher = make_app(role="researcher")
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        researcher.switch_page(PAGE)
    ops = make_app(PAGE, role="ops")
    assert [t.value for t in ops.title] == ["Prompts"]
    assert not _frame(ops, "Canary share").empty
    keys = {b.key for b in ops.button}
    assert not keys & {"prompts_activate", "prompts_canary", "prompts_promote", "prompts_rollback", "prompts_run_A"}
    engineer = make_app(PAGE, role="prompt_engineer")
    assert {"prompts_activate", "prompts_rollback", "prompts_run_B"} <= {b.key for b in engineer.button}


def test_history_chart_of_golden_runs(prompt_set: PromptSet, make_app: MakeApp, clean_db: Engine) -> None:
    agent, old, new = prompt_set.agent, prompt_set.base, prompt_set.weak
    _run(clean_db, agent, old)
    _run(clean_db, agent, new)
    at = _open(make_app, agent)
    [chart] = at.get("plotly_chart")
    spec = json.loads(chart.proto.spec)
    assert {a["text"] for a in spec["layout"]["annotations"]} == {"Pass rate", "False supports", "Cost"}
    assert {trace["name"] for trace in spec["data"]} == {old, new}, "one colour per version"
    assert len(spec["data"]) == 6, "three panels per version"


def test_compare_pairs_cases_and_judges_each_metric(prompt_set: PromptSet, clean_db: Engine) -> None:
    agent, old = prompt_set.agent, prompt_set.base
    run_id = _run(clean_db, agent, old)
    with db.session_scope(clean_db) as s:
        detail = golden_results.get_run(s, run_id=run_id)
        points = golden_results.history(s, agent=agent)
    comparison = golden_results.compare(detail, detail)
    assert [p.case_id for p in comparison.cases] == sorted(c.case_id for c in detail.cases)
    assert not any(p.differs for p in comparison.cases)
    assert {m.verdict for m in comparison.metrics} == {"same"}
    assert [(p.run_id, p.version) for p in points] == [(run_id, old)]
    frame = prompts_view.metrics_frame(comparison)
    assert list(frame["Difference (B − A)"]) == [""] * len(frame)


def test_a_difference_is_judged_by_which_way_is_better() -> None:
    assert golden_results.Metric("False supports", 0, 2, False).verdict == "worse"
    assert golden_results.Metric("Cases passed", 9, 10, True).verdict == "better"
    assert golden_results.Metric("Tokens", 100, 200, None).verdict == "same", "tokens are shown, not judged"
    assert golden_results.Metric("Cost", None, 0.1, False, "usd").difference is None


def test_a_canary_is_started_compared_live_and_rolled_back_on_the_page(
    prompt_set: PromptSet, make_app: MakeApp, clean_db: Engine
) -> None:
    agent, good = prompt_set.agent, prompt_set.good
    _run(clean_db, agent, good)
    at = _open(make_app, agent)
    at.selectbox(key=f"prompts_{agent}_deploy_version").set_value(good)
    at.slider(key="prompts_canary_share").set_value(0.25)
    at.text_input(key="prompts_deploy_reason").input("try on a quarter")
    at.button(key="prompts_canary").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert _frame(at, "Canary share").set_index("Agent").loc[agent, "Canary share"] == "25%"
    arms = _frame(at, "Arm")
    assert list(arms["Arm"]) == ["canary", "baseline"] and list(arms["Version"]) == [good, prompt_set.base]
    assert any("verdict: **watching**" in m.value for m in at.markdown), "no paragraph has been drafted yet"

    at.text_input(key="prompts_deploy_reason").input("")
    at.button(key="prompts_rollback").click().run()
    [refusal] = [e.value for e in at.error]
    assert "Say why you roll back" in refusal, "a rollback without a reason is refused, with what to do"
    at.text_input(key="prompts_deploy_reason").input("not needed after all")
    at.button(key="prompts_rollback").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert _frame(at, "Canary share").set_index("Agent").loc[agent, "Canary"] == "–"
    assert not [d for d in at.dataframe if "Arm" in d.value.columns], "no canary, no comparison"
    with db.session_scope(clean_db) as s:
        steps = s.scalars(select(AuditEntry.details).where(AuditEntry.event_type == audit.PROMPT_CHANGED)).all()
    assert len(steps) == 2, "starting and rolling back the canary are both audited"


def test_a_version_changed_after_locking_is_named_not_diffed(
    prompt_set: PromptSet, make_app: MakeApp, tmp_path: Path
) -> None:
    agent, good = prompt_set.agent, prompt_set.good
    edited = tmp_path / "prompts" / agent / f"{good}.md"
    edited.write_text(edited.read_text() + "A quiet edit.\n")
    [broken] = [v for v in prompt_diff.describe(agent) if v.error]
    assert broken.version == good and "changed after it was locked" in broken.error
    at = _open(make_app, agent)
    assert any("changed after it was locked" in e.value for e in at.error)
    assert _frame(at, "Release gate").set_index("Version").loc[good, "Release gate"] == "file broken"
    at.selectbox(key=f"prompts_{agent}_diff_old").set_value(prompt_set.base)
    at.selectbox(key=f"prompts_{agent}_diff_new").set_value(good).run()
    assert not at.exception and not at.code, "no diff of a file that is not the locked one"


# -- two models side by side ----------------------------------------------------------------------

TWO_MODELS = "Two models of this agent"


def _models_mode(at: AppTest) -> AppTest:
    at.radio(key="prompts_compare_mode").set_value(TWO_MODELS).run()
    assert not at.exception, at.exception
    return at


def test_two_models_side_by_side_with_verdicts_and_metrics(
    prompt_set: PromptSet, make_app: MakeApp, clean_db: Engine
) -> None:
    agent, version = prompt_set.agent, prompts.DEFAULT_VERSION  # both sides run the active version
    with clean_db.begin() as connection:
        register_models(connection, "local-writer-lite")  # a second offline id, as routing's tiers name one
    at = _models_mode(_open(make_app, agent))
    picker = at.selectbox(key=f"prompts_{agent}_side_A_model")
    assert picker.options == ["local-writer-1 · provider default", "local-writer-lite"]
    assert picker.value == "local-writer-1" and at.selectbox(key=f"prompts_{agent}_side_B_model").value == (
        "local-writer-lite"
    )
    assert sum("has no golden run yet" in t for t in _texts(at)) == 2, "neither model has a run yet: the page says so"
    assert any("answers the same whatever the model id" in t for t in _texts(at)), "the offline caveat is stated"

    at.button(key="prompts_run_model_A").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert not _metrics_tables(at), "one side has a run, the other not yet: nothing to compare"
    at.button(key="prompts_run_model_B").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])

    with db.session_scope(clean_db) as s:
        runs = golden_results.list_runs(s, finished_only=True)
    assert [(r.label, r.models[agent], r.prompt_versions[agent]) for r in reversed(runs)] == [
        (f"{agent} {version} on local-writer-1", "local-writer-1", version),
        (f"{agent} {version} on local-writer-lite", "local-writer-lite", version),
    ]
    assert all("prompt_engineer@localhost" in r.triggered_by for r in runs)
    captions = [c.value for c in at.caption if "Models: " in c.value]
    for model in ("local-writer-1", "local-writer-lite"):
        assert sum(md_escape(f"writer: {model}") in c for c in captions) == 1, captions

    # The same metrics table and per-case view as two versions get.
    metrics = _frame(at, "B against A")
    assert list(metrics["Metric"])[:3] == ["Cases passed", "Cases", "Expectations passed"]
    judged = metrics.set_index("Metric")["B against A"]
    assert judged["Cases passed"] == judged["False supports"] == "same", "offline, the model id changes no answer"
    cases = [m.value for m in at.markdown if m.value.startswith("**Case ")]
    assert len(cases) == runs[0].cases_total >= 10
    heads = [m.value for m in at.markdown if m.value.startswith(("**A** · ", "**B** · "))]
    assert sum(h.startswith("**A**") for h in heads) == sum(h.startswith("**B**") for h in heads) == len(cases)
    assert any("**supported**" in m.value for m in at.markdown), "each side shows its sentences with verdicts"


def _metrics_tables(at: AppTest) -> list[pd.DataFrame]:
    return [d.value for d in at.dataframe if "B against A" in d.value.columns]


def test_the_model_picker_offers_what_the_agent_may_call(
    prompt_set: PromptSet, make_app: MakeApp, clean_db: Engine
) -> None:
    agent = prompt_set.agent
    boss = authz.cli_identity(1)
    with clean_db.begin() as connection:
        register_models(connection, "local-writer-lite", "local-writer-old", "local-writer-soon", "local-verifier-2")
        model_registry.retire(connection, by=boss, model="local-writer-old", reason="replaced")
        removal = utcnow().date() + timedelta(days=30)
        model_registry.deprecate(connection, by=boss, model="local-writer-soon", removal_date=removal)
    at = _models_mode(_open(make_app, agent))
    picker = at.selectbox(key=f"prompts_{agent}_side_B_model")
    assert picker.options == [
        "local-writer-1 · provider default",
        "local-writer-lite",
        f"local-writer-soon · deprecated, removed on {removal.isoformat()}",
    ], "retired, other agents' and other providers' models (gpt-4o is registered too) are not offered"
    assert not [w for w in at.warning if "deprecated" in w.value], "local-writer-1 and -lite are active"
    picker.set_value("local-writer-soon").run()
    [warning] = [w.value for w in at.warning if "deprecated" in w.value]
    assert md_escape(f"local-writer-soon is deprecated and will be retired on {removal.isoformat()}") in warning
    assert at.button(key="prompts_run_model_B").label == f"Run golden set for {agent} v1 on local-writer-soon"


def test_one_model_is_not_compared_with_itself(prompt_set: PromptSet, make_app: MakeApp) -> None:
    at = _models_mode(_open(make_app, prompt_set.agent))
    assert any("has one model writer may use (local\\-writer\\-1)" in t for t in _texts(at))
    assert not [s for s in at.selectbox if s.key and s.key.endswith("_model")], "nothing to pick"
    assert not {b.key for b in at.button} & {"prompts_run_model_A", "prompts_run_model_B"}


def test_ops_sees_the_model_comparison_without_run_buttons(
    prompt_set: PromptSet, make_app: MakeApp, clean_db: Engine
) -> None:
    agent = prompt_set.agent
    with clean_db.begin() as connection:
        register_models(connection, "local-writer-lite")
    ops = _models_mode(_open(make_app, agent, role="ops"))
    assert ops.selectbox(key=f"prompts_{agent}_side_B_model").value == "local-writer-lite"
    assert not {b.key for b in ops.button} & {"prompts_run_model_A", "prompts_run_model_B"}
    engineer = _models_mode(_open(make_app, agent))
    assert {"prompts_run_model_A", "prompts_run_model_B"} <= {b.key for b in engineer.button}


def test_a_model_side_shows_only_runs_of_the_active_prompt_file(
    prompt_set: PromptSet, make_app: MakeApp, clean_db: Engine
) -> None:
    agent = prompt_set.agent
    with clean_db.begin() as connection:
        register_models(connection, "local-writer-lite")
    _run(clean_db, agent, prompt_set.weak)  # on local-writer-1 too, but another prompt: not this comparison
    at = _models_mode(_open(make_app, agent))
    assert sum("has no golden run yet" in t for t in _texts(at)) == 2
    unpinned = _run(clean_db, agent, prompts.DEFAULT_VERSION)  # a version run: every writer call on local-writer-1
    at = _models_mode(_open(make_app, agent))
    [shown] = [c.value for c in at.caption if "Models: " in c.value]
    assert shown.startswith(md_escape(f"#{unpinned} ")), "it counts: the run records the model it used"
    assert sum("has no golden run yet" in t for t in _texts(at)) == 1
