"""Load: content digest, series spans and change-log watermark for the replay shortcut (ingestion.loader)."""
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("ingestion", "0005_influx_backup")]
    operations = [
        migrations.AddField(
            model_name="load",
            name="content_sha256",
            field=models.CharField(blank=True, default="", help_text="sha256 of the input bytes as read (compressed if gzip)", max_length=64),
        ),
        migrations.AddField(
            model_name="load",
            name="content_bytes",
            field=models.BigIntegerField(blank=True, help_text="size of the input in bytes", null=True),
        ),
        migrations.AddField(
            model_name="load",
            name="replay_key",
            field=models.CharField(blank=True, db_index=True, default="", help_text="sha256 of content + dataset + bar interval + on_error + format + rules version", max_length=64),
        ),
        migrations.AddField(
            model_name="load",
            name="replay_spans",
            field=models.JSONField(blank=True, help_text="per series [symbol, subkey, first_time, last_time] the load covered", null=True),
        ),
        migrations.AddField(
            model_name="load",
            name="change_watermark",
            field=models.BigIntegerField(blank=True, help_text="last change-log id of the dataset when the load finished", null=True),
        ),
        migrations.AddField(
            model_name="load",
            name="replay_of",
            field=models.ForeignKey(blank=True, help_text="set when the replay shortcut was taken: the earlier load with the same content", null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to="ingestion.load"),
        ),
        migrations.AddField(
            model_name="load",
            name="replay_note",
            field=models.TextField(blank=True, default="", help_text="why the replay shortcut was or was not taken"),
        ),
    ]
