"""Admin over the datasets and their curation: thin, and safe on tables with tens of millions of rows.

* No full COUNT (an estimate from the planner's statistics, or a count capped at 10,001), no
  DISTINCT-based filters: the filters are input boxes (symbol, source, event-time, known_at and
  quality ranges) and the search box matches symbols exactly, so every query walks an index.
* The changelist is ordered newest first by (time, key, known_at, recorded_at): a unique order that
  follows the ``time`` index (or, filtered by symbol, the version index backwards).
* Rows are versions: the loader is their only writer. The one editable column is ``quality_score``
  (inline in the list, on the row's page, or by the bulk actions "mark suspect", "mark good",
  "set score…" over the selection or over *all rows matching the filter*). Every change goes
  through ``timeseries.quality`` (set-based, audited, cache generation bumped); selections above
  ``TSM_CURATION_SYNC_MAX_ROWS`` rows go to a Celery task.
* Quality audit (read-only), quality flags and the per-symbol-day quality report.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import DataError, connection, transaction
from django.db.models import Q
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.http import urlencode

from timeseries import (
    admin_storage,  # noqa: F401  (admin page "Storage report")
    models,
    params,
    quality,
    tasks,
    tokens,
)
from timeseries.admin_base import ReadOnlyModelAdmin
from timeseries.admin_ops import remove_versions  # also registers the consumer-failure and removal lists
from timeseries.admin_storage import dataset_permission
from timeseries.datasets import DATASETS, dataset_of_model
from timeseries.params import CURATION_FILTER_PARAMS
from timeseries.removal import versions_outside_range
from timeseries.rules import FEED_RULE_TEXT, feed_problem, format_instant


class EstimatedCountPaginator(Paginator):
    """Uses pg_class.reltuples for unfiltered lists and caps filtered counts instead of COUNT(*)."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        query = self.object_list.query
        if not query.where:
            with connection.cursor() as cur:
                cur.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                    [self.object_list.model._meta.db_table],
                )
                row = cur.fetchone()
            if row and row[0] > self.CAP:
                return int(row[0])
        # keep the list's ordering: the capped count then walks the same index as the page (e.g. backwards
        # from a known_at/time bound) instead of from the other end of the table
        return self.object_list[: self.CAP + 1].count()


# --- input-box filters (no DISTINCT, no dropdown of values) ---------------------------------------


class InputFilter(admin.ListFilter):
    """A group of input boxes; validated by ``quality.curation_filters_clean`` (errors name the box).

    A bad value shows the error and an empty list (never the unfiltered table: a bulk action over
    "all rows matching the filter" must not hit every row because a filter was mistyped).
    """

    template = "admin/timeseries/input_filter.html"
    fields: tuple[tuple[str, str, str], ...] = ()  # (parameter, label, placeholder)

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        self.dataset = dataset_of_model(model).name
        for name, _, _ in self.fields:
            if name in params:
                self.used_parameters[name] = params.pop(name)[-1]

    def has_output(self) -> bool:
        return True

    def expected_parameters(self):
        return [name for name, _, _ in self.fields]

    def choices(self, changelist):
        mine = set(self.expected_parameters()) | {"p", "e"}
        hidden = [(k, v) for k, values in self.request.GET.lists() if k not in mine for v in values]
        yield {
            "fields": [
                {"name": name, "label": label, "placeholder": placeholder, "value": self.used_parameters.get(name, "")}
                for name, label, placeholder in self.fields
            ],
            "hidden": hidden,
        }

    def queryset(self, request, queryset):
        try:
            cleaned = quality.curation_filters_clean(dataset=self.dataset, params=self.used_parameters)
        except quality.CurationError as exc:
            shown = request.__dict__.setdefault("_tsm_filter_errors", set())
            if str(exc) not in shown:
                shown.add(str(exc))
                messages.error(request, str(exc))
            return queryset.none()
        return quality.curation_filters_apply(queryset, dataset=self.dataset, filters=cleaned)


