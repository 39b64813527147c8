"""The read API: thin views that translate the request, call ``timeseries.pit`` (or the dataset's filtered
queryset) and hand plain rows to the renderers.

* Listings (``/market-data/`` …): the raw store, every version, filtered, keyset-paginated, and with
  ``as_of=T[&recorded_by=S]`` only the versions current at T as recorded by S.
* Point-in-time (``/state/``, ``/<dataset>/before/``, ``/reconstruct/<symbol>/``): one selector each,
  cached through ``timeseries.cache.cached`` (key: endpoint + normalised parameters + the generations
  of the datasets read, so ingestion retires every answer it could change).
* ``POST /asof-join/``: many (symbol, time) decision points in one query; JSON, CSV, Parquet or Arrow
  in, and by default the same format out.

Every answer that depends on ``at`` states ``at``, ``recorded_by`` and ``max_recorded_at`` (JSON
envelope or ``X-TSM-*`` headers) so it can be replayed exactly with ``recorded_by``.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.exceptions import (
    BadRequest,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import HttpResponse, UnreadablePostError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers
from rest_framework.exceptions import APIException, ParseError, ValidationError
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from timeseries import pit
from timeseries.api import renderers as r
from timeseries.api.filters import FILTERSETS, FilterBackend, KeysetPagination, orderings_for
from timeseries.api.serializers import (
    AsofJoinQuery,
    CorporateActionsQuery,
    GovernmentQuery,
    InsiderQuery,
    NewsQuery,
    PitQuery,
    ReconstructQuery,
    SentimentQuery,
    StateQuery,
    check_symbol,
    envelope_serializer,
    points_digest_source,
    points_table,
    row_serializer,
)
from timeseries.cache import cached
from timeseries.datasets import DATASETS, Dataset

ASOF_CACHE_MAX_POINTS = 10_000  # larger joins are not worth a cache entry


def stored_columns(spec: Dataset) -> list[tuple[str, str]]:
    return [(c.name, c.kind) for c in spec.columns] + [("known_at", "timestamp"), ("recorded_at", "timestamp")]


def asof_columns(spec: Dataset) -> list[tuple[str, str]]:
    """Columns of an as-of-join answer: the point (at + series), then the row known then."""
    series = [(c, "text") for c in spec.series]
    return [("at", "timestamp"), *series, *[(n, k) for n, k in stored_columns(spec) if n not in spec.series]]


class PayloadTooLarge(APIException):
    status_code = 413
    default_detail = "the request body is too large"
    default_code = "payload_too_large"


def exception_handler(exc, context):
    """DRF's handler (for every API view: settings.REST_FRAMEWORK["EXCEPTION_HANDLER"]); validation
    messages that do not name their parameter are prefixed with it. Django's refusals of a malformed
    request (too many fields, a body over DATA_UPLOAD_MAX_MEMORY_SIZE, a bad form encoding) are 4xx
    answers like any other, not exceptions DRF would let through as a 500."""
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        exc = PayloadTooLarge(f"the request body is larger than {limit:,} bytes" if limit else None)
    elif isinstance(exc, (SuspiciousOperation, BadRequest)):
        exc = ParseError(_refusal_text(exc))
    elif isinstance(exc, UnreadablePostError):
        exc = ParseError("the request body could not be read to its end (Content-Length larger than the body?)")
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, ValidationError) and isinstance(response.data, dict):
        response.data = {key: _named(key, value) for key, value in response.data.items()}
    return response


def _refusal_text(exc: Exception) -> str:
    if isinstance(exc, TooManyFieldsSent):
        return f"the request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS:,} parameters or form fields"
    if isinstance(exc, TooManyFilesSent):
        return f"the request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES:,} files"
    return str(exc) or "the request is malformed"


def _named(key: str, value):
    if isinstance(value, list):
        return [_named(key, v) for v in value]
    if isinstance(value, str) and key not in ("non_field_errors", "detail") and not value.startswith(key):
        return f"{key}: {value}"
    return value


ERRORS = {
    400: OpenApiResponse(OpenApiTypes.OBJECT, description="A parameter or the body is invalid; the message names it."),
    401: OpenApiResponse(OpenApiTypes.OBJECT, description="No or an invalid token."),
    403: OpenApiResponse(OpenApiTypes.OBJECT, description="The token's scope or the account does not allow this."),
    429: OpenApiResponse(OpenApiTypes.OBJECT, description="Rate limit (TSM_API_RATE) exceeded; see Retry-After."),
}


def tabular_responses(json_schema) -> dict:
    return {
        (200, "application/json"): json_schema,
        (200, "text/csv"): OpenApiTypes.STR,
        (200, r.PARQUET_MEDIA_TYPE): OpenApiTypes.BINARY,
        (200, r.ARROW_MEDIA_TYPE): OpenApiTypes.BINARY,
        **ERRORS,
    }


class ApiView(APIView):
    """Base of every read endpoint: tabular renderers, JSON errors, parameter-naming messages."""

    renderer_classes = r.TABULAR_RENDERERS
    content_negotiation_class = r.ContentNegotiation

    query_class: type[serializers.Serializer] | None = None

    def get_exception_handler(self):
        return exception_handler

    def allowed_params(self) -> set[str]:
        return set(self.query_class().fields) if self.query_class is not None else set()

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        # a misspelt parameter must not be ignored: "?asof=T" silently answering with every version
        # would be look-ahead bias, not a convenience
        allowed = self.allowed_params() | {"format"}
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            raise ValidationError(
                {
                    name[:64]: [
                        f"{name[:64]} is not a parameter of this endpoint: expected one of {', '.join(sorted(allowed))}"
                    ]
                    for name in unknown
                }
            )

    def finalize_response(self, request, response, *args, **kwargs):
        # errors are JSON whatever format was asked for (a CSV of an error helps nobody)
        if response.status_code >= 400 and isinstance(getattr(request, "accepted_renderer", None), r._TabularRenderer):
            request.accepted_renderer = r.JSONRenderer()
            request.accepted_media_type = r.JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)

    def cached_answer(self, request, name: str, datasets: list[str], params: dict, answer) -> HttpResponse:
        """The rendered answer (body + headers), from the cache when one exists for these parameters,
        this format and the datasets' current generations. Caching the rendered bytes, not the rows,
        spares re-rendering a 1,000-row answer on every hit."""

        def render() -> tuple[bytes, dict[str, str]]:
            response = answer()
            response.accepted_renderer = request.accepted_renderer
            response.accepted_media_type = request.accepted_media_type
            response.renderer_context = self.get_renderer_context()
            response.render()
            return bytes(response.content), dict(response.items())

        params = {**params, "_media": request.accepted_media_type}
        content, headers = cached(name, datasets=datasets, params=params, compute=render, timeout=DEFAULT_TIMEOUT)
        response = HttpResponse(content)
        for header, value in headers.items():
            response[header] = value
        return response

    def query(self, serializer_class, request) -> dict:
        """The validated query: every field of ``serializer_class`` (None where not given)."""
        serializer = serializer_class(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        return {name: serializer.validated_data.get(name) for name in serializer.fields}


def cache_params(query: dict) -> dict:
    """Normalised parameters for a cache key: lists of names are sets (the answers do not depend on their order)."""
    return {name: sorted(value) if isinstance(value, list) else value for name, value in query.items()}


# --- listings -------------------------------------------------------------------------------------


class DatasetList(ApiView, generics.ListAPIView):
    """Every stored version of the dataset (or, with as_of, the versions current at T)."""

    spec: Dataset
    columns: list[tuple[str, str]]
    value_columns: tuple[str, ...]
    orderings: dict[str, tuple[str, ...]]
    filter_backends = [FilterBackend]
    pagination_class = KeysetPagination

    def get_queryset(self):
        return self.spec.model.objects.all()

    def allowed_params(self) -> set[str]:
        paginator = self.pagination_class
        pagination = {paginator.cursor_query_param, paginator.page_size_query_param, paginator.ordering_query_param}
        return set(self.filterset_class.base_filters) | pagination

    def list(self, request, *args, **kwargs):
        queryset = self.filter_queryset(self.get_queryset())
        rows = self.paginator.paginate_queryset(queryset, request, view=self)
        at, recorded_by = self.filterset.as_of_bounds
        return r.TableResponse(
            rows,
            columns=self.columns,
            at=at,
            recorded_by=recorded_by,
            max_recorded=r.max_recorded_at(rows),
            links=self.paginator.links,
        )


def dataset_list_view(dataset: str) -> type[DatasetList]:
    spec = DATASETS[dataset]
    columns = [("id", "bigint"), *stored_columns(spec)]
    rows = row_serializer(spec, name=f"{_camel(dataset)}Row", columns=columns)
    view = type(
        f"{_camel(dataset)}List",
        (DatasetList,),
        {
            "spec": spec,
            "columns": columns,
            "value_columns": tuple(n for n, _ in columns),
            "orderings": orderings_for(spec),
            "filterset_class": FILTERSETS[dataset],
            "serializer_class": rows,
            "__doc__": f"Browse {dataset}: every stored version, filtered and keyset-paginated; "
            "with as_of=T (and recorded_by=S) only the versions current at T (as recorded by S).",
            "__module__": __name__,
        },
    )
    return extend_schema(
        tags=[dataset],
        summary=f"Browse {dataset}",
        responses=tabular_responses(rows(many=True)),
    )(view)


def _camel(name: str) -> str:
    return "".join(part.title() for part in name.split("_"))


MarketDataList = dataset_list_view("market_data")
NewsList = dataset_list_view("news_events")
InsiderTradeList = dataset_list_view("insider_trades")
SentimentList = dataset_list_view("social_sentiment")
GovernmentEventList = dataset_list_view("government_events")
SecurityList = dataset_list_view("securities")
CorporateActionList = dataset_list_view("corporate_actions")


# --- point in time --------------------------------------------------------------------------------


class PitView(ApiView):
    """GET: validate the query, answer from the cache or the selector, state at / recorded_by."""

    cache_name: str  # cache namespace
    spec: Dataset

    def select(self, query: dict) -> list[dict]:  # pragma: no cover - abstract
        raise NotImplementedError

    def get(self, request):
        query = self.query(self.query_class, request)

        def answer() -> r.TableResponse:
            rows = self.select(query)
            return r.TableResponse(
                rows,
                columns=stored_columns(self.spec),
                at=query["at"],
                recorded_by=query.get("recorded_by"),
                max_recorded=r.max_recorded_at(rows),
            )

        return self.cached_answer(request, self.cache_name, [self.spec.name], cache_params(query), answer)


def _pit_schema(spec: Dataset, query, summary: str, description: str):
    rows = row_serializer(spec, name=f"{_camel(spec.name)}PitRow")
    envelope = envelope_serializer(f"{_camel(spec.name)}PitAnswer", rows(many=True))
    return extend_schema(
        tags=["point in time"],
        summary=summary,
        description=description,
        parameters=[query],
        responses=tabular_responses(envelope),
    )


@_pit_schema(
    DATASETS["market_data"],
    StateQuery,
    "Market state at T",
    "Per symbol, the latest bar known at T (a bar is known when it closes), ordered by symbol.",
)
class StateView(PitView):
    cache_name, spec, query_class = "market_state", DATASETS["market_data"], StateQuery

    def select(self, query):
        return pit.market_state(
            at=query["at"],
            symbols=query.get("symbols"),
            recorded_by=query.get("recorded_by"),
            min_quality=query.get("min_quality"),
        )


@_pit_schema(DATASETS["news_events"], NewsQuery, "News known at T", "News known at T, newest first, then by impact.")
class NewsBeforeView(PitView):
    cache_name, spec, query_class = "news", DATASETS["news_events"], NewsQuery

    def select(self, query):
        return pit.news(
            at=query["at"],
            symbols=query.get("symbols"),
            limit=query["limit"],
            recorded_by=query.get("recorded_by"),
            min_quality=query.get("min_quality"),
        )


@_pit_schema(
    DATASETS["insider_trades"],
    InsiderQuery,
    "Insider trades filed by T",
    "Trades filed by T (the current version of each, e.g. a 4/A amendment once filed), newest filing first.",
)
class InsiderTradesBeforeView(PitView):
    cache_name, spec, query_class = "insider_trades", DATASETS["insider_trades"], InsiderQuery

    def select(self, query):
        return pit.insider_trades(
            at=query["at"], symbols=query.get("symbols"), limit=query["limit"], recorded_by=query.get("recorded_by")
        )


@_pit_schema(
    DATASETS["social_sentiment"],
    SentimentQuery,
    "Sentiment known at T",
    "Per symbol and platform, the latest closed hourly window known at T.",
)
class SentimentBeforeView(PitView):
    cache_name, spec, query_class = "sentiment", DATASETS["social_sentiment"], SentimentQuery

    def select(self, query):
        rows = pit.sentiment(at=query["at"], symbols=query.get("symbols"), recorded_by=query.get("recorded_by"))
        platforms = query.get("platforms")
        return [row for row in rows if row["platform"] in platforms] if platforms else rows


@_pit_schema(
    DATASETS["government_events"],
    GovernmentQuery,
    "Government events known at T",
    "Events known at T whose primary or affected symbols, or sectors, match; newest first.",
)
class GovernmentEventsBeforeView(PitView):
    cache_name, spec, query_class = "government_events", DATASETS["government_events"], GovernmentQuery

    def select(self, query):
        return pit.government_events(
            at=query["at"],
            symbols=query.get("symbols"),
            sectors=query.get("sectors"),
            limit=query["limit"],
            recorded_by=query.get("recorded_by"),
        )


@_pit_schema(
    DATASETS["securities"],
    PitQuery,
    "The security master known at T",
    "The current version of every security known at T (listed or not then: listed_at is time, delisted_at"
    " says when it left), by security_id; symbols match a security_id or the ticker it listed under.",
)
class SecuritiesView(PitView):
    cache_name, spec, query_class = "securities", DATASETS["securities"], PitQuery

    def select(self, query):
        return pit.securities(at=query["at"], symbols=query.get("symbols"), recorded_by=query.get("recorded_by"))


@_pit_schema(
    DATASETS["corporate_actions"],
    CorporateActionsQuery,
    "Corporate actions known at T",
    "Actions announced by T (the current version of each, ex_date as time, including ex_dates after T),"
    " newest ex_date first; symbols match a security_id or the ticker just before ex_date.",
)
class CorporateActionsBeforeView(PitView):
    cache_name, spec, query_class = "corporate_actions", DATASETS["corporate_actions"], CorporateActionsQuery

    def select(self, query):
        return pit.corporate_actions(
            at=query["at"], symbols=query.get("symbols"), limit=query["limit"], recorded_by=query.get("recorded_by")
        )


@extend_schema(
    tags=["point in time"],
    summary="Everything known about a symbol at T",
    description="Latest bar, technical indicators (from the bars known at T), news, insider summary, sentiment and "
    "government events, all as known at T (as recorded by recorded_by).",
    parameters=[ReconstructQuery, OpenApiParameter("symbol", str, OpenApiParameter.PATH)],
    responses={200: envelope_serializer("ReconstructAnswer", serializers.DictField()), **ERRORS},
)
class ReconstructView(ApiView):
    renderer_classes = r.JSON_RENDERERS
    query_class = ReconstructQuery
    parts = ("market", "news", "sentiment", "government_events", "indicators", "insider")

    def get(self, request, symbol: str):
        symbol = check_symbol(symbol)
        query = self.query(self.query_class, request)

        def answer() -> r.TableResponse:
            state = pit.reconstruct(
                at=query["at"],
                symbol=symbol,
                recorded_by=query.get("recorded_by"),
                bars=query["bars"],
                min_quality=query.get("min_quality"),
            )
            results = {"symbol": state["symbol"], **{part: state[part] for part in self.parts}}
            return r.TableResponse(
                results,
                columns=None,
                at=state["at"],
                recorded_by=state["recorded_by"],
                max_recorded=state["max_recorded_at"],
            )

        return self.cached_answer(
            request, "reconstruct", list(DATASETS), {"symbol": symbol, **cache_params(query)}, answer
        )


@extend_schema(
    tags=["point in time"],
    summary="As-of join: the row known at each decision point",
    description="The body is a table of points (symbol, time; and platform for social_sentiment): a JSON array of "
    "objects, CSV with a header, Parquet or an Arrow IPC stream (Content-Type decides). The answer has one row per "
    "point, in input order, in the body's format unless Accept or ?format= asks for another. Times are ISO 8601 with "
    "an offset (or tz-aware timestamp columns).",
    parameters=[AsofJoinQuery],
    request={
        "application/json": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["symbol", "time"],
                "properties": {
                    "symbol": {"type": "string"},
                    "time": {"type": "string", "format": "date-time"},
                    "platform": {"type": "string", "description": "social_sentiment only"},
                },
            },
        },
        "text/csv": OpenApiTypes.STR,
        r.PARQUET_MEDIA_TYPE: OpenApiTypes.BINARY,
        r.ARROW_MEDIA_TYPE: OpenApiTypes.BINARY,
    },
    responses=tabular_responses(
        envelope_serializer("AsofJoinAnswer", serializers.ListField(child=serializers.DictField()))
    ),
    examples=[
        OpenApiExample(
            "two points",
            value=[
                {"symbol": "AAPL", "time": "2024-03-01T15:30:00Z"},
                {"symbol": "MSFT", "time": "2024-03-01T16:00:00Z"},
            ],
            request_only=True,
        )
    ],
)
class AsofJoinView(ApiView):
    query_class = AsofJoinQuery
    parser_classes = [
        r.PointsJSONParser,
        r.CSVParser,
        r.ParquetParser,
        r.LegacyParquetParser,
        r.ArrowParser,
        r.ArrowFileParser,
    ]

    def perform_content_negotiation(self, request, force=False):
        # no explicit choice: answer in the format of the body
        accept = request.META.get("HTTP_ACCEPT", "").strip()
        if "format" not in request.query_params and accept in ("", "*/*"):
            wanted = r.FORMAT_FOR_CONTENT_TYPE.get((request.content_type or "").split(";")[0].strip().lower())
            for renderer in self.get_renderers():
                if renderer.format == wanted:
                    return renderer, renderer.media_type
        return super().perform_content_negotiation(request, force)

    def post(self, request):
        query = self.query(self.query_class, request)
        spec = DATASETS[query["dataset"]]
        max_points = settings.TSM_API_ASOF_MAX_POINTS
        table = points_table(request.data, spec=spec, max_points=max_points)
        recorded_by = query.get("recorded_by")
        min_quality = query.get("min_quality")

        # Parquet / Arrow answers are written from the Arrow table itself, never through Python rows
        columnar = isinstance(request.accepted_renderer, (r.ParquetRenderer, r.ArrowRenderer))

        def compute():
            result = pit.asof_join_table(table, dataset=spec.name, recorded_by=recorded_by, min_quality=min_quality)
            return result if columnar else result.to_pylist()

        if table.num_rows <= ASOF_CACHE_MAX_POINTS:
            digest = hashlib.sha256(points_digest_source(table)).hexdigest()
            params = {
                "dataset": spec.name,
                "recorded_by": recorded_by,
                "points": digest,
                "columnar": columnar,
                "min_quality": min_quality,
            }
            rows = cached("asof_join", datasets=[spec.name], params=params, compute=compute, timeout=DEFAULT_TIMEOUT)
        else:
            rows = compute()
        return r.TableResponse(
            rows, columns=asof_columns(spec), at=None, recorded_by=recorded_by, max_recorded=r.max_recorded_at(rows)
        )
