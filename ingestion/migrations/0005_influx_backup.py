"""Placeholder in the migration chain: filled in by its feature's work (hand-written operations)."""
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("ingestion", "0004_batch_payload_lz4")]
    operations = []
