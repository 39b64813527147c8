"""Refuse, before any view runs, requests whose framing Django or DRF would trip on (issue #14).

Django reads ``Content-Length`` with ``int()`` when a view touches the body (``abc`` is a 500), parses
the query string lazily inside whatever first reads it (DRF then fails on the way out), and trusts
the charset a client names. Each malformed part is answered here with a 4xx naming the header or
parameter, in JSON under ``/api/`` and as plain text elsewhere:

* ``Content-Length`` not a plain decimal byte count (``abc``, ``-1``, ``1e3``, 20+ digits): 400.
* ``Transfer-Encoding`` other than ``chunked`` (the WSGI server has already de-chunked the body; any
  other coding would reach the view still encoded): 400.
* ``Content-Type`` that is not ASCII, or names a charset Python does not know (or, for a form, not
  UTF-8: Django would refuse it while checking the CSRF token, and again while rendering that refusal): 415.
* more than ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` query parameters: 400.
"""

from __future__ import annotations

import codecs
import re

from django.conf import settings
from django.core.exceptions import TooManyFieldsSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.http import parse_header_parameters

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_LENGTH = re.compile(r"[0-9]{1,19}")  # at most 19 digits: any larger count is far past every body limit


def _refusal(request: HttpRequest, status: int, message: str) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=status)
    return HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")


def _shown(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def request_problem(request: HttpRequest) -> tuple[int, str] | None:
    """(status, message) for a request whose framing cannot be trusted, else None."""
    meta = request.META
    length = meta.get("CONTENT_LENGTH")
    if length not in (None, "") and not _LENGTH.fullmatch(length):
        return 400, f"Content-Length {_shown(length)} is not a number of bytes"
    coding = meta.get("HTTP_TRANSFER_ENCODING")
    if coding is not None and [c.strip().lower() for c in coding.split(",")] != ["chunked"]:
        return 400, f"Transfer-Encoding {_shown(coding)} is not supported: send the body as is, or chunked"
    content_type = meta.get("CONTENT_TYPE")
    if content_type:
        if not content_type.isascii() or not content_type.isprintable():
            return 415, f"Content-Type {_shown(content_type)} is not a media type"
        media_type, params = parse_header_parameters(content_type)
        charset = params.get("charset")
        if charset is not None:
            try:
                name = codecs.lookup(charset).name
            except LookupError:
                return 415, f"Content-Type charset {_shown(charset)} is not a known character encoding (use utf-8)"
            if media_type in FORM_TYPES and name != "utf-8":
                return 415, f"Content-Type charset {_shown(charset)}: {media_type} bodies are read as utf-8"
    try:
        request.GET  # noqa: B018 - parse the query string now, where its refusal can be answered
    except TooManyFieldsSent:
        return 400, f"the query string has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS:,} parameters"
    return None


class RequestGuardMiddleware:
    """First in MIDDLEWARE: answers a malformed request with a 4xx before anything reads it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        problem = request_problem(request)
        if problem is not None:
            return _refusal(request, *problem)
        return self.get_response(request)
