"""Admin over the datasets: thin, and safe on tables with tens of millions of rows.

No full COUNT (an estimate from the planner's statistics instead), no DISTINCT-based filters,
filters and ordering that follow the version index. Curation features arrive with their own issue.
"""
from __future__ import annotations

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection
from django.utils.functional import cached_property

from timeseries import admin_storage  # noqa: F401  (admin page "Storage report")
from timeseries import models
from timeseries.datasets import DATASETS


class EstimatedCountPaginator(Paginator):
    """Uses pg_class.reltuples for unfiltered lists and caps filtered counts instead of COUNT(*)."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        query = self.object_list.query
        if not query.where:
            with connection.cursor() as cur:
                cur.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [self.object_list.model._meta.db_table])
                row = cur.fetchone()
            if row and row[0] > self.CAP:
                return int(row[0])
        return self.object_list.order_by()[: self.CAP + 1].count()


class TimeSeriesAdmin(admin.ModelAdmin):
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 100
    readonly_fields = ("known_at", "recorded_at")

    def get_search_fields(self, request):
        spec = DATASETS[self.model._meta.db_table]
        return (f"={spec.symbol_column}",)


def _register(model, columns: tuple[str, ...]) -> None:
    attrs = {"list_display": (*columns, "known_at", "recorded_at"), "ordering": ("-time",)}
    admin.site.register(model, type(f"{model.__name__}Admin", (TimeSeriesAdmin,), attrs))


_register(models.MarketData, ("time", "symbol", "open", "high", "low", "close", "volume", "quality_score"))
_register(models.NewsEvent, ("time", "symbol", "title", "source", "impact_score"))
_register(models.InsiderTrade, ("time", "symbol", "insider_name", "transaction_type", "shares", "value", "filing_date", "form_type"))
_register(models.SocialSentiment, ("time", "symbol", "platform", "mention_count", "sentiment_avg"))
_register(models.GovernmentEvent, ("time", "event_type", "primary_symbol", "amount", "confidence"))


@admin.register(models.Symbol)
class SymbolAdmin(admin.ModelAdmin):
    list_display = ("symbol", "name", "sector", "exchange", "listed_on", "delisted_on")
    search_fields = ("symbol", "name")


@admin.register(models.Series)
class SeriesAdmin(admin.ModelAdmin):
    list_display = ("dataset", "symbol", "subkey", "first_time", "last_time")
    list_filter = ("dataset",)
    search_fields = ("=symbol",)
