"""The InfluxDB backup's status row per dataset (ingestion.influx)."""
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("ingestion", "0004_batch_payload_lz4")]
    operations = [
        migrations.CreateModel(
            name="InfluxBackupState",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("dataset", models.CharField(max_length=32, unique=True)),
                ("last_run_at", models.DateTimeField(blank=True, null=True)),
                ("last_success_at", models.DateTimeField(blank=True, help_text="last run that sent everything pending", null=True)),
                ("last_error", models.TextField(blank=True, default="")),
                ("last_error_at", models.DateTimeField(blank=True, null=True)),
                ("points_sent", models.BigIntegerField(default=0, help_text="points acknowledged by InfluxDB (re-sends included)")),
                ("changes_done", models.BigIntegerField(default=0, help_text="change-log rows consumed")),
            ],
            options={"verbose_name": "InfluxDB backup", "verbose_name_plural": "InfluxDB backup"},
        ),
    ]
