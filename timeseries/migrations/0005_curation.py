"""Curation (issue #6 part B): quality audit and flags, news quality_score, admin indexes on market_data.

* ``news_events.quality_score`` (nullable: NULL = not scored, kept by ``min_quality``).
* ``QualityAudit`` / ``QualityFlag`` (timeseries/quality/ writes them).
* ``market_data``: an index on ``time`` so the admin changelist (newest first, optionally a time or
  known_at range) walks an index instead of sorting 50M rows; the TimescaleDB lane already has one
  (the hypertable's default ``time DESC`` index), so it is created only where no index leads with
  ``time``. A small partial index on the suspect rows (score < 1) serves quality-range filters.
"""
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

TIME_INDEX_EXISTS = """
SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE i.indrelid = 'market_data'::regclass AND a.attname = 'time'
"""


def time_index_create(apps, schema_editor):
    with schema_editor.connection.cursor() as cur:
        cur.execute(TIME_INDEX_EXISTS)
        if cur.fetchone() is None:
            cur.execute("CREATE INDEX market_data_time ON market_data (time)")


def time_index_drop(apps, schema_editor):
    schema_editor.execute("DROP INDEX IF EXISTS market_data_time")


class Migration(migrations.Migration):
    dependencies = [
        ("timeseries", "0004_changes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]
    operations = [
        migrations.AddField(
            model_name="newsevent",
            name="quality_score",
            field=models.FloatField(blank=True, help_text="NULL: not scored (kept by min_quality)", null=True),
        ),
        migrations.CreateModel(
            name="QualityFlag",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("dataset", models.CharField(max_length=32)),
                ("row_id", models.BigIntegerField()),
                ("symbol", models.CharField(max_length=32)),
                ("time", models.DateTimeField()),
                ("check_name", models.CharField(max_length=32)),
                ("reason", models.TextField()),
                ("proposed_score", models.FloatField(blank=True, null=True)),
                ("applied", models.BooleanField(default=False)),
                ("created_at", models.DateTimeField()),
            ],
            options={
                "db_table": "timeseries_quality_flag",
                "indexes": [models.Index(fields=["dataset", "symbol", "time"], name="quality_flag_symbol_time")],
                "constraints": [
                    models.UniqueConstraint(fields=("dataset", "row_id", "check_name"), name="quality_flag_unique")
                ],
            },
        ),
        migrations.CreateModel(
            name="QualityAudit",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("dataset", models.CharField(max_length=32)),
                ("row_id", models.BigIntegerField(help_text="id of the version row whose score changed")),
                ("symbol", models.CharField(max_length=32)),
                ("time", models.DateTimeField(help_text="event time of the row")),
                ("known_at", models.DateTimeField()),
                ("recorded_at", models.DateTimeField()),
                ("old_score", models.FloatField(blank=True, null=True)),
                ("new_score", models.FloatField(blank=True, null=True)),
                ("reason", models.TextField()),
                ("source", models.CharField(help_text='"user" or the name of the automatic check', max_length=64)),
                ("changed_at", models.DateTimeField()),
                ("batch", models.UUIDField(help_text="one curation action (all rows changed together)")),
                (
                    "user",
                    models.ForeignKey(
                        blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name": "quality audit entry",
                "verbose_name_plural": "quality audit",
                "db_table": "timeseries_quality_audit",
                "indexes": [
                    models.Index(fields=["dataset", "row_id", "changed_at"], name="quality_audit_row"),
                    models.Index(fields=["dataset", "symbol", "time"], name="quality_audit_symbol_time"),
                    models.Index(fields=["changed_at"], name="quality_audit_changed_at"),
                    models.Index(fields=["batch"], name="quality_audit_batch"),
                ],
            },
        ),
        migrations.RunPython(time_index_create, time_index_drop),
        migrations.RunSQL(
            "CREATE INDEX market_data_suspect ON market_data (time) WHERE quality_score < 1",
            "DROP INDEX IF EXISTS market_data_suspect",
        ),
    ]
