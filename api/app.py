"""The FastAPI application: ``uvicorn api.app:app`` (``make api``).

Every request gets a request id (``X-Request-ID``: the caller's, when it sends a sane one, else a new
one); a request that queues work uses it as the trace id, so the API's log line, the job and the
trajectory share one id.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request, Response

from api import errors, routes_admin, routes_ops
from api.summary_cache import SingleFlightCache
from core import environments
from core.settings import get_settings

log = logging.getLogger("api")
_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
API_VERSION = "1.0.0"


def new_request_id(sent: str | None) -> str:
    """The caller's id when it is a sane one (so it can tie its own logs), else a new trace-style id."""
    return sent if sent and _SANE_ID.fullmatch(sent) else uuid.uuid4().hex


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    # Raising here makes uvicorn exit non-zero before it serves a request (staging and production only).
    environments.ensure_startable(component="ops API")
    yield


def create_app() -> FastAPI:
    app = FastAPI(
        lifespan=_lifespan,
        title="OpusBlocks Workbench ops API",
        version=API_VERSION,
        description="Health, costs, routing, trajectories, the kill switch, the audit log, paragraph drafting "
        "and the search_corpus tool, behind bearer tokens (one per user, from the API tokens page). The tenant "
        "always comes from the token: a `tenant_id` naming another tenant, as a query parameter or in a JSON body, "
        "is refused (403).",
    )
    errors.install(app)
    app.state.summary_cache = SingleFlightCache(get_settings().api_summary_ttl_s)

    @app.middleware("http")
    async def request_ids(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        request.state.request_id = new_request_id(request.headers.get("x-request-id"))
        started = time.perf_counter()
        response = await call_next(request)
        response.headers["X-Request-ID"] = request.state.request_id
        log.info(
            "%s %s %d %.1f ms",
            request.method,
            request.url.path,
            response.status_code,
            (time.perf_counter() - started) * 1000,
            extra={"trace_id": request.state.request_id},
        )
        return response

    for router in _routers():
        app.include_router(router)
    return app


def _routers() -> list[APIRouter]:
    """Every router of the API (each module owns one area)."""
    return [routes_admin.router, routes_ops.router]


app = create_app()