class SymbolSourceFilter(InputFilter):
    title = "symbol and source"
    fields = (("symbol", "symbol(s)", "AAPL, MSFT"), ("source", "source(s)", "exact, comma-separated"))


class SymbolFilter(InputFilter):
    title = "symbol"
    fields = (("symbol", "symbol(s)", "AAPL, MSFT"),)


class TimeRangeFilter(InputFilter):
    title = "event time"
    fields = (("time_after", "from", "2024-03-01T14:30Z"), ("time_before", "to (inclusive)", "2024-03-01T21:00Z"))


class KnownAtRangeFilter(InputFilter):
    title = "known_at"
    fields = (
        ("known_at_after", "from", "2024-03-01T14:30Z"),
        ("known_at_before", "to (inclusive)", "2024-03-01T21:00Z"),
    )


class QualityRangeFilter(InputFilter):
    title = "quality score"
    fields = (("quality_min", "min", "0"), ("quality_max", "max", "0.5"))


# --- dataset admins ---------------------------------------------------------------------------------


def may_open_quality_report(site: admin.AdminSite, request) -> bool:
    """The quality report shows flags and audit entries: view (or change) permission on both models."""
    return all(site._registry[m].has_view_permission(request) for m in (models.QualityFlag, models.QualityAudit))


class CurationActionForm(ActionForm):
    score = forms.CharField(
        required=False, label="score", widget=forms.TextInput(attrs={"size": 4, "placeholder": "0–1"})
    )
    reason = forms.CharField(
        required=False,
        label="reason",
        widget=forms.TextInput(attrs={"size": 30, "placeholder": "why (recorded in the audit)"}),
    )


def _unrepresentable_instant(exc: DataError) -> bool:
    """psycopg could not turn a stored timestamp into a datetime (before year 1 or after 9999)."""
    return any(
        word in str(exc) for word in ("timestamp too large", "timestamp too small", "date too large", "date too small")
    )


class TimeSeriesAdmin(admin.ModelAdmin):
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 100
    search_help_text = "Exact symbol(s), comma-separated."
    more_filters: tuple[str, ...] = ()  # the dataset's own columns to filter by (action_type, exchange)
    actions = (remove_versions,)

    @cached_property
    def spec(self):
        return dataset_of_model(self.model)

    @cached_property
    def search_columns(self) -> tuple[str, ...]:
        """The symbol column, then every other text column under the symbol rule (a security's ticker)."""
        spec = self.spec
        others = [c.name for c in spec.columns if c.symbol and c.kind == "text" and c.name != spec.symbol_column]
        return (spec.symbol_column, *others)

    def get_search_fields(self, request):
        return self.search_columns[:1]  # shows the box; the search itself is get_search_results

    def get_search_results(self, request, queryset, search_term):
        """Exact symbols (an index probe), never a case-insensitive scan of every row; a dataset with
        more symbol columns (security_id and ticker) matches any of them."""
        terms = [t.strip() for t in search_term.replace(" ", ",").split(",") if t.strip()]
        if terms:
            match = Q()
            for column in self.search_columns:
                match |= Q(**{f"{column}__in": terms})
            queryset = queryset.filter(match)
        return queryset, False

    def get_list_filter(self, request):
        first = SymbolSourceFilter if "source" in self.spec.column_names else SymbolFilter
        return (first, *self.more_filters, TimeRangeFilter, KnownAtRangeFilter)

    def get_readonly_fields(self, request, obj=None):
        fields = [f.name for f in self.model._meta.concrete_fields if f.name not in ("id", "quality_score")]
        return [*fields, "version_history"]

    @admin.display(description="versions")
    def version_history(self, obj):
        """The key's version history (sources, status, why), an ingestion admin page: linked by URL name only."""
        key = {name: getattr(obj, name) for name in self.spec.key}
        key = {name: format_instant(v) if isinstance(v, datetime) else v for name, v in key.items()}
        url = reverse("admin:ingestion_load_versions", args=[self.spec.name]) + "?" + urlencode(key)
        return format_html('<a href="{}">every version of this key, its source and status</a>', url)

    def has_add_permission(self, request) -> bool:
        return False  # rows are versions written by the loader (Admin › Ingestion › Uploads)

    def changelist_view(self, request, extra_context=None):
        try:
            return super().changelist_view(request, extra_context)
        except DataError as exc:
            if not _unrepresentable_instant(exc):
                raise
            return self._outside_range(request)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        try:
            return super().change_view(request, object_id, form_url, extra_context)
        except DataError as exc:
            if not _unrepresentable_instant(exc):
                raise
            return self._outside_range(request)

    def _outside_range(self, request):
        """A legacy row whose instant Python cannot hold (past year 9999, stored before the rules at
        the door) made the page fail: say so, list such rows and how to remove them (a 409, not a 500)."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": f"{self.opts.verbose_name_plural.capitalize()}: rows outside the supported range",
            "opts": self.opts,
            "dataset": self.spec.name,
            "rows": versions_outside_range(dataset=self.spec.name),
            "may_remove": self.has_remove_versions_permission(request),
        }
        return TemplateResponse(request, "admin/timeseries/outside_range.html", context, status=409)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a deleted version would change past point-in-time answers...

    def has_remove_versions_permission(self, request) -> bool:
        """...except through the audited removal action, offered with the model's delete permission."""
        return request.user.has_perm(dataset_permission(self.spec.name, "delete"))


