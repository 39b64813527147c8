"""Placeholder in the migration chain: filled in by its feature's work (hand-written operations)."""
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("timeseries", "0004_changes")]
    operations = []
