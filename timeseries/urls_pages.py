"""Browser pages: the timeline (timeseries/views) and a login page for users who are not staff."""

from django.contrib.auth import views as auth_views
from django.urls import path, re_path

from timeseries import views

urlpatterns = [
    path("timeline/", views.timeline_overview, name="timeline-overview"),
    # every path under assets/ not ending in / is an asset (an unknown one is 404, never a redirect to a
    # symbol page); a symbol may hold / (BRK/B, EUR/USD): the symbol rule (timeseries/rules.py) is
    # checked by the view, which answers 400 naming it
    re_path(r"^timeline/assets/(?P<name>.*[^/])$", views.asset, name="timeline-asset"),
    path("timeline/<path:symbol>/", views.timeline_symbol, name="timeline-symbol"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="timeseries/login.html", next_page="timeline-overview"),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="login"), name="logout"),
]