class CuratedAdmin(TimeSeriesAdmin):
    """A dataset with ``quality_score``: inline editing, bulk actions, checks, report links."""

    list_editable = ("quality_score",)
    action_form = CurationActionForm
    actions = ("mark_suspect", "mark_good", "set_score", "run_quality_checks", remove_versions)

    def get_list_filter(self, request):
        return (*super().get_list_filter(request), QualityRangeFilter)

    def get_list_display(self, request):
        """The quality report link only for staff who may open the report (view on flags and audit)."""
        shown = super().get_list_display(request)
        if not may_open_quality_report(self.admin_site, request):
            shown = tuple(c for c in shown if c != "report_link")
        return shown

    @admin.display(description="report")
    def report_link(self, obj):
        url = reverse("admin:timeseries_qualityflag_report")
        query = urlencode(
            {
                "dataset": self.spec.name,
                "symbol": getattr(obj, self.spec.symbol_column),
                "day": obj.time.date().isoformat(),
            }
        )
        return format_html('<a href="{}?{}">quality report</a>', url, query)

    # -- editing the score (row page and inline in the list) --

    def save_model(self, request, obj, form, change):
        if not change or "quality_score" not in form.changed_data:
            return
        reason = (request.POST.get("reason") or "").strip() or "edited in the admin"
        try:
            quality.quality_scores_set(
                dataset=self.spec.name, rows=[obj.pk], score=obj.quality_score, reason=reason, user=request.user
            )
        except quality.CurationError as exc:
            messages.error(request, f"{obj}: {exc}")

    def save_related(self, request, form, formsets, change):
        pass  # no related objects; nothing else of the row may change

    # -- bulk actions --

    def _curate(self, request: HttpRequest, queryset, score, what: str) -> None:
        reason = (request.POST.get("reason") or "").strip() or what
        try:
            score = params.score_check("score", score)
        except quality.CurationError as exc:
            messages.error(request, str(exc))
            return
        limit = settings.TSM_CURATION_SYNC_MAX_ROWS
        if request.POST.get("select_across") == "1" and queryset.order_by()[: limit + 1].count() > limit:
            filters = {k: request.GET.get(k) for k in CURATION_FILTER_PARAMS if request.GET.get(k)}
            try:
                quality.curation_filters_clean(dataset=self.spec.name, params=filters)
            except quality.CurationError as exc:
                messages.error(request, str(exc))
                return
            transaction.on_commit(
                lambda: tasks.quality_scores_set_filtered.delay(self.spec.name, filters, score, reason, request.user.pk)
            )
            messages.info(
                request,
                f"More than {limit:,} rows match the filter: setting their score to {score:g} runs in the background. "
                "The quality audit lists them when it is done.",
            )
            return
        try:
            result = quality.quality_scores_set(
                dataset=self.spec.name, rows=queryset, score=score, reason=reason, user=request.user
            )
        except quality.CurationError as exc:
            messages.error(request, str(exc))
            return
        audit = reverse("admin:timeseries_qualityaudit_changelist") + "?" + urlencode({"batch": str(result.batch)})
        messages.success(
            request,
            format_html(
                'Quality score set to {} on {} row(s) (<a href="{}">audit</a>).', f"{score:g}", result.changed, audit
            ),
        )

    @admin.action(description="Mark suspect (score 0)", permissions=["change"])
    def mark_suspect(self, request, queryset):
        self._curate(request, queryset, quality.SUSPECT, "marked suspect")

    @admin.action(description="Mark good (score 1)", permissions=["change"])
    def mark_good(self, request, queryset):
        self._curate(request, queryset, quality.GOOD, "marked good")

    @admin.action(description="Set score… (type the score and a reason)", permissions=["change"])
    def set_score(self, request, queryset):
        self._curate(request, queryset, request.POST.get("score"), "score set")

    @admin.action(description="Run quality checks over these rows' symbols and days", permissions=["change"])
    def run_quality_checks(self, request, queryset):
        limit = settings.TSM_CURATION_SYNC_MAX_ROWS
        if queryset.order_by()[: limit + 1].count() > limit:
            messages.error(request, f"More than {limit:,} rows: narrow the filter or run `manage.py quality_check`.")
            return
        result = quality.quality_checks_rows(dataset=self.spec.name, rows=queryset)
        messages.success(
            request,
            f"Checked {result.spans} symbol span(s): {result.flags} flag(s) "
            f"({', '.join(f'{k} {v}' for k, v in sorted(result.by_check.items())) or 'nothing found'}),"
            f" {result.lowered} score(s) lowered.",
        )


