"""A fake OpenAI and Anthropic server on 127.0.0.1 for tests: real HTTP, both wire formats, scripted faults.

    fake = start_fake_llm()
    fake.push(Fault.status(429, retry_after="2"), Fault.timeout(5))   # consumed in order, one per request
    ... OpenAI(base_url=fake.openai_base_url) / Anthropic(base_url=fake.anthropic_base_url) ...
    fake.requests          # every request: path, headers, parsed JSON body
    fake.reset(); fake.stop()

With the script empty, a default responder answers like a plausible model from what the request
asks for (which agent's contract, whether tool results came back), so a whole pipeline can run
against it. Usage is a deterministic rough count (characters / 4).
"""

from __future__ import annotations

import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from typing import Any

INVALID_JSON_TEXT = "Sure! Here is the answer you asked for, in plain words rather than JSON."


@dataclass(frozen=True)
class Fault:
    """One scripted answer. Build it with the class methods; the server renders it per wire format."""

    kind: str
    seconds: float = 0.0
    http_status: int = 200
    retry_after: str | None = None
    retry_after_ms: str | None = None
    output: dict[str, Any] | None = None
    tool: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    content_type: str = "application/json"

    @classmethod
    def timeout(cls, seconds: float) -> Fault:
        """Wait ``seconds`` (longer than the client's timeout), then answer as the default responder would."""
        return cls("timeout", seconds=seconds)

    @classmethod
    def status(cls, status: int, *, retry_after: str | None = None, retry_after_ms: str | None = None) -> Fault:
        """An HTTP error in the provider's own error shape (429 carries the Retry-After headers given)."""
        return cls("status", http_status=status, retry_after=retry_after, retry_after_ms=retry_after_ms)

    @classmethod
    def invalid_json_content(cls) -> Fault:
        """A well-formed API response, with usage, whose message is prose instead of JSON."""
        return cls("invalid_json_content")

    @classmethod
    def broken_body(cls, content_type: str = "application/json") -> Fault:
        """HTTP 200 with a body that is not JSON at all (a proxy's error page, a truncated write)."""
        return cls("broken_body", content_type=content_type)

    @classmethod
    def reply(cls, output: dict[str, Any]) -> Fault:
        """A valid answer whose structured output is ``output``."""
        return cls("reply", output=output)

    @classmethod
    def contract_violation(cls) -> Fault:
        """Valid JSON that breaks every agent's contract."""
        return cls("reply", output={"verdict": "maybe"})

    @classmethod
    def tool_call(cls, tool: str, arguments: dict[str, Any]) -> Fault:
        """The model asks for a tool (any name, even one that does not exist)."""
        return cls("tool_call", tool=tool, arguments=arguments)


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any  # parsed JSON, or None when the body was not JSON


