"""The buffered write API: POST rows, get a durable 202, poll until they are queryable. Thin views."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.http import QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ParseError, PermissionDenied
from rest_framework.parsers import BaseParser
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from ingestion import buffer, tasks
from timeseries import rules
from timeseries.api.auth import TokenRateThrottle, WriteScope
from timeseries.datasets import DATASETS, UnknownDataset
from timeseries.models import ApiToken
from timeseries.timeparse import parse_interval

_JSON_KINDS = {
    "timestamp": {"type": "string", "format": "date-time"},
    "price": {"type": "number", "minimum": 0, "maximum": 1e9},
    "money": {"type": "number", "minimum": 0, "maximum": 1e15},
    "float": {"type": "number"},
    "int": {"type": "integer", "minimum": -(2**31) + 1, "maximum": 2**31 - 1},
    "bigint": {"type": "integer", "minimum": 0, "maximum": 2**53},
    "text": {"type": "string"},
    "bool": {"type": "boolean"},
    "text[]": {"type": "array", "items": {"type": "string"}},
}


def _column_schema(column) -> dict:
    schema = dict(_JSON_KINDS[column.kind])
    if column.symbol:
        schema.update(pattern=rf"^{rules.SYMBOL_SHAPE}$", maxLength=rules.SYMBOL_MAX_LENGTH)
    elif column.max_length is not None:
        schema["maxLength"] = column.max_length
    if column.pattern is not None:
        schema["pattern"] = column.pattern
    if column.choices:
        schema["enum"] = list(column.choices)
    return schema


def rows_schema() -> dict:
    """The JSON body in OpenAPI terms: an array of rows, each the columns of one dataset (the dataset in
    the path decides which; the server also checks what a schema cannot say, e.g. low <= close <= high)."""
    variants = [
        {
            "title": f"{name} row",
            "type": "object",
            "properties": {spec.input_name(c.name): _column_schema(c) for c in spec.columns}
            | {"known_at": _JSON_KINDS["timestamp"]},
            "required": list(spec.input_required_columns),
            "additionalProperties": False,
        }
        for name, spec in DATASETS.items()
    ]
    return {"type": "array", "minItems": 1, "items": {"anyOf": variants}}


class IngestRateThrottle(TokenRateThrottle):
    scope = "tsm_ingest"

    def get_rate(self):
        return settings.TSM_INGEST_RATE


class RawBodyParser(BaseParser):
    """Any body, as bytes: the service reads and validates every format itself (one set of rules and
    messages). Needed so that DRF's session authentication, which reads ``request.POST`` to check the
    CSRF token, does not answer 415 to a staff session before the view runs."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context["request"]._request.body  # noqa: B018 - read (and size-checked) once, kept for the view
        return QueryDict()  # what request.POST (the CSRF check) finds: no form fields


def content_length(request) -> int:
    """The declared body size (0 when absent); a malformed header was refused by tsm_site.middleware."""
    text = request.META.get("CONTENT_LENGTH") or "0"
    return int(text) if text.isascii() and text.isdigit() else 0


def _one(request, name: str) -> str | None:
    """Query parameter ``name`` given at most once (None: absent)."""
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise ParseError(f"{name} is given {len(values)} times: give it once")
    return values[0] if values else None


def batch_feed(request) -> str:
    """The feed the batch's rows come from: a token bound to a feed sends only as that feed (another
    ``feed`` → 403); otherwise ``feed`` as given, or "" (unnamed)."""
    given = _one(request, "feed")
    if given is not None:
        problem = rules.feed_problem(given)
        if problem:
            raise ParseError(f"feed: {problem}")
    token = request.auth if isinstance(request.auth, ApiToken) else None
    bound = token.feed if token is not None else ""
    if not bound:
        return given or ""
    if given is not None and given != bound:
        raise PermissionDenied(
            f"this token is bound to feed {bound!r}: it cannot send rows as feed {given!r} "
            "(leave feed out, or use a token of that feed)"
        )
    return bound


def batch_reassert(request) -> bool:
    text = _one(request, "reassert")
    if text is None:
        return False
    if text not in ("true", "false"):
        raise ParseError(f"reassert={text[:40]!r}: expected true or false")
    return text == "true"


def requested_by(request) -> str:
    """Who sends the batch, as its load records it."""
    if isinstance(request.auth, ApiToken):
        return f"token {request.auth.prefix}… ({request.auth.user.get_username()})"
    return f"staff session ({request.user.get_username()})"


