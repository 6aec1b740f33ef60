"""What the gateway adds to a model call, on this machine.

    .venv/bin/python bench/gateway_overhead.py [N]       (or: make bench)

Starts the local OpenAI-compatible server the tests use, then makes N Verifier calls in pairs:
one straight through the official SDK (the same request the provider sends, the answer parsed),
one through ``gateway.run_agent`` with everything on: kill switch and breaker check, prompt
rendering, input normalisation and hash, cache lookup and store, tiktoken count, paragraph
budget reservation and settlement, contract validation, the usage event with its cost, breaker
bookkeeping. Every input is distinct, so no call is a cache hit. Pairs alternate so drift in the
server hits both sides alike.

Prints P50/P95/P99 of the per-pair overhead (gateway minus SDK) in ms and the ratio of the medians.
Target with SQLite: P50 overhead under 2 ms, P99 under 10 ms. Prints figures; asserts nothing.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WARMUP = 30
FACT = "Biochar raised maize yield by 12% in sandy soils."


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main(n: int = 500) -> None:
    workdir = tempfile.mkdtemp(prefix="workbench-bench-")
    from tests.fakellm import start_fake_llm

    server = start_fake_llm()
    os.environ.update(
        {
            "WORKBENCH_DATA_DIR": workdir,
            "WORKBENCH_PROVIDER": "openai",
            "OPENAI_BASE_URL": server.openai_base_url,
            "OPENAI_API_KEY": "sk-bench",
        }
    )
    os.environ.pop("DATABASE_URL", None)

    import openai

    from core import db, gateway, prompts
    from core.agents.contracts import CitedFact, VerifierInput, VerifierOutput
    from core.settings import get_settings
    from core.tenancy import bootstrap

    settings = get_settings()
    engine = db.get_engine()
    db.migrate(engine)
    with db.session_scope(engine) as session:
        identity = bootstrap(session)

    client = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-bench", max_retries=0)
    prompt = prompts.load("verifier")
    schema = VerifierOutput.model_json_schema()

    def render(sentence: str) -> dict[str, object]:
        return {"sentence": sentence, "cited": "F1", "facts": f"F1: {FACT}"}

    def direct(sentence: str) -> float:
        started = time.perf_counter()
        response = client.chat.completions.create(
            model=settings.openai_model,
            messages=[{"role": "user", "content": prompt.render(**render(sentence))}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "verifier_output", "schema": schema, "strict": False},
            },
            temperature=prompt.temperature,
            max_tokens=prompt.max_tokens,
            timeout=settings.provider_timeout_s,
        )
        VerifierOutput.model_validate(json.loads(response.choices[0].message.content or "{}"))
        return (time.perf_counter() - started) * 1000

    def through_gateway(ctx: gateway.CallContext, sentence: str) -> float:
        started = time.perf_counter()
        gateway.run_agent(
            "verifier",
            VerifierInput(sentence=sentence, facts=[CitedFact(id="F1", text=FACT)], cited=["F1"]),
            VerifierOutput,
            ctx=ctx,
            render=render(sentence),
        )
        return (time.perf_counter() - started) * 1000

    direct_ms: list[float] = []
    gateway_ms: list[float] = []
    with db.session_scope(engine) as session:
        ctx = gateway.CallContext(session=session, tenant_id=identity.tenant_id, trace_id="bench-gateway")
        os.environ["BUDGET_PARAGRAPH_TOKENS"] = str(10**9)
        get_settings.cache_clear()
        gateway.open_paragraph_budget(ctx, settings=get_settings())
        for number in range(WARMUP + n):
            sentence = f"{FACT} Case {number}."
            d = direct(sentence)
            g = through_gateway(ctx, sentence)
            if number >= WARMUP:
                direct_ms.append(d)
                gateway_ms.append(g)
    server.stop()

    overhead = [g - d for g, d in zip(gateway_ms, direct_ms, strict=True)]
    print(f"gateway overhead, {n} paired Verifier calls, SQLite, local OpenAI-compatible server")
    print(f"  {'':22} {'P50':>8} {'P95':>8} {'P99':>8}   (ms)")
    for label, values in (
        ("SDK straight", direct_ms),
        ("through the gateway", gateway_ms),
        ("overhead per call", overhead),
    ):
        p50, p95, p99 = (percentile(values, share) for share in (0.5, 0.95, 0.99))
        print(f"  {label:22} {p50:8.2f} {p95:8.2f} {p99:8.2f}")
    print(f"  ratio of medians (gateway / SDK): {statistics.median(gateway_ms) / statistics.median(direct_ms):.2f}")
    print("  target: overhead P50 < 2 ms, P99 < 10 ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