def _register(dataset: str, columns: tuple[str, ...], ordering: tuple[str, ...], filters: tuple[str, ...] = ()) -> None:
    spec = DATASETS[dataset]
    base = CuratedAdmin if spec.curated else TimeSeriesAdmin
    display = (*columns, "known_at", "recorded_at", *(("report_link",) if spec.curated else ()))
    attrs = {"list_display": display, "ordering": ordering, "more_filters": filters}
    admin.site.register(spec.model, type(f"{spec.model.__name__}Admin", (base,), attrs))


# newest first by event time, ties by the rest of the version key (unique: no "-pk" added)
_register(
    "market_data",
    ("time", "symbol", "open", "high", "low", "close", "volume", "source", "quality_score"),
    ("-time", "-symbol", "-known_at", "-recorded_at"),
)
_register(
    "news_events",
    ("time", "symbol", "title", "source", "impact_score", "quality_score"),
    ("-time", "-symbol", "-news_id", "-known_at", "-recorded_at"),
)
_register(
    "insider_trades",
    ("time", "symbol", "insider_name", "transaction_type", "shares", "value", "filing_date", "form_type"),
    ("-time",),
)
_register("social_sentiment", ("time", "symbol", "platform", "mention_count", "sentiment_avg"), ("-time",))
_register("government_events", ("time", "event_type", "primary_symbol", "amount", "confidence"), ("-time",))
# reference data: ``time`` is shown under its input name (listed_at, ex_date: the models' verbose names)
_register(
    "securities",
    ("security_id", "symbol", "name", "exchange", "time", "delisted_at", "figi"),
    ("security_id", "-known_at", "-recorded_at"),
    filters=("exchange",),
)
_register(
    "corporate_actions",
    ("time", "security_id", "symbol", "action_type", "ratio", "amount", "currency", "new_symbol", "source"),
    ("-time", "security_id", "action_type", "-known_at", "-recorded_at"),
    filters=("action_type",),
)


@admin.register(models.Symbol)
class SymbolAdmin(admin.ModelAdmin):
    list_display = ("symbol", "name", "sector", "exchange", "listed_on", "delisted_on")
    search_fields = ("symbol", "name")


