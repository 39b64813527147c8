"""Browser pages: the timeline (timeseries/views) and a login page for users who are not staff."""
from django.contrib.auth import views as auth_views
from django.urls import path

from timeseries import views

urlpatterns = [
    path("timeline/", views.timeline_overview, name="timeline-overview"),
    path("timeline/assets/<str:name>", views.asset, name="timeline-asset"),
    path("timeline/<str:symbol>/", views.timeline_symbol, name="timeline-symbol"),
    path("accounts/login/", auth_views.LoginView.as_view(template_name="timeseries/login.html", next_page="timeline-overview"), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="login"), name="logout"),
]
