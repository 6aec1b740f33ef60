"""One error body for every failure: ``{"error": {"code", "message", "request_id"}}``.

``WorkbenchError`` subclasses map to a status by kind; their messages are already written for a
person to act on, so they are passed through. Anything else is a 500 with a generic message (the
details go to the log, with the request id, never to the client).
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core import errors

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    code: str
    message: str
    request_id: str


class ErrorBody(BaseModel):
    error: ErrorDetail


STATUS: tuple[tuple[type[errors.WorkbenchError], int], ...] = (
    (errors.AuthenticationError, 401),
    (errors.PermissionDeniedError, 403),
    (errors.NotFoundError, 404),
    (errors.GenerationPausedError, 409),
    (errors.ReleaseGateError, 409),
    (errors.JobError, 409),
    (errors.BudgetExceededError, 422),
    (errors.WorkbenchError, 422),
)
"""The status of each kind of refusal, first match wins (the base class last)."""

ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "the body could not be read: not UTF-8 JSON"),
        (401, "missing, unknown, revoked or expired bearer token"),
        (403, "the token's role may not do this, or the request names another tenant"),
        (404, "no such thing in this tenant"),
        (422, "the request is not valid"),
        (429, "over the token's rate limit; see Retry-After"),
        (503, "the database is not answering; see Retry-After"),
    )
}
"""Documented on every route, so the OpenAPI document describes the error bodies."""


def request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or "")


def body(code: str, message: str, request: Request) -> dict[str, object]:
    return ErrorBody(error=ErrorDetail(code=code, message=message, request_id=request_id(request))).model_dump()


def _code(error: Exception) -> str:
    """``PermissionDeniedError`` -> ``permission_denied``: the error's class, as a stable snake-case code."""
    name = type(error).__name__.removesuffix("Error") or "Error"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.WorkbenchError)
    async def workbench_error(request: Request, error: errors.WorkbenchError) -> JSONResponse:
        status = next(code for kind, code in STATUS if isinstance(error, kind))
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(body(_code(error), str(error), request), status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"{first.get('msg', 'invalid')} at {where}" if where else str(first.get("msg", "invalid"))
        return JSONResponse(body("invalid_request", message, request), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {
            401: "unauthenticated",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            429: "rate_limited",
        }
        return JSONResponse(
            body(code.get(error.status_code, "http_error"), str(error.detail), request),
            status_code=error.status_code,
            headers=getattr(error, "headers", None),
        )

    @app.exception_handler(OperationalError)
    async def database_away(request: Request, error: OperationalError) -> JSONResponse:
        log.warning("request %s: the database is not answering (%s)", request_id(request), type(error.orig).__name__)
        return JSONResponse(
            body(
                "database_unavailable",
                "The database is not answering; nothing was changed. Try again shortly.",
                request,
            ),
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("request %s failed", request_id(request))
        return JSONResponse(
            body("internal", "Something went wrong on our side; quote the request id to ops.", request),
            status_code=500,
        )
