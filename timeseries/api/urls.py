"""/api/v1/: dataset listings, point-in-time endpoints, the OpenAPI schema and its documentation pages."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from timeseries.api import views

app_name = "api-v1"

urlpatterns = [
    # browse the raw store (every version; as_of=T for the versions current at T)
    path("market-data/", views.MarketDataList.as_view(), name="market-data"),
    path("news/", views.NewsList.as_view(), name="news"),
    path("insider-trades/", views.InsiderTradeList.as_view(), name="insider-trades"),
    path("sentiment/", views.SentimentList.as_view(), name="sentiment"),
    path("government-events/", views.GovernmentEventList.as_view(), name="government-events"),
    path("securities/", views.SecurityList.as_view(), name="securities"),
    path("corporate-actions/", views.CorporateActionList.as_view(), name="corporate-actions"),
    # point in time
    path("state/", views.StateView.as_view(), name="state"),
    path("news/before/", views.NewsBeforeView.as_view(), name="news-before"),
    path("insider-trades/before/", views.InsiderTradesBeforeView.as_view(), name="insider-trades-before"),
    path("sentiment/before/", views.SentimentBeforeView.as_view(), name="sentiment-before"),
    path("government-events/before/", views.GovernmentEventsBeforeView.as_view(), name="government-events-before"),
    path("securities/at/", views.SecuritiesView.as_view(), name="securities-at"),
    path("corporate-actions/before/", views.CorporateActionsBeforeView.as_view(), name="corporate-actions-before"),
    path("reconstruct/<path:symbol>/", views.ReconstructView.as_view(), name="reconstruct"),
    path("asof-join/", views.AsofJoinView.as_view(), name="asof-join"),
    # schema and Swagger UI (assets served locally by drf-spectacular-sidecar; Redoc's page pulls web fonts
    # from another host, so it is not offered)
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-v1:schema"), name="docs"),
]
