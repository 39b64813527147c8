"""Lifecycle policies (TimescaleDB lane): compression layout, compression and retention policies.

Does nothing on the plain PostgreSQL lane (retention there is the Celery beat task
``timeseries.tasks.retention_run``). Intervals come from settings (TSM_COMPRESS_AFTER,
TSM_RETENTION); after changing them run ``manage.py lifecycle_apply``.
"""
from django.db import migrations


def apply(apps, schema_editor):
    from timeseries.lifecycle import lifecycle_apply

    lifecycle_apply()


def remove(apps, schema_editor):
    from timeseries.lifecycle import lifecycle_remove

    lifecycle_remove()


class Migration(migrations.Migration):
    dependencies = [("timeseries", "0006_aggregates")]
    operations = [migrations.RunPython(apply, remove)]