@admin.register(models.Series)
class SeriesAdmin(admin.ModelAdmin):
    list_display = ("dataset", "symbol", "subkey", "first_time", "last_time")
    list_filter = ("dataset",)
    search_fields = ("=symbol",)


# --- API tokens ----------------------------------------------------------------------------------------


class ApiTokenForm(forms.ModelForm):
    class Meta:
        model = models.ApiToken
        fields = ("user", "name", "scope", "feed", "revoked")
        help_texts = {
            "feed": "write tokens only: bind the token to this feed (e.g. vendor_x); the write API then "
            f"stores its rows as this feed and refuses another. Blank: the caller may name any feed. {FEED_RULE_TEXT}."
        }

    def clean_feed(self):
        feed = self.cleaned_data.get("feed", "")
        problem = feed_problem(feed)
        if problem:
            raise forms.ValidationError(problem)
        return feed

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("feed") and cleaned.get("scope") and cleaned["scope"] != models.ApiToken.Scope.WRITE:
            self.add_error("feed", "only a write token can be bound to a feed: choose scope write, or leave it blank")
        return cleaned

    def clean_user(self):
        user = self.cleaned_data["user"]
        if not user.is_active:
            raise forms.ValidationError(f"user {user.username!r} is inactive: its tokens would not authenticate")
        return user

    def clean_revoked(self):
        revoked = self.cleaned_data.get("revoked", False)
        if self.instance.pk and self.instance.revoked and not revoked:
            raise forms.ValidationError("a revoked token stays revoked: create a new one")
        return revoked


@admin.register(models.ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """List, create (the key is shown once, on the page after "Save"; only its SHA-256 digest and first
    8 characters are stored; scope and feed binding are fixed then) and revoke API tokens. Revoking
    takes effect in this process at once and in the others within TSM_TOKEN_CACHE_SECONDS. Tokens are
    not deleted (their record stays)."""

    form = ApiTokenForm
    list_display = ("prefix_shown", "user", "name", "scope", "feed", "created_at", "last_used_at", "revoked")
    list_filter = ("scope", "revoked")
    list_select_related = ("user",)
    search_fields = ("=user__username", "name", "=prefix")
    search_help_text = "Exact user name or key prefix (tsm_…), or part of the name."
    ordering = ("-created_at", "-id")
    raw_id_fields = ("user",)
    actions = ("revoke_tokens",)

    @admin.display(description="key", ordering="prefix")
    def prefix_shown(self, obj) -> str:
        return f"{obj.prefix}…"

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("user", "name", "scope", "feed")
        return ("prefix_shown", "user", "name", "scope", "feed", "created_at", "last_used_at", "revoked")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        # scope and feed are what the key may do: fixed at creation (create a new token to change them)
        fixed = ("prefix_shown", "user", "scope", "feed", "created_at", "last_used_at")
        return (*fixed, *(("revoked",) if obj.revoked else ()))

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoke instead: the record (who, when, last used) stays

    def save_model(self, request, obj, form, change):
        if not change:
            token, key = tokens.token_create(user=obj.user, scope=obj.scope, name=obj.name, feed=obj.feed)
            obj.pk, obj.prefix, obj.digest, obj.created_at = token.pk, token.prefix, token.digest, token.created_at
            obj._state.adding = False
            request._tsm_new_token_key = key  # shown once by response_add, never stored
            return
        models.ApiToken.objects.filter(pk=obj.pk).update(name=obj.name)
        if "revoked" in form.changed_data and obj.revoked:
            tokens.token_revoke(token=obj)

    def response_add(self, request, obj, post_url_continue=None):
        """The key, once: rendered into this response only (not a message, not the session)."""
        self.message_user(request, f"Token {obj.prefix}… created for {obj.user}.", messages.SUCCESS)
        context = {
            **self.admin_site.each_context(request),
            "title": "API token created",
            "opts": self.opts,
            "token": obj,
            "key": request._tsm_new_token_key,
            "list_url": reverse("admin:timeseries_apitoken_changelist"),
        }
        response = TemplateResponse(request, "admin/timeseries/apitoken/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke_tokens(self, request, queryset):
        revoked = 0
        for token in queryset.filter(revoked=False):
            tokens.token_revoke(token=token)
            self.log_change(request, token, "Revoked.")  # who revoked it, in the admin's history
            revoked += 1
        self.message_user(
            request,
            f"Revoked {revoked} token(s): refused at once by this process, by the others within "
            f"{settings.TSM_TOKEN_CACHE_SECONDS} s.",
            messages.SUCCESS,
        )


# --- curation records ---------------------------------------------------------------------------------


class CuratedDatasetFilter(admin.SimpleListFilter):
    """The curated datasets, from their declarations (not a DISTINCT over the audit)."""

    title = "dataset"
    parameter_name = "dataset"

    def lookups(self, request, model_admin):
        return [(name, name) for name in quality.CURATED_DATASETS]

    def queryset(self, request, queryset):
        return queryset.filter(dataset=self.value()) if self.value() else queryset


def _score(value) -> str:
    """A quality score as stored (1.0, 0.75; — for unscored): the same digits as the change pages."""
    return "—" if value is None else str(value)


def _utc(instant) -> str:
    """``2024-03-01 14:30Z`` (seconds when there are any): short, unambiguous, sortable."""
    if instant is None:
        return "—"
    instant = instant.astimezone(UTC)
    return instant.strftime("%Y-%m-%d %H:%M:%SZ" if instant.second or instant.microsecond else "%Y-%m-%d %H:%MZ")


def _row_url(obj) -> str:
    """The admin page of the dataset row an audit entry or a flag is about."""
    opts = DATASETS[obj.dataset].model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.row_id])


