"""The policy gateway: what the LLM gateway does to an agent's input before it is sent and to
its output before it is used (DESIGN.md, "the loop": input policy after the kill switch, output
policy after the JSON contract).

Input (``screen_input``), on the agent's source text (the Librarian's chunk and document title,
the facts given to the Writer, Verifier and Rewriter, and the Writer's ``search_corpus`` results):

* instruction-like text, role markers and hidden characters are *flagged*, and the text stays
  data: hidden characters are stripped and role markers neutralised in every string sent (one
  look-alike character for one, so offsets hold), and ``core.facts`` rejects any fact whose quote
  or text carries an instruction span, so nothing injected becomes a fact the Writer could see;
* text the PDF draws invisibly (white, under 1 pt, render mode 3) never reaches a model: ``core.pdf``
  leaves it out and reports it, and the ingest run records it as ``input.invisible_text``
  (``record_invisible_text``);
* e-mail addresses and phone numbers are replaced by stable placeholders (``[EMAIL_1]``) in every
  string sent when the tenant asks for it (``Tenant.redact_pii``), and restored in the output
  here, locally, so verbatim quotes and verdicts still work. Redaction runs for every provider,
  the local one included, so the path is always exercised; ``LEAVES_MACHINE`` names the
  providers whose calls actually leave the machine.

Output (``Screen.check_output``), on the validated output with placeholders restored: PII that was
in none of the call's input, links and citations of sources that were in none of it (severe for
the Writer and Rewriter, flagged for the others), and harmful content (severe). A severe finding
raises ``PolicyBlockedError``: nothing of the answer is used or cached.

Every finding becomes a ``PolicyViolation`` row and an audit entry on the gateway's ledger
connection. Rows describe the match in our words and keep only the sha256 of the excerpt.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Connection, select

from core import audit
from core import policy_rules as rules
from core.errors import PolicyBlockedError
from core.models import PolicyViolation, Tenant, table_of, utcnow
from core.pdf import HiddenText
from core.policy_metrics import PolicyRate, policy_violation_rate
from core.policy_redaction import Redactor
from core.providers.base import ToolSpec

if TYPE_CHECKING:
    from core.gateway import CallContext

__all__ = [
    "LEAVES_MACHINE",
    "Finding",
    "PolicyRate",
    "Redactor",
    "Screen",
    "fact_rejection_reason",
    "instruction_spans",
    "locate_in_source",
    "policy_violation_rate",
    "screen_input",
    "tenant_redacts",
]

Output = TypeVar("Output", bound=BaseModel)
_V = table_of(PolicyViolation)
_T = table_of(Tenant)

LEAVES_MACHINE = frozenset({"openai", "anthropic"})
"""Providers whose calls send text off this machine. ``local`` does not; a plugin provider is
assumed to (``leaves_machine``). Redaction does not depend on this: it runs whenever the tenant asks."""
SOURCE_FIELDS = frozenset({"chunk_text", "document_title", "facts"})
"""Top-level payload fields that carry source text: scanned for injections (every string is cleaned)."""
BLOCKING_CITATION_AGENTS = frozenset({"writer", "rewriter"})
"""Agents whose text reaches the manuscript: a link or citation of an unknown source is severe there."""
MAX_ROWS_PER_CALL = 25
"""Findings recorded per agent call at most (the rest are counted in the last row's detail)."""

_INPUT_SEVERITY = {
    rules.INSTRUCTION: "medium",
    rules.ROLE_MARKER: "medium",
    rules.HIDDEN_TEXT: "medium",
    # Like hidden characters: a deliberate trick, already neutralised (the text never reaches a model),
    # so not severe; and white text on a dark figure or table is a false positive that must not block.
    rules.INVISIBLE_TEXT: "medium",
}


def leaves_machine(provider: str) -> bool:
    return provider != "local"


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str  # low | medium | severe
    action: str  # flagged | redacted | blocked
    direction: str  # input | output
    location: str
    detail: str
    excerpt: str  # hashed when stored, never stored itself
    digest: str | None = None  # the excerpt's sha256 when the excerpt is not at hand (invisible text)


def _map_strings(value: Any, fn: Callable[[str, tuple[Any, ...]], str], path: tuple[Any, ...] = ()) -> Any:
    if isinstance(value, str):
        return fn(value, path)
    if isinstance(value, list):
        return [_map_strings(v, fn, (*path, i)) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _map_strings(v, fn, (*path, k)) for k, v in value.items()}
    return value


@dataclass
class Screen:
    """One agent call's policy state: what was sent, the placeholders, and findings not yet recorded."""

    agent: str
    provider: str
    payload: BaseModel
    render: Mapping[str, object]
    redactor: Redactor | None
    findings: list[Finding] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    """The call's input as it was before redaction: what output checks compare against."""

    # -- input ---------------------------------------------------------------------------------

    def _outgoing(self, text: str) -> str:
        text = rules.clean(text)
        return self.redactor.redact(text) if self.redactor is not None else text

    def _scan(self, text: str, location: str) -> None:
        for span in rules.source_spans(text):
            self.findings.append(
                Finding(
                    span.rule,
                    _INPUT_SEVERITY[span.rule],
                    "flagged",
                    "input",
                    location,
                    span.label + ("" if span.rule == rules.HIDDEN_TEXT else "; kept as data"),
                    text[span.start : span.end],
                )
            )

    def wrap_tools(self, tools: Mapping[str, ToolSpec]) -> dict[str, ToolSpec]:
        """Tools whose results are screened like the payload (the Writer's facts arrive this way)."""
        return {name: self._wrap(spec) for name, spec in tools.items()}

    def _wrap(self, spec: ToolSpec) -> ToolSpec:
        inner = spec.fn

        @functools.wraps(inner)
        def screened(*args: Any, **kwargs: Any) -> Any:
            if self.redactor is not None:
                kwargs = {k: self.redactor.restore(v) if isinstance(v, str) else v for k, v in kwargs.items()}
            result = inner(*args, **kwargs)

            def screen_text(text: str, path: tuple[Any, ...]) -> str:
                if path and path[-1] == "text":
                    self.inputs.append(text)
                    self._scan(text, f"{spec.name} result {path[0] if len(path) > 1 else ''}".strip())
                return self._outgoing(text)

            return _map_strings(result, screen_text)

        return ToolSpec(spec.name, spec.description, spec.parameters, screened, spec.record)

    # -- output ---------------------------------------------------------------------------------

    def restore(self, output: Output) -> Output:
        """``output`` with this call's placeholders put back (the same object when there are none)."""
        if self.redactor is None or not self.redactor.active:
            return output
        data = output.model_dump(mode="json")
        restored = _map_strings(data, lambda text, _path: self.redactor.restore(text) if self.redactor else text)
        return output if restored == data else type(output).model_validate(restored)

    def check_output(self, output: Output) -> Output:
        """The output to use: placeholders restored, checked; raises ``PolicyBlockedError`` if severe."""
        delivered = self.restore(output)
        texts: list[tuple[str, str]] = []

        def collect(text: str, path: tuple[Any, ...]) -> str:
            texts.append((text, _where(path)))
            return text

        _map_strings(delivered.model_dump(mode="json"), collect)
        found: list[Finding] = []
        source: _Source | None = None
        blocking_links = self.agent in BLOCKING_CITATION_AGENTS
        for text, where in texts:
            for rule, start, end in rules.harmful(text):
                found.append(Finding(rule, "severe", "blocked", "output", where, _HARM[rule], text[start:end]))
            pii = list(rules.find_pii(text))
            links = rules.urls(text) if ("http" in text or "www." in text) else []
            cites = rules.citation_keys(text) if ("(" in text or "[" in text) else set()
            if not (pii or links or cites):
                continue
            source = source or _Source(self.inputs)
            for rule, start, end in pii:
                if rules.pii_key(rule, text[start:end]) not in source.pii:
                    kind = "e-mail address" if rule == rules.PII_EMAIL else "phone number"
                    found.append(
                        Finding(
                            rules.OUTPUT_PII,
                            "severe",
                            "blocked",
                            "output",
                            where,
                            f"{kind} that is in none of the call's input",
                            text[start:end],
                        )
                    )
            for url in links:
                if url.lower() not in source.lower:
                    found.append(
                        Finding(
                            rules.OUTPUT_LINK,
                            "severe" if blocking_links else "medium",
                            "blocked" if blocking_links else "flagged",
                            "output",
                            where,
                            "link to a source that is in none of the call's input",
                            url,
                        )
                    )
            for key in sorted(cites - source.citations):
                found.append(
                    Finding(
                        rules.OUTPUT_CITATION,
                        "severe" if blocking_links else "medium",
                        "blocked" if blocking_links else "flagged",
                        "output",
                        where,
                        f"citation ({'numbered' if key.startswith('[') else 'author-year'}) of a source that is in "
                        "none of the manuscript's facts given to the call",
                        key,
                    )
                )
        self.findings.extend(found)
        severe = [f for f in found if f.severity == "severe"]
        if severe:
            named = tuple(dict.fromkeys(f.rule for f in severe))
            raise PolicyBlockedError(
                f"The {self.agent} answer was withheld: it broke {len(named)} severe policy rule"
                f"{'s' if len(named) > 1 else ''} ({', '.join(named)}; {severe[0].detail} in {severe[0].location}). "
                "Nothing of it was saved. Try again (a model may answer differently), pick another model or prompt "
                "version on the Routing page, or remove the source that carries this text.",
                rules=named,
            )
        return delivered

    # -- recording ------------------------------------------------------------------------------

    def record(self, connection: Connection, ctx: CallContext) -> None:
        """Write the findings not yet recorded (rows and audit entries) on ``connection``."""
        if not self.findings:
            return
        findings, self.findings = self.findings, []
        _write_findings(connection, ctx, self.agent, findings)


def record_invisible_text(connection: Connection, ctx: CallContext, hidden: Sequence[HiddenText]) -> None:
    """Record what ``core.pdf`` left out of a source because no reader can see it, one finding per
    page, as the Librarian's input (the agent the text was aimed at); the stored hash is the hidden
    text's, so a reviewer can match it to the PDF."""
    findings = [
        Finding(
            rules.INVISIBLE_TEXT,
            _INPUT_SEVERITY[rules.INVISIBLE_TEXT],
            "flagged",
            "input",
            f"source (page {h.page})",
            f"{h.chars} characters a reader cannot see "
            f"({', '.join(rules.INVISIBLE_KINDS.get(k, k) for k in sorted(h.kinds))}) on page {h.page}, "
            "left out of the text",
            "",
            h.sha256,
        )
        for h in hidden
    ]
    if findings:
        _write_findings(connection, ctx, "librarian", findings)


def _write_findings(connection: Connection, ctx: CallContext, agent: str, findings: list[Finding]) -> None:
    extra = len(findings) - MAX_ROWS_PER_CALL
    if extra > 0:
        last = findings[MAX_ROWS_PER_CALL - 1]
        findings = [
            *findings[: MAX_ROWS_PER_CALL - 1],
            replace(last, detail=f"{last.detail} (and {extra} more findings in this call)"),
        ]
    now = utcnow()
    rows = [
        {
            "tenant_id": ctx.tenant_id,
            "trace_id": ctx.trace_id,
            "paragraph_id": ctx.paragraph_id,
            "agent": agent,
            "direction": f.direction,
            "rule": f.rule,
            "severity": f.severity,
            "action": f.action,
            "location": f.location[:200],
            "detail": f.detail,
            "excerpt_sha256": f.digest or hashlib.sha256(f.excerpt.encode("utf-8", "surrogatepass")).hexdigest(),
            "created_at": now,
        }
        for f in findings
    ]
    connection.execute(_V.insert(), rows)
    for f in findings:
        audit.record(
            connection,
            audit.POLICY_VIOLATION,
            actor=None,
            tenant_id=ctx.tenant_id,
            subject=ctx.trace_id,
            details={"rule": f.rule, "severity": f.severity, "action": f.action, "agent": agent},
        )


_HARM = {
    rules.HARMFUL_WEAPONS: "instructions for weapons or explosives",
    rules.HARMFUL_SELF_HARM: "self-harm instructions or encouragement",
    rules.HARMFUL_HATE: "hateful content against a group",
}


def _where(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path) or "output"


class _Source:
    """The call's input, indexed once for the output checks."""

    def __init__(self, inputs: list[str]) -> None:
        text = "\n".join(inputs)
        self.lower = text.lower()
        self.pii = rules.pii_keys(text)
        self.citations = rules.citation_keys(text)


def screen_input(
    agent: str, payload: BaseModel, render: Mapping[str, object], *, redact: bool, provider: str
) -> Screen:
    """Scan the payload's source text, and clean (and redact) every string of payload and render."""
    screen = Screen(agent, provider, payload, render, Redactor() if redact else None)
    data = payload.model_dump(mode="json")
    page = data.get("page")
    changed = False

    def visit(text: str, path: tuple[Any, ...]) -> str:
        nonlocal changed
        screen.inputs.append(text)
        if path and path[0] in SOURCE_FIELDS:
            screen._scan(text, _location(agent, path, data, page))
        sent = screen._outgoing(text)
        changed = changed or sent is not text
        return sent

    sent_data = _map_strings(data, visit)
    if changed:
        screen.payload = type(payload).model_validate(sent_data)
    screen.render = {k: screen._outgoing(v) if isinstance(v, str) else v for k, v in render.items()}
    if screen.redactor is not None and screen.redactor.counts:
        where = "sent to " + provider + (" (leaves the machine)" if leaves_machine(provider) else " (stays local)")
        for rule, count in screen.redactor.counts.items():
            kind = "e-mail addresses" if rule == rules.PII_EMAIL else "phone numbers"
            screen.findings.append(
                Finding(
                    rule,
                    "low",
                    "redacted",
                    "input",
                    "payload",
                    f"{count} {kind} replaced by placeholders; {where}",
                    rule,
                )
            )
    return screen


def _location(agent: str, path: tuple[Any, ...], data: dict[str, Any], page: object) -> str:
    if path[0] == "facts" and len(path) > 1:
        fact = data["facts"][path[1]]
        return f"fact {fact.get('id', path[1])}"
    if path[0] == "chunk_text":
        return f"chunk (page {page})"
    return str(path[0])


def tenant_redacts(connection: Connection, *, tenant_id: int) -> bool:
    """Whether the tenant asked for PII to be redacted before text leaves the machine."""
    return bool(connection.execute(select(_T.c.redact_pii).where(_T.c.id == tenant_id)).scalar())


# -- facts (core.facts) ---------------------------------------------------------------------------


def locate_in_source(
    chunk_text: str, quote: str, locate: Callable[[str, str], tuple[int, str] | None]
) -> tuple[int, str] | None:
    """Where a quote taken from the cleaned chunk stands in the stored chunk, and the text there.

    The Librarian read the chunk as the gateway sent it: hidden characters stripped, role markers
    neutralised. ``locate`` finds the quote in that view; the span is then mapped back.
    """
    if not rules.needs_cleaning(chunk_text):
        return None
    cleaned, offsets = rules.clean_with_offsets(chunk_text)
    found = locate(cleaned, quote)
    if found is None:
        return None
    start, span = found
    begin, end = offsets[start], offsets[start + len(span) - 1] + 1
    return begin, chunk_text[begin:end]


def fact_rejection_reason(spans: list[rules.Span], start: int, end: int, fact_text: str) -> str | None:
    """Why a fact must not be kept under the input policy, or None.

    ``spans`` are ``instruction_spans`` of its chunk: a quote overlapping one is instruction-like
    text, and so is a fact text that carries one.
    """
    for span in spans:
        if span.start < end and start < span.end:
            return f"policy: the quote contains {span.label} ({span.rule}); the source keeps it as data, not as a fact"
    for span in rules.instruction_spans(fact_text):
        return f"policy: the fact text contains {span.label} ({span.rule}); not kept as a fact"
    return None


instruction_spans = rules.instruction_spans
