"""Who may call the API, and how often.

* ``BearerTokenAuthentication``: ``Authorization: Bearer <key>`` (or ``Token <key>``), checked by
  ``tokens.token_authenticate``; ``request.auth`` is then the ``ApiToken``.
* Session authentication (DRF's) serves staff in the browser; staff count as read + write.
* ``ReadScope`` / ``WriteScope``: a token needs the scope (write implies read); anonymous callers are
  let in for reading only when ``TSM_API_ANONYMOUS_READ`` is true (default false).
* ``TokenRateThrottle``: ``TSM_API_RATE`` (default "600/min") per token (per user for sessions, per
  address for anonymous callers), counted in the default cache (Redis). If the cache is unreachable
  the request is let through with a warning: rate limiting must never take the API down.
"""

from __future__ import annotations

import logging

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions, throttling

from timeseries.models import ApiToken
from timeseries.tokens import token_allows, token_authenticate

logger = logging.getLogger(__name__)

KEYWORDS = (b"bearer", b"token")
MAX_KEY_LENGTH = 200


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <key>`` or ``Authorization: Token <key>``."""

    def authenticate(self, request):
        parts = authentication.get_authorization_header(request).split()
        if not parts or parts[0].lower() not in KEYWORDS:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header: expected 'Bearer <key>'.")
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token: keys are ASCII.") from None
        token = token_authenticate(key=key) if len(key) <= MAX_KEY_LENGTH else None
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid, revoked or unknown token.")
        return token.user, token

    def authenticate_header(self, request):
        # makes DRF answer 401 (not 403) to a request without credentials
        return 'Bearer realm="tsm"'


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = BearerTokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token: `manage.py create_token USERNAME --scope read`. "
            "Send `Authorization: Bearer <key>` (or `Token <key>`).",
        }


def _token(request) -> ApiToken | None:
    return request.auth if isinstance(request.auth, ApiToken) else None


class _Scope(permissions.BasePermission):
    scope: str = ApiToken.Scope.READ.value

    def has_permission(self, request, view) -> bool:
        token = _token(request)
        if token is not None:
            if token_allows(token, self.scope):
                return True
            self.message = f"This token has {token.scope!r} scope; this endpoint needs {self.scope!r}."
            return False
        user = request.user
        if user is not None and user.is_authenticated:
            if user.is_active and user.is_staff:
                return True
            self.message = "Session access is for staff accounts; use an API token (Authorization: Bearer <key>)."
            return False
        return self.scope == ApiToken.Scope.READ and bool(settings.TSM_API_ANONYMOUS_READ)


class ReadScope(_Scope):
    """A read (or write) token, a staff session, or anonymous when TSM_API_ANONYMOUS_READ is on."""

    scope: str = ApiToken.Scope.READ.value


class WriteScope(_Scope):
    """A write token or a staff session."""

    scope = ApiToken.Scope.WRITE.value


class TokenRateThrottle(throttling.SimpleRateThrottle):
    """``settings.TSM_API_RATE`` requests per token (per user / address without a token)."""

    scope = "tsm_api"

    def get_rate(self):
        return settings.TSM_API_RATE

    def get_cache_key(self, request, view):
        token = _token(request)
        if token is not None:
            ident = f"token:{token.pk}"
        elif request.user is not None and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"anon:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # the cache (Redis) is down or slow: do not fail the request
            logger.warning("rate limiting skipped, cache unavailable (%s)", exc)
            return True