class FakeLLM:
    """The running server; ``start_fake_llm()`` builds one."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.cached_tokens = 0  # prompt tokens each answer reports as served from the prompt cache
        self.report_usage = True  # False: answers carry no usage, like some OpenAI-compatible servers
        self.api_key: str | None = None  # the only key accepted (401 otherwise); None: any key
        self._script: list[Fault] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ids = count(1)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="fakellm", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def openai_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def push(self, *faults: Fault) -> None:
        with self._lock:
            self._script.extend(faults)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.cached_tokens = 0
            self.report_usage = True
            self.api_key = None

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a timeout fault
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeLLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- answering ---------------------------------------------------------------------------------

    def _handle(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, str], bytes]:
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = None
        with self._lock:
            self.requests.append(RecordedRequest(path, headers, body))
            fault = self._script.pop(0) if self._script else None
        wire = "openai" if path.endswith("/chat/completions") else "anthropic" if path.endswith("/messages") else ""
        if not wire or not isinstance(body, dict):
            return _json(404, {"error": {"message": f"no route {path}", "type": "invalid_request_error"}})
        if not self._key_accepted(headers):
            return self._error(wire, Fault.status(401), headers)
        if fault is not None and fault.kind == "timeout":
            if self._stopping.wait(fault.seconds):
                return _json(503, {"error": {"message": "shutting down"}})
            fault = None
        if fault is not None and fault.kind == "status":
            return self._error(wire, fault, headers)
        if fault is not None and fault.kind == "broken_body":
            return 200, {"content-type": fault.content_type}, b"<html><body>502 Bad Gateway</body>"
        request = _Request.parse(wire, body)
        answer = _default_answer(request) if fault is None else _scripted(fault, request)
        rendered = self._render(wire, request, answer)
        if not self.report_usage:
            del rendered["usage"]
        return _json(200, rendered)

    def _key_accepted(self, headers: dict[str, str]) -> bool:
        presented = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        return self.api_key is None or presented == self.api_key

    def _models(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """``GET /v1/models`` in the wire format the client speaks (Anthropic's SDK sends ``anthropic-version``)."""
        with self._lock:
            self.requests.append(RecordedRequest(path, headers, None))
        wire = "anthropic" if "anthropic-version" in headers else "openai"
        if path.split("?")[0] != "/v1/models":
            return _json(404, {"error": {"message": f"no route {path}", "type": "invalid_request_error"}})
        if not self._key_accepted(headers):
            return self._error(wire, Fault.status(401), headers)
        if wire == "openai":
            return _json(
                200,
                {"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}]},
            )
        model = {"type": "model", "id": "fake-model", "display_name": "Fake", "created_at": "2025-01-01T00:00:00Z"}
        return _json(200, {"data": [model], "has_more": False, "first_id": "fake-model", "last_id": "fake-model"})

    def _render(self, wire: str, request: _Request, answer: _Answer) -> dict[str, Any]:
        prompt_tokens = max(1, len(json.dumps(request.body.get("messages", []))) // 4)
        cached = min(self.cached_tokens, prompt_tokens)
        n = next(self._ids)
        model = str(request.body.get("model", "fake-model"))
        if wire == "openai":
            message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
            if answer.tool is not None:
                arguments = json.dumps(answer.arguments)
                message["tool_calls"] = [
                    {"id": f"call_{n}", "type": "function", "function": {"name": answer.tool, "arguments": arguments}}
                ]
                completion, finish = len(arguments) // 4 + 1, "tool_calls"
            else:
                message["content"] = answer.text
                completion, finish = len(answer.text) // 4 + 1, "stop"
            return {
                "id": f"chatcmpl-{n}",
                "object": "chat.completion",
                "created": 1_700_000_000 + n,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion,
                    "total_tokens": prompt_tokens + completion,
                    "prompt_tokens_details": {"cached_tokens": cached},
                },
            }
        if answer.tool is not None:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": f"toolu_{n}",
                "name": answer.tool,
                "input": answer.arguments,
            }
            completion, stop = len(json.dumps(answer.arguments)) // 4 + 1, "tool_use"
        else:
            block = {"type": "text", "text": answer.text}
            completion, stop = len(answer.text) // 4 + 1, "end_turn"
        return {
            "id": f"msg_{n}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [block],
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {
                "input_tokens": prompt_tokens - cached,  # Anthropic counts cached tokens apart
                "output_tokens": completion,
                "cache_read_input_tokens": cached,
                "cache_creation_input_tokens": 0,
            },
        }

    def _error(self, wire: str, fault: Fault, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        kind, message = _ERRORS.get(fault.http_status, ("api_error", "Something went wrong."))
        if fault.http_status == 401:
            # Like OpenAI, quote the key that was presented: the provider must not repeat it.
            key = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
            message = f"Incorrect API key provided: {key}."
        extra = {"retry-after": fault.retry_after, "retry-after-ms": fault.retry_after_ms}
        status, reply_headers, body = _json(
            fault.http_status,
            {"error": {"message": message, "type": kind, "param": None, "code": None}}
            if wire == "openai"
            else {"type": "error", "error": {"type": kind, "message": message}},
        )
        reply_headers.update({k: v for k, v in extra.items() if v is not None})
        return status, reply_headers, body


_ERRORS = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "Invalid API key."),
    403: ("permission_error", "Your key may not use this model."),
    404: ("not_found_error", "The model does not exist."),
    429: ("rate_limit_error", "Rate limit reached; please try again later."),
    500: ("api_error", "Internal server error."),
    503: ("api_error", "The service is temporarily unavailable."),
    529: ("overloaded_error", "Overloaded."),
}


def start_fake_llm() -> FakeLLM:
    return FakeLLM()


# -- what a request asks for, and the default responder ----------------------------------------------


