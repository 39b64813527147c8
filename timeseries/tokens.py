"""API tokens with read/write scopes (services: create, authenticate)."""

from __future__ import annotations

import hashlib
import secrets
import time

from django.conf import settings
from django.utils import timezone

from timeseries.models import ApiToken
from timeseries.rules import feed_problem


def token_digest(key: str) -> str:
    """What is stored of a key: its SHA-256 (hex). The key itself is shown once, at creation."""
    return hashlib.sha256(key.encode()).hexdigest()


def token_create(*, user, scope: str = ApiToken.Scope.READ, name: str = "", feed: str = "") -> tuple[ApiToken, str]:
    """Create a token; returns it and the plain key, which is shown once and never stored.

    ``feed``: a write token bound to it sends rows only as that feed (the write API refuses another)."""
    if scope not in ApiToken.Scope.values:
        raise ValueError(f"scope={scope!r}: expected one of {', '.join(ApiToken.Scope.values)}")
    problem = feed_problem(feed)
    if problem:
        raise ValueError(f"feed: {problem}")
    if feed and scope != ApiToken.Scope.WRITE:
        raise ValueError(f"feed={feed!r}: only a write token can be bound to a feed (it binds what the token sends)")
    key = "tsm_" + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, scope=scope, name=name, feed=feed, digest=token_digest(key), prefix=key[:8]
    )
    return token, key


# Tokens recently found valid, per process: digest -> (valid until, token). A revocation or a
# deactivated user takes effect in other processes within TSM_TOKEN_CACHE_SECONDS; in this process
# at once (token_revoke). The lookup was ~45% of a cached API answer's CPU.
_recent: dict[str, tuple[float, ApiToken]] = {}
_RECENT_MAX = 10_000


def token_authenticate(*, key: str) -> ApiToken | None:
    digest = token_digest(key)
    ttl = settings.TSM_TOKEN_CACHE_SECONDS
    now = time.monotonic()
    hit = _recent.get(digest)
    if hit is not None and hit[0] > now:
        return hit[1]
    token = ApiToken.objects.select_related("user").filter(digest=digest, revoked=False).first()
    if token is None or not token.user.is_active:
        _recent.pop(digest, None)
        return None
    stamp = timezone.now()
    if token.last_used_at is None or (stamp - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=stamp)
    if ttl > 0:
        if len(_recent) >= _RECENT_MAX:
            _recent.clear()
        _recent[digest] = (now + ttl, token)
    return token


def token_revoke(*, token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk).update(revoked=True)
    _recent.pop(token.digest, None)


def token_allows(token: ApiToken, scope: str) -> bool:
    return scope == ApiToken.Scope.READ or token.scope == ApiToken.Scope.WRITE
