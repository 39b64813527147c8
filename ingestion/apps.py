from django.apps import AppConfig


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
