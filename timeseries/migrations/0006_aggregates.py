"""Aggregates (timeseries/aggregates.py): rollup tables on both lanes; on the TimescaleDB lane also the
continuous aggregates daily_ohlcv and hourly_sentiment with refresh policies.

Not atomic: creating and refreshing a continuous aggregate cannot run inside a transaction. Every
step is idempotent, so a migration interrupted half-way can simply be run again. Data loaded before
the change log existed is rolled up here (``rollups_rebuild``); on an empty database that is a no-op.
"""
from django.db import migrations


def install(apps, schema_editor):
    from timeseries import aggregates
    from timeseries.capabilities import capabilities

    capabilities(fresh=True)
    with schema_editor.connection.cursor() as cur:
        aggregates.aggregates_install(cur=cur)
    for dataset in aggregates.BY_DATASET:
        aggregates.rollups_rebuild(dataset=dataset)


def uninstall(apps, schema_editor):
    from timeseries import aggregates

    with schema_editor.connection.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
        tsdb = cur.fetchone() is not None
        for agg in aggregates.AGGREGATES.values():
            if tsdb:
                cur.execute(f"DROP MATERIALIZED VIEW IF EXISTS {agg.cagg} CASCADE")
            cur.execute(f"DROP TABLE IF EXISTS {agg.rollup_table}")
        cur.execute("DELETE FROM timeseries_change_cursor WHERE consumer = %s", [aggregates.CONSUMER])


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("timeseries", "0005_curation")]
    operations = [migrations.RunPython(install, uninstall)]