class IngestView(APIView):
    permission_classes = [WriteScope]
    throttle_classes = [IngestRateThrottle]
    parser_classes = [RawBodyParser]  # the service reads the raw body: every format gets the same validation

    @extend_schema(
        summary="Send rows to a dataset (buffered, durable before the answer)",
        request={
            "application/json": rows_schema(),
            "application/x-ndjson": OpenApiTypes.STR,
            "text/csv": OpenApiTypes.STR,
        },
        parameters=[
            OpenApiParameter("dataset", str, OpenApiParameter.PATH, enum=list(DATASETS)),
            OpenApiParameter(
                "on_error",
                str,
                enum=["reject", "skip"],
                description="reject: any bad row → 400, nothing stored; skip: quarantine bad rows",
            ),
            OpenApiParameter(
                "bar_interval", str, description="market_data bar length (default 1min): a bar is known when it closes"
            ),
            OpenApiParameter(
                "feed",
                str,
                pattern=rf"^{rules.FEED_SHAPE}$",
                description="the source the rows come from, ranked by TSM_FEED_PRECEDENCE (default: the token's "
                f"feed, else unnamed); a token bound to a feed gets 403 for another. {rules.FEED_RULE_TEXT}",
            ),
            OpenApiParameter(
                "reassert",
                str,
                enum=["true", "false"],
                description="true: rows equal to a superseded version of their (key, known_at) become current "
                "again (deliberate; undoes fixes); false (default): such rows are re-sends, not stored",
            ),
        ],
        responses={
            202: OpenApiTypes.OBJECT,
            400: OpenApiTypes.OBJECT,
            403: OpenApiTypes.OBJECT,
            413: OpenApiTypes.OBJECT,
            415: OpenApiTypes.OBJECT,
            429: OpenApiTypes.OBJECT,
        },
    )
    def post(self, request, dataset: str):
        if dataset not in DATASETS:
            raise NotFound(f"unknown dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
        length = content_length(request)
        if length > settings.TSM_INGEST_MAX_BODY_BYTES:
            return Response(
                {"detail": f"the body is {length:,} bytes; the limit is {settings.TSM_INGEST_MAX_BODY_BYTES:,}"},
                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        on_error = request.query_params.get("on_error", "reject")
        if on_error not in ("reject", "skip"):
            raise ParseError(f"on_error={on_error!r}: expected reject or skip")
        try:
            interval = parse_interval("bar_interval", request.query_params.get("bar_interval", "1min"))
        except ValueError as exc:
            raise ParseError(str(exc)) from None
        feed, reassert = batch_feed(request), batch_reassert(request)
        try:
            accepted = buffer.batch_accept(
                dataset=dataset,
                body=request._request.body,
                content_type=request.content_type,
                on_error=on_error,
                bar_interval=interval,
                user=request.user if request.user.is_authenticated else None,
                feed=feed,
                reassert=reassert,
                requested_by=requested_by(request),
            )
        except buffer.UnsupportedBody as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE)
        except buffer.BadBody as exc:
            raise ParseError(str(exc)) from None
        except buffer.Backpressure as exc:
            return Response(
                {"detail": str(exc)}, status=status.HTTP_429_TOO_MANY_REQUESTS, headers={"Retry-After": "1"}
            )
        except buffer.BatchRejected as exc:
            return Response(
                {
                    "detail": str(exc),
                    "rejected": exc.rejected,
                    "errors": [{"row": e.row, "column": e.column, "message": e.message} for e in exc.errors],
                },
                status=status.HTTP_400_BAD_REQUEST,
            )
        except UnknownDataset as exc:
            raise NotFound(str(exc)) from None
        if accepted.pending:
            transaction.on_commit(lambda: tasks.flush_schedule(dataset=dataset, pending=accepted.pending))
        batch = accepted.batch
        body = {
            "batch_id": str(batch.id),
            "dataset": dataset,
            "status": batch.status,
            "accepted": batch.rows,
            "rejected": batch.rejected,
            "feed": batch.feed,
            "reassert": batch.reassert,
            "status_url": reverse("ingest-batch", args=[batch.id], request=request),
        }
        return Response(body, status=status.HTTP_202_ACCEPTED)


def schema_links(result, generator, request, public):
    """drf-spectacular post-processing hook (SPECTACULAR_SETTINGS): an OpenAPI link from a batch's 202
    to its status, so clients (and schemathesis' stateful tests) can follow ``batch_id``."""
    for item in result.get("paths", {}).values():
        operation = item.get("post") or {}
        accepted = operation.get("responses", {}).get("202")
        if operation.get("operationId") == "ingest_create" and accepted is not None:
            accepted["links"] = {
                "BatchStatus": {
                    "operationId": "ingest_batches_retrieve",
                    "parameters": {"batch_id": "$response.body#/batch_id"},
                    "description": "Is the batch merged (queryable) yet?",
                }
            }
    return result


class BatchView(APIView):
    permission_classes = [WriteScope]

    @extend_schema(
        summary="Is a batch merged (queryable) yet?", responses={200: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT}
    )
    def get(self, request, batch_id):
        info = buffer.batch_status(batch_id=batch_id)
        if info is None:
            raise NotFound("no such batch")
        return Response(info)