class ReadOnlyAdmin(ReadOnlyModelAdmin):
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    def get_search_results(self, request, queryset, search_term):
        terms = [t.strip() for t in search_term.replace(" ", ",").split(",") if t.strip()]
        return (queryset.filter(symbol__in=terms) if terms else queryset), False

    # compact columns (ISO UTC instants, one "row" column) so the reason column keeps its width at
    # 1,400 px beside the sidebar and the filter (templates/admin/timeseries/curation_change_list.html)
    change_list_template = "admin/timeseries/curation_change_list.html"

    @admin.display(description="row")
    def row_link(self, obj):
        url = _row_url(obj)
        return format_html('<a href="{}">#{}</a>', url, obj.row_id)

    @admin.display(description="row", ordering="time")
    def row_shown(self, obj):
        url = _row_url(obj)
        return format_html(
            '<a href="{}" title="row #{}">{} {}</a><br><span class="quiet">{} #{}</span>',
            url,
            obj.row_id,
            obj.symbol,
            _utc(obj.time),
            obj.dataset,
            obj.row_id,
        )


@admin.register(models.QualityAudit)
class QualityAuditAdmin(ReadOnlyAdmin):
    """Every curation: who, when, which row, old and new score, why. Read-only."""

    list_display = ("changed", "row_shown", "score_change", "who", "reason")
    list_display_links = ("changed",)
    list_filter = (CuratedDatasetFilter,)
    list_select_related = ("user",)
    search_fields = ("symbol",)
    search_help_text = "Exact symbol(s), comma-separated."
    more_filters: tuple[str, ...] = ()  # the dataset's own columns to filter by (action_type, exchange)
    ordering = ("-changed_at", "-id")

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        batch = request.GET.get("batch")
        if batch:
            try:
                queryset = queryset.filter(batch=batch)
            except Exception:  # noqa: BLE001 - a malformed uuid: show nothing rather than everything
                queryset = queryset.none()
        return queryset

    @admin.display(description="changed at", ordering="changed_at")
    def changed(self, obj):
        return _utc(obj.changed_at)

    @admin.display(description="by", ordering="source")
    def who(self, obj):
        return str(obj.user) if obj.user_id else obj.source

    @admin.display(description="score")
    def score_change(self, obj):
        return f"{_score(obj.old_score)} → {_score(obj.new_score)}"

    def lookup_allowed(self, lookup, value, request=None):
        return lookup == "batch" or super().lookup_allowed(lookup, value, request)


