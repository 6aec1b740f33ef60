"""The one door every agent call goes through.

In order: render the pinned prompt, normalise the input and hash it, check the token budget
(counted with tiktoken *before* the call and reserved, so the paragraph cannot overspend),
call the provider, validate its JSON against the agent's contract, and record a usage event.
Nothing else in the product calls a provider. (Caching, retries, breakers, routing, policy
filters and real pricing join this order in the gateway issue.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from core import prompts
from core.errors import BudgetExceededError, ContractError, WorkbenchError
from core.models import LlmUsageEvent
from core.providers import ProviderRequest, ToolCall, get_provider
from core.providers.base import Tool
from core.settings import Settings, get_settings
from core.tokens import count_tokens

log = logging.getLogger(__name__)
Output = TypeVar("Output", bound=BaseModel)


@dataclass
class TokenBudget:
    """Tokens a paragraph (or any unit of work) may still spend, reserved before each call."""

    limit: int
    spent: int = 0

    def reserve(self, tokens: int, *, agent: str) -> None:
        if self.spent + tokens > self.limit:
            raise BudgetExceededError(
                f"The {agent} call needs about {tokens} tokens but only {self.limit - self.spent} of this "
                f"paragraph's {self.limit} remain; raise BUDGET_PARAGRAPH_TOKENS or shorten the brief."
            )
        self.spent += tokens


@dataclass
class CallContext:
    session: Session
    tenant_id: int
    trace_id: str
    paragraph_id: int | None = None
    job_id: str | None = None
    budget: TokenBudget | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    prompt_versions: dict[str, str] = field(default_factory=dict)


def stage_budget(agent: str, settings: Settings) -> int:
    return {
        "librarian": settings.budget_librarian_chunk_tokens,
        "writer": settings.budget_writer_tokens,
        "verifier": settings.budget_verifier_tokens,
        "rewriter": settings.budget_rewriter_tokens,
    }[agent]


def normalise(payload: BaseModel) -> str:
    """Stable JSON: sorted keys, no insignificant whitespace, whitespace runs inside strings folded."""

    def fold(value: object) -> object:
        if isinstance(value, str):
            return " ".join(value.split())
        if isinstance(value, list):
            return [fold(v) for v in value]
        if isinstance(value, dict):
            return {k: fold(v) for k, v in value.items()}
        return value

    return json.dumps(fold(payload.model_dump(mode="json")), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def input_hash(agent: str, version: str, model: str, payload: BaseModel) -> str:
    return hashlib.sha256(f"{agent}\n{version}\n{model}\n{normalise(payload)}".encode()).hexdigest()


def run_agent(
    agent: str,
    payload: BaseModel,
    output_type: type[Output],
    *,
    ctx: CallContext,
    render: Mapping[str, object],
    tools: Mapping[str, Tool] | None = None,
) -> Output:
    settings = get_settings()
    provider = get_provider(settings.provider)
    prompt = prompts.load(agent)
    model = provider.model_for(agent)
    rendered = prompt.render(**render)
    digest = input_hash(agent, prompt.version, model, payload)
    ctx.prompt_versions[agent] = prompt.version
    call = _Call(ctx, agent, provider.name, model, prompt.version, digest)

    estimate = count_tokens(rendered, model) + prompt.max_tokens
    if estimate > stage_budget(agent, settings):
        call.record(estimate, 0, True, 0.0, "BudgetExceeded")
        raise BudgetExceededError(
            f"The {agent} input needs about {estimate} tokens, over its stage budget of "
            f"{stage_budget(agent, settings)}; raise BUDGET_{agent.upper()}"
            f"{'_CHUNK' if agent == 'librarian' else ''}_TOKENS or split the input."
        )
    if ctx.budget is not None:
        ctx.budget.reserve(estimate, agent=agent)

    started = time.perf_counter()
    request = ProviderRequest(
        agent=agent,
        model=model,
        prompt=rendered,
        payload=payload,
        output_type=output_type,
        temperature=prompt.temperature,
        max_tokens=prompt.max_tokens,
        tools=tools or {},
    )
    try:
        result = provider.complete(request)
    except WorkbenchError as error:
        latency = (time.perf_counter() - started) * 1000
        call.record(estimate, 0, True, latency, type(error).__name__)
        raise
    latency = (time.perf_counter() - started) * 1000
    try:
        output = output_type.model_validate(result.output)
    except ValidationError as error:
        call.record(result.input_tokens, result.output_tokens, result.tokens_estimated, latency, "ContractError")
        raise ContractError(
            f"The {agent} answer broke its JSON contract ({error.error_count()} problems, first: "
            f"{error.errors()[0]['msg']}). Nothing was saved; try again or switch the provider."
        ) from error
    ctx.tool_calls.extend(result.tool_calls)
    call.record(result.input_tokens, result.output_tokens, result.tokens_estimated, latency, None)
    return output


@dataclass(frozen=True)
class _Call:
    """What every usage event of one agent call shares."""

    ctx: CallContext
    agent: str
    provider: str
    model: str
    prompt_version: str
    input_hash: str

    def record(
        self, input_tokens: int, output_tokens: int, estimated: bool, latency_ms: float, error_class: str | None
    ) -> None:
        ctx = self.ctx
        ctx.session.add(
            LlmUsageEvent(
                tenant_id=ctx.tenant_id,
                trace_id=ctx.trace_id,
                job_id=ctx.job_id,
                paragraph_id=ctx.paragraph_id,
                agent=self.agent,
                provider=self.provider,
                model=self.model,
                prompt_version=self.prompt_version,
                input_hash=self.input_hash,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                tokens_estimated=estimated,
                cost_usd=0,
                latency_ms=latency_ms,
                error_class=error_class,
                routing_tier="default",
                routing_reason=f"WORKBENCH_PROVIDER={self.provider}",
            )
        )
        if error_class:
            log.warning(
                "agent call failed", extra={"trace_id": ctx.trace_id, "agent": self.agent, "error": error_class}
            )
