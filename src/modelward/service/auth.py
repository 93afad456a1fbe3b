"""The bearer token that write endpoints need; reads are public by design (see docs/service.md).

FastAPI's `HTTPBearer` puts the scheme into the OpenAPI document; the check itself is
ours so that the comparison is constant-time and every failure is the same 401.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="The token given to `modelward serve` (--token-file or MODELWARD_SERVE_TOKEN).",
)


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> None:
    """Dependency of every write endpoint: 401 unless `Authorization: Bearer <token>` matches."""
    expected: str = request.app.state.settings.token
    given = credentials.credentials if credentials is not None else ""
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="a valid bearer token is required: Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
