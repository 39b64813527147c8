from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("ingestion.urls")),  # buffered write API
    path("api/v1/", include("timeseries.api.urls")),  # read API, schema at api/v1/schema/, docs at api/v1/docs/
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
