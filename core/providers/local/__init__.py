"""The offline provider: a real, deterministic implementation of each agent's contract.

It reads the structured input (not the rendered prompt) and computes its answer; it costs
nothing and needs no network. Token counts are tiktoken estimates of what the rendered
prompt and the answer would cost a remote model.

``WORKBENCH_LOCAL_LATENCY_MS`` makes every call sleep that long first, so benchmarks can stand
it in for a remote model (the work becomes I/O-bound); the answer stays the same.

Each agent applies the parameters its prompt version declares (``ProviderRequest.params``: the
front matter beyond the keys the gateway reads), so two versions of an agent differ offline too;
a version that declares none behaves exactly as before. The parameters are listed in
``prompts/README.md``.
"""

from __future__ import annotations

import json
import time

from core.agents.contracts import LibrarianInput, RewriterInput, VerifierInput, WriterInput
from core.errors import ProviderError
from core.providers.base import ProviderRequest, ProviderResult, ToolCall
from core.providers.local import librarian, rewriter, verifier, writer
from core.settings import get_settings
from core.tokens import count_tokens


class LocalProvider:
    name = "local"

    def default_model(self, agent: str, profile: str) -> str:
        return f"local-{agent}-1"

    def complete(self, request: ProviderRequest) -> ProviderResult:
        latency_ms = get_settings().local_latency_ms
        if latency_ms > 0:
            time.sleep(latency_ms / 1000)
        calls: list[ToolCall] = []
        payload = request.payload
        if isinstance(payload, LibrarianInput):
            output = librarian.extract(payload, request.params).model_dump()
        elif isinstance(payload, WriterInput):
            output = writer.write(payload, request.tools, calls, request.params).model_dump()
        elif isinstance(payload, VerifierInput):
            output = verifier.verify(payload, request.params).model_dump()
        elif isinstance(payload, RewriterInput):
            output = rewriter.rewrite(payload).model_dump()
        else:
            raise ProviderError(f"The local provider has no implementation for {type(payload).__name__}.")
        tool_text = "".join(json.dumps({"call": c.name, "args": c.arguments}) for c in calls)
        return ProviderResult(
            output=output,
            input_tokens=count_tokens(request.prompt + tool_text),
            output_tokens=count_tokens(json.dumps(output)),
            tokens_estimated=True,
            tool_calls=calls,
        )