@dataclass(frozen=True)
class _Request:
    wire: str  # "openai" or "anthropic"
    body: dict[str, Any]
    agent: str  # "" when no contract is named
    prompt: str  # the text of the first user message
    tools: frozenset[str]  # declared tools, the submit tool excluded
    tool_results: list[str]  # texts of every tool result sent back so far

    @classmethod
    def parse(cls, wire: str, body: dict[str, Any]) -> _Request:
        messages = body.get("messages") or []
        first = messages[0].get("content", "") if messages else ""
        prompt = first if isinstance(first, str) else "".join(b.get("text", "") for b in first if isinstance(b, dict))
        if wire == "openai":
            name = (body.get("response_format") or {}).get("json_schema", {}).get("name", "")
            agent = name.removesuffix("_output")
            tools = frozenset(t["function"]["name"] for t in body.get("tools") or [])
            results = [m.get("content", "") for m in messages if m.get("role") == "tool"]
        else:
            names = [t.get("name", "") for t in body.get("tools") or []]
            agent = next((n.removeprefix("submit_") for n in names if n.startswith("submit_")), "")
            tools = frozenset(n for n in names if not n.startswith("submit_"))
            results = [
                str(b.get("content", ""))
                for m in messages
                if m.get("role") == "user" and isinstance(m.get("content"), list)
                for b in m["content"]
                if isinstance(b, dict) and b.get("type") == "tool_result"
            ]
        return cls(wire, body, agent, prompt, tools, results)


@dataclass(frozen=True)
class _Answer:
    """Either a tool call or a final answer (``text``, or ``output`` for the contract)."""

    tool: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    text: str = ""


def _final(request: _Request, output: dict[str, Any]) -> _Answer:
    # Anthropic answers through the submit tool; OpenAI in the message content.
    if request.wire == "anthropic" and request.agent:
        return _Answer(tool=f"submit_{request.agent}", arguments=output)
    return _Answer(text=json.dumps(output))


def _scripted(fault: Fault, request: _Request) -> _Answer:
    if fault.kind == "invalid_json_content":
        return _Answer(text=INVALID_JSON_TEXT)
    if fault.kind == "tool_call":
        return _Answer(tool=fault.tool, arguments=fault.arguments)
    return _final(request, fault.output or {})


def _between_brackets(prompt: str) -> str | None:
    match = re.search(r"<<<\s*(.*?)\s*>>>", prompt, re.DOTALL)
    return match.group(1) if match else None


def _default_answer(request: _Request) -> _Answer:
    prompt = request.prompt
    if request.agent == "writer":
        if "search_corpus" in request.tools and not request.tool_results:
            query = _between_brackets(prompt) or prompt
            return _Answer(tool="search_corpus", arguments={"query": query, "top_k": 5})
        try:
            found = json.loads(request.tool_results[-1]) if request.tool_results else []
        except json.JSONDecodeError:
            found = []
        hits = [h for h in found if isinstance(h, dict) and "id" in h and "text" in h][:2]
        return _final(request, {"sentences": [{"text": h["text"], "cites": [h["id"]]} for h in hits]})
    if request.agent == "verifier":
        return _final(request, {"verdict": "supported", "failure_mode": None, "reason": "The cited fact states it."})
    if request.agent == "rewriter":
        fact = re.search(r"^(F\d+): (.+)$", prompt, re.MULTILINE)
        text, cites = (fact.group(2), [fact.group(1)]) if fact else ("No fact to restate.", [])
        return _final(request, {"text": text, "cites": cites})
    if request.agent == "librarian":
        chunk = _between_brackets(prompt) or ""
        first = re.split(r"(?<=[.!?])\s+", chunk.strip(), maxsplit=1)[0] if chunk.strip() else ""
        page = re.search(r"First page of the chunk: (\d+)", prompt)
        facts = [{"text": first, "quote": first, "page": int(page.group(1)) if page else 1, "kind": "result"}]
        return _final(request, {"facts": facts if first else []})
    return _final(request, {})


# -- HTTP plumbing ------------------------------------------------------------------------------------


def _json(status: int, payload: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return status, {"content-type": "application/json"}, json.dumps(payload).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for a handler sleeping in a timeout fault
    fake: FakeLLM


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Without this, Nagle's algorithm and delayed ACKs stall each keep-alive exchange ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        self._reply(*self.server.fake._handle(self.path, headers, raw))

    def do_GET(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        self._reply(*self.server.fake._models(self.path, headers))

    def _reply(self, status: int, reply_headers: dict[str, str], body: bytes) -> None:
        try:
            self.send_response(status)
            for name, value in reply_headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout fault): nothing to answer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean
