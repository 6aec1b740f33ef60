"""The Verifier: a model's verdict per sentence, lowered by the deterministic guard.

The guard can only turn a verdict to unsupported, never the other way: a model that
says "supported" is overruled by any guard finding, and a model that says
"unsupported" keeps its verdict whatever the guard says.
"""

from __future__ import annotations

from collections.abc import Sequence

from core import gateway
from core.agents import guard
from core.agents.contracts import CitedFact, VerifierInput, VerifierOutput
from core.agents.guard import FactText


def build_input(sentence: str, cited: Sequence[str], facts: Sequence[FactText]) -> VerifierInput:
    """What the model sees: the sentence and only the facts it cites."""
    by_id = {f.id: f for f in facts}
    return VerifierInput(
        sentence=sentence,
        facts=[CitedFact(id=c, text=by_id[c].text) for c in dict.fromkeys(cited) if c in by_id],
        cited=list(cited),
    )


def combine(model: VerifierOutput, finding: guard.GuardFinding | None) -> VerifierOutput:
    if finding is None:
        return model
    # The guard's finding is named precisely, so it leads; the model's reading follows it.
    reason = finding.reason
    if model.verdict == "unsupported" and model.reason:
        reason = f"{finding.reason} (Verifier: {model.reason})"
    return VerifierOutput(verdict="unsupported", failure_mode=finding.failure_mode, reason=reason)


def guarded(model: VerifierOutput, sentence: str, cited: Sequence[str], facts: Sequence[FactText]) -> VerifierOutput:
    """The final verdict for a sentence: the model's, lowered by the guard where it finds fault."""
    return combine(model, guard.check(sentence, cited, facts))


def judge(ctx: gateway.CallContext, sentence: str, cited: Sequence[str], facts: Sequence[FactText]) -> VerifierOutput:
    """Verify one sentence: the configured Verifier through the gateway, then the guard."""
    request = build_input(sentence, cited, facts)
    if not request.facts:
        # Nothing to show a model: the guard alone decides (no citation, or only unknown ones).
        model = VerifierOutput(verdict="unsupported", failure_mode="no_citation", reason="No known fact is cited.")
    else:
        model = gateway.run_agent(
            "verifier",
            request,
            VerifierOutput,
            ctx=ctx,
            render={
                "sentence": sentence,
                "cited": ", ".join(cited),
                "facts": "\n".join(f"{f.id}: {f.text}" for f in request.facts),
            },
        )
    return guarded(model, sentence, cited, facts)
