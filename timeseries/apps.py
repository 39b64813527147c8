from django.apps import AppConfig


class TimeseriesConfig(AppConfig):
    name = "timeseries"
    default_auto_field = "django.db.models.BigAutoField"
