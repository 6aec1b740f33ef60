"""Verification of free-standing sentences (``python -m core verify FILE.jsonl``).

Each item is ``{"sentence", "facts": [{"id", "text"}], "cited": [ids]}``; the answer adds
``verdict``, ``failure_mode`` and ``reason``. The sentence is judged by the configured
Verifier through the gateway and then by the deterministic guard, exactly as in a paragraph.
"""

from __future__ import annotations

from typing import Any

from core import gateway
from core.agents import verifier
from core.agents.guard import FactText
from core.complexity import SourceFact, paragraph_complexity
from core.errors import WorkbenchError


def parse_item(item: dict[str, Any]) -> tuple[str, list[str], list[FactText]]:
    sentence = item.get("sentence")
    if not isinstance(sentence, str):
        raise WorkbenchError('"sentence" must be a string.')
    raw_facts = item.get("facts", [])
    if not isinstance(raw_facts, list) or not all(
        isinstance(f, dict) and isinstance(f.get("text"), str) and f.get("id") is not None for f in raw_facts
    ):
        raise WorkbenchError('"facts" must be a list of {"id", "text"} objects.')
    cited = item.get("cited", [])
    if not isinstance(cited, list):
        raise WorkbenchError('"cited" must be a list of fact ids.')
    return sentence, [str(c) for c in cited], [FactText(str(f["id"]), f["text"]) for f in raw_facts]


def verify_item(item: dict[str, Any], *, ctx: gateway.CallContext) -> dict[str, Any]:
    sentence, cited, facts = parse_item(item)
    # No brief here: the sentence stands in for it, and the facts given count as one source.
    ctx.complexity = paragraph_complexity(sentence, [SourceFact(f.text, "given") for f in facts if f.id in cited])
    verdict = verifier.judge(ctx, sentence, cited, facts)
    return {"verdict": verdict.verdict, "failure_mode": verdict.failure_mode, "reason": verdict.reason}
