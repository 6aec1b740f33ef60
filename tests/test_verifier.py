"""The Verifier (local model + deterministic guard) against adversarial and near-verbatim cases.

Four case files were written independently of the implementation, each by an author who saw
neither the code nor the other files: ``verifier_cases.jsonl`` (adversarial edits by category),
``verifier_holdout.jsonl`` (hand-written, statistics-heavy facts), ``verifier_redteam.jsonl``
(edits aimed at a lexical verifier: function words, elided modifiers, values moved within a fact)
and ``verifier_blind.jsonl`` (an examiner's set over the issue's categories). The target is zero
false supports; near-verbatim sentences must stay supported. The hand-written cases below pin
down each failure mode by name.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.agents.guard import FactText, check
from core.agents.verifier import build_input, guarded
from core.providers.local.verifier import verify

DATA = Path(__file__).parent / "data"


def run(sentence: str, cited: list[str], facts: list[FactText]) -> tuple[str, str | None]:
    verdict = guarded(verify(build_input(sentence, cited, facts)), sentence, cited, facts)
    return verdict.verdict, verdict.failure_mode


def load_cases(name: str) -> list[dict]:
    path = DATA / name
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


CASE_FILES = ["verifier_cases.jsonl", "verifier_holdout.jsonl", "verifier_redteam.jsonl", "verifier_blind.jsonl"]


@pytest.mark.parametrize("name", CASE_FILES)
def test_no_false_supports_on_independent_cases(name: str) -> None:
    cases = load_cases(name)
    if not cases:
        pytest.skip(f"{name} not present")
    false_supports = []
    for case in cases:
        facts = [FactText(f["id"], f["text"]) for f in case["facts"]]
        verdict, _mode = run(case["sentence"], case["cited"], facts)
        if case["expected"] == "unsupported" and verdict == "supported":
            false_supports.append((case["category"], case["sentence"]))
    assert false_supports == []


@pytest.mark.parametrize("name", CASE_FILES)
def test_near_verbatim_sentences_stay_supported(name: str) -> None:
    cases = [c for c in load_cases(name) if c["expected"] == "supported"]
    if not cases:
        pytest.skip(f"{name} not present")
    rejected = []
    for case in cases:
        facts = [FactText(f["id"], f["text"]) for f in case["facts"]]
        verdict, mode = run(case["sentence"], case["cited"], facts)
        if verdict != "supported":
            rejected.append((case["category"], mode, case["sentence"]))
    # A near-verbatim sentence may still fail when it adds a word the fact lacks or spells out an
    # abbreviation the fact never defines ("LBBB"); that is the price of zero false supports.
    near_kinds = (
        "near_verbatim",
        "number_formats",
        "supported_number_format",
        "supported_preamble_dropped",
        "supported_tense",
        "supported_reference_dropped",
    )
    near = [c for c in cases if c["category"] in near_kinds]
    near_rejected = [r for r in rejected if r[0] in near_kinds]
    assert len(near_rejected) <= 0.1 * len(near), near_rejected
    # Combinations across facts are read conservatively; most must still pass.
    assert len(rejected) <= 0.15 * len(cases), rejected


F = [
    FactText(
        "F1", "In sandy soils, biochar applied at 20 t/ha reduced nitrate leaching by 23% relative to unamended plots."
    ),
    FactText("F2", "In loamy soils, biochar did not change nitrate leaching."),
    FactText("F3", "These results suggest that biochar may buffer nitrogen losses after drought."),
    FactText(
        "F4", "The inoculant outperformed compost in sandy soil, raising water-use efficiency by approximately 17%."
    ),
    FactText("F5", "The trial ran from 2019 to 2021 at Hollin Ridge with 48 plots."),
]

SUPPORTED = [
    ("In sandy soils, biochar applied at 20 t/ha reduced nitrate leaching by 23% relative to unamended plots.", ["F1"]),
    (
        "Biochar applied at 20 t/ha reduced nitrate leaching by 23 percent relative to unamended plots in sandy soils.",
        ["F1"],
    ),
    ("In loamy soils, biochar did not change nitrate leaching.", ["F2"]),
    ("The results suggest that biochar may buffer nitrogen losses after drought.", ["F3"]),
    ("The trial ran from 2019 to 2021 at Hollin Ridge with 48 plots.", ["F5"]),
    (
        "In sandy soils, biochar applied at 20 t/ha reduced nitrate leaching by 23% relative to unamended plots, "
        "and in loamy soils, biochar did not change nitrate leaching.",
        ["F1", "F2"],
    ),
]

UNSUPPORTED = [
    # (sentence, cited, expected failure mode)
    (
        "In sandy soils, biochar applied at 20 t/ha reduced nitrate leaching by 32% relative to unamended plots.",
        ["F1"],
        "number_mismatch",
    ),
    (
        "In sandy soils, biochar applied at 20 kg/ha reduced nitrate leaching by 23% relative to unamended plots.",
        ["F1"],
        "unit_mismatch",
    ),
    (
        "In sandy soils, biochar applied at 20 t/ha reduced nitrate leaching by 23 percentage points relative to "
        "unamended plots.",
        ["F1"],
        "unit_mismatch",
    ),
    ("The trial ran from 2018 to 2021 at Hollin Ridge with 48 plots.", ["F5"], "number_mismatch"),
    (
        "In sandy soils, biochar applied at 20 t/ha increased nitrate leaching by 23% relative to unamended plots.",
        ["F1"],
        "direction",
    ),
    ("In loamy soils, biochar changed nitrate leaching.", ["F2"], "negation"),
    (
        "In sandy soils, biochar applied at 20 t/ha did not reduce nitrate leaching relative to unamended plots.",
        ["F1"],
        "negation",
    ),
    ("Biochar buffers nitrogen losses after drought.", ["F3"], "hedge_dropped"),
    ("These results prove that biochar may buffer nitrogen losses after drought.", ["F3"], "hedge_dropped"),
    ("The inoculant outperformed compost in sandy soil, raising water-use efficiency by 17%.", ["F4"], "hedge_dropped"),
    (
        "Compost outperformed the inoculant in sandy soil, raising water-use efficiency by approximately 17%.",
        ["F4"],
        "role_swap",
    ),
    (
        "Biochar applied at 20 t/ha reduced nitrate leaching by 23% relative to unamended plots.",
        ["F1"],
        "scope_widened",
    ),
    (
        "In all soils, biochar applied at 20 t/ha reduced nitrate leaching by 23% relative to unamended plots.",
        ["F1"],
        "scope_widened",
    ),
    (
        "In sandy soils, biochar applied at 20 t/ha reduced nitrate leaching by 23% relative to unamended plots, "
        "which doubled maize yield.",
        ["F1"],
        "direction",
    ),
    (
        "In sandy soils, biochar applied at 20 t/ha significantly reduced nitrate leaching by 23% relative to "
        "unamended plots.",
        ["F1"],
        "unsupported_content",
    ),
    ("The trial ran from 2019 to 2021 at Eastmoor with 48 plots.", ["F5"], "entity_mismatch"),
    (
        "In loamy soils, biochar applied at 20 t/ha reduced nitrate leaching by 23%.",
        ["F1", "F2"],
        "negation",  # F2 says biochar did not change leaching in loamy soils
    ),
    (
        "In sandy soils, biochar applied at 20 t/ha reduced nitrate leaching by 23% relative to unamended plots.",
        ["F2"],
        "number_mismatch",
    ),
    (
        "In sandy soils, biochar applied at 20 t/ha reduced nitrate leaching by 23% relative to unamended plots.",
        [],
        "no_citation",
    ),
    (
        "In sandy soils, biochar applied at 20 t/ha reduced nitrate leaching by 23% relative to unamended plots.",
        ["F99"],
        "unknown_citation",
    ),
    ("The trial ran from 2019 to 2021 at Hollin Ridge with 48 plots.", ["F5", "F3"], "irrelevant_citation"),
    ("", ["F1"], "empty_sentence"),
]


@pytest.mark.parametrize(("sentence", "cited"), SUPPORTED)
def test_supported(sentence: str, cited: list[str]) -> None:
    assert run(sentence, cited, F) == ("supported", None)


@pytest.mark.parametrize(("sentence", "cited", "mode"), UNSUPPORTED)
def test_unsupported_with_named_failure_mode(sentence: str, cited: list[str], mode: str) -> None:
    assert run(sentence, cited, F) == ("unsupported", mode)


def test_guard_only_lowers_a_verdict() -> None:
    from core.agents.contracts import VerifierOutput
    from core.agents.verifier import combine

    fooled = VerifierOutput(verdict="supported", failure_mode=None, reason="looks fine")
    sentence = "In sandy soils, biochar applied at 20 t/ha reduced nitrate leaching by 32% relative to unamended plots."
    lowered = guarded(fooled, sentence, ["F1"], F)
    assert (lowered.verdict, lowered.failure_mode) == ("unsupported", "number_mismatch")
    # The guard never raises a model's "unsupported" to "supported", even when it finds nothing.
    strict = VerifierOutput(verdict="unsupported", failure_mode="unsupported_content", reason="model says no")
    assert combine(strict, None) == strict
    assert check(SUPPORTED[0][0], ["F1"], F) is None
