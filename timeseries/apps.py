from django.apps import AppConfig
from django.conf import settings
from django.core import checks

from timeseries.calendars import exchange_problem


def default_exchange_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """TSM_DEFAULT_EXCHANGE names a calendar of the exchange-calendars package (a misspelt one would
    fail the first quality check or session read instead of start-up)."""
    problem = exchange_problem(settings.TSM_DEFAULT_EXCHANGE)
    if problem is None:
        return []
    return [
        checks.Error(
            f"TSM_DEFAULT_EXCHANGE: {problem}",
            hint="set TSM_DEFAULT_EXCHANGE to an exchange calendar name such as XNYS (docs/calendars.md)",
            id="timeseries.E001",
        )
    ]


class TimeseriesConfig(AppConfig):
    name = "timeseries"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        checks.register(default_exchange_check)
