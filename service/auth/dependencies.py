"""The ``Authenticated`` dependency: a bearer API key resolved to its tenant."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.auth.keys import hash_key, well_formed
from service.config import get_settings
from service.deps import session_dependency
from service.errors import Forbidden, Unauthorized
from service.models import ApiKey


@dataclass(frozen=True)
class AuthSubject:
    tenant_id: uuid.UUID
    key_id: uuid.UUID
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"this API key lacks the scope {scope!r}")


def bearer_token(request: Request) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, or None."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def subject_for_key(session: Session, token: str | None) -> AuthSubject:
    """The tenant and scopes of an API key; 401 when it is missing, unknown or revoked."""
    if not token:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    # hash even a malformed key so a wrong key costs the same time as a right one
    digest = hash_key(token, get_settings().SECRET_KEY)
    key = session.scalar(
        select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
    )
    if key is None or not well_formed(token):
        raise Unauthorized("invalid or revoked API key")
    return AuthSubject(key.tenant_id, key.id, frozenset(key.scopes.split()))


def authenticate(request: Request, session: Session = session_dependency) -> AuthSubject:
    return subject_for_key(session, bearer_token(request))


Authenticated = Annotated[AuthSubject, Depends(authenticate)]
