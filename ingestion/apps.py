from django.apps import AppConfig
from django.conf import settings
from django.core import checks

from timeseries.datasets import DATASETS
from timeseries.rules import feed_problem


def feed_precedence_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Every feed TSM_FEED_PRECEDENCE ranks is a feed name a load can carry (a misspelt one would
    silently rank nothing), once per dataset, for a dataset that exists."""
    errors = []
    for dataset, feeds in settings.TSM_FEED_PRECEDENCE.items():
        variable = f"TSM_FEED_PRECEDENCE_{str(dataset).upper()}"
        if dataset not in DATASETS:
            errors.append(
                checks.Error(
                    f"TSM_FEED_PRECEDENCE ranks feeds for {dataset!r}, which is not a dataset",
                    hint=f"datasets: {', '.join(DATASETS)}",
                    id="ingestion.E001",
                )
            )
            continue
        for feed in feeds:
            problem = feed_problem(feed) if isinstance(feed, str) and feed else f"{feed!r} is not a feed name"
            if problem:
                errors.append(
                    checks.Error(
                        f"{variable}: {problem}",
                        hint=f"{variable} is a comma-separated list of feed names, highest rank first",
                        id="ingestion.E002",
                    )
                )
        repeated = sorted({f for f in feeds if list(feeds).count(f) > 1}, key=str)
        if repeated:
            errors.append(
                checks.Error(
                    f"{variable} names {', '.join(map(repr, repeated))} more than once",
                    id="ingestion.E003",
                )
            )
    return errors


class IngestionConfig(AppConfig):
    name = "ingestion"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # app loading: these import models, which exist only once the app registry is ready
        from ingestion import influx
        from timeseries.lifecycle import backup_source_register

        backup_source_register(
            influx.backup_status
        )  # the storage report's backup section (timeseries never imports ingestion)
        checks.register(feed_precedence_check)