@admin.register(models.QualityFlag)
class QualityFlagAdmin(ReadOnlyAdmin):
    """What the automatic checks found; the per-symbol-day report."""

    list_display = ("created", "row_shown", "check_shown", "reason", "report")
    list_display_links = ("created",)
    list_filter = (CuratedDatasetFilter,)
    search_fields = ("symbol",)
    search_help_text = "Exact symbol(s), comma-separated."
    more_filters: tuple[str, ...] = ()  # the dataset's own columns to filter by (action_type, exchange)
    ordering = ("-created_at", "-id")
    actions = ("accept_proposals",)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.concrete_fields]

    def has_accept_permission(self, request) -> bool:
        """Accepting proposals changes scores: view on the flags and change on a curated dataset."""
        return self.has_view_permission(request) and any(
            request.user.has_perm(dataset_permission(name, "change")) for name in quality.CURATED_DATASETS
        )

    @admin.action(description="Accept the proposed scores (audited as yours)", permissions=["accept"])
    def accept_proposals(self, request, queryset):
        missing = sorted(
            dataset_permission(name, "change")
            for name in set(queryset.values_list("dataset", flat=True).distinct())
            if not request.user.has_perm(dataset_permission(name, "change"))
        )
        if missing:
            messages.error(
                request,
                "Nothing accepted: the selection includes flags of datasets you may not change"
                f" ({', '.join(missing)}).",
            )
            return
        changed = quality.quality_flags_accept(flags=queryset, user=request.user)
        messages.success(request, f"Proposed scores accepted: {changed} row(s) changed.")

    @admin.display(description="created at", ordering="created_at")
    def created(self, obj):
        return _utc(obj.created_at)

    @admin.display(description="check", ordering="check_name")
    def check_shown(self, obj):  # not "check": that is ModelAdmin's system-check hook
        if obj.proposed_score is None:
            return obj.check_name
        return f"{obj.check_name} → {obj.proposed_score:g} ({'applied' if obj.applied else 'proposed'})"

    @admin.display(description="report")
    def report(self, obj):
        url = reverse("admin:timeseries_qualityflag_report")
        query = urlencode({"dataset": obj.dataset, "symbol": obj.symbol, "day": obj.time.date().isoformat()})
        return format_html(
            '<a href="{}?{}" title="quality report of {} on {}">report</a>', url, query, obj.symbol, obj.time.date()
        )

    def get_urls(self):
        urls = [path("report/", self.admin_site.admin_view(self.report_view), name="timeseries_qualityflag_report")]
        return urls + super().get_urls()

    def report_view(self, request):
        """Quality report for one symbol and (UTC) day: flags with reasons and the audit of curations.

        Needs the view permission of both models it shows: timeseries.view_qualityflag and
        timeseries.view_qualityaudit."""
        if not may_open_quality_report(self.admin_site, request):
            raise PermissionDenied
        dataset = request.GET.get("dataset") or "market_data"
        symbol = (request.GET.get("symbol") or "").strip()
        error, report, day = None, None, None
        raw_day = (request.GET.get("day") or "").strip()
        try:
            quality.curated_spec(dataset)
            try:
                day = date.fromisoformat(raw_day)
            except ValueError:
                raise quality.CurationError(f"day={raw_day[:32]!r} is not a date (YYYY-MM-DD)") from None
            if not symbol:
                raise quality.CurationError("symbol is required")
            report = quality.quality_report(dataset=dataset, symbol=symbol, day=day)
        except quality.CurationError as exc:
            error = str(exc) if request.GET else None  # the empty form is not an error
        context = {
            **self.admin_site.each_context(request),
            "title": f"Quality report {symbol} {day or ''}".strip(),
            "opts": self.model._meta,
            "datasets": quality.CURATED_DATASETS,
            "dataset": dataset,
            "symbol": symbol,
            "day": request.GET.get("day", ""),
            "report": report,
            "error": error,
        }
        return TemplateResponse(request, "admin/timeseries/quality_report.html", context)
