"""Bearer-token authentication and the per-token rate limit (``api.rate_limit``).

The tenant always comes from the token: a ``tenant_id`` naming any other tenant, whether a query
parameter or a member of a JSON body, is refused (403), never honoured; the token's own tenant id is
allowed (and changes nothing).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.database import engine
from api.rate_limit import limiter
from core import api_tokens, authz
from core.errors import PermissionDeniedError, SessionExpiredError
from core.tenancy import Identity

_bearer = HTTPBearer(auto_error=False, description="A token from the workbench's API tokens page.")


TENANT_PARAMETER = "tenant_id"


async def named_tenants(request: Request) -> tuple[str, ...]:
    """Every tenant the request names: its ``tenant_id`` query parameters and the ``tenant_id`` member of
    a JSON object body, spelt as the query spells them (``2`` and ``"2"`` are both ``2``; ``null`` is
    ``null``). Request models ignore members they do not declare, so without this a body could name
    another tenant and the request would go ahead as if it had not."""
    named = list(request.query_params.getlist(TENANT_PARAMETER))
    raw = await request.body()  # FastAPI has already read it for a route with a body: this is its cache
    if raw:
        try:
            document = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON: the route's own parsing refuses it, or ignores it
            document = None
        if isinstance(document, dict) and TENANT_PARAMETER in document:
            value = document[TENANT_PARAMETER]
            named.append(value if isinstance(value, str) else json.dumps(value))
    return tuple(named)


def current_identity(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    named: Annotated[tuple[str, ...], Depends(named_tenants)],
) -> Identity:
    """The identity the request acts as (raises 401 without a live token, 429 over its rate)."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise SessionExpiredError("Send a bearer token: Authorization: Bearer <token from the API tokens page>.")
    bearer = api_tokens.authenticate(engine(), credentials.credentials)
    wait = limiter.take(bearer.token_id, bearer.rate_per_minute)
    if wait is not None:
        raise HTTPException(
            status_code=429,
            detail=f"Over this token's rate of {bearer.rate_per_minute} requests per minute; retry in {wait:.1f} s.",
            headers={"Retry-After": str(max(1, round(wait)))},
        )
    if any(asked != str(bearer.identity.tenant_id) for asked in named):
        raise PermissionDeniedError(
            "The tenant comes from the token; this request names another tenant and is refused.",
            permission="tenant",
        )
    request.state.identity = bearer.identity
    return bearer.identity


def requires(permission: authz.Permission) -> Callable[..., Identity]:
    """A dependency: the identity, refused (403) unless its role grants ``permission``."""

    def check(identity: Annotated[Identity, Depends(current_identity)]) -> Identity:
        authz.require(identity, permission)
        return identity

    return check
