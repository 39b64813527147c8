"""API tokens with read/write scopes (services: create, authenticate)."""
from __future__ import annotations

import hashlib
import secrets

from django.utils import timezone

from timeseries.models import ApiToken


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def token_create(*, user, scope: str = ApiToken.Scope.READ, name: str = "") -> tuple[ApiToken, str]:
    """Create a token; returns it and the plain key, which is shown once and never stored."""
    if scope not in ApiToken.Scope.values:
        raise ValueError(f"scope={scope!r}: expected one of {', '.join(ApiToken.Scope.values)}")
    key = "tsm_" + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, scope=scope, name=name, digest=_digest(key), prefix=key[:8])
    return token, key


def token_authenticate(*, key: str) -> ApiToken | None:
    token = ApiToken.objects.select_related("user").filter(digest=_digest(key), revoked=False).first()
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def token_allows(token: ApiToken, scope: str) -> bool:
    return scope == ApiToken.Scope.READ or token.scope == ApiToken.Scope.WRITE
