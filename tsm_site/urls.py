from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

admin.site.site_url = "/timeline/"  # the admin's "View site" link opens the timeline

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("ingestion.urls")),  # buffered write API
    path("api/v1/", include("timeseries.api.urls")),  # read API, schema at api/v1/schema/, docs at api/v1/docs/
    path("", include("timeseries.urls_pages")),  # timeline pages (/timeline/), login for non-staff readers
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
