"""Aggregates (timeseries/aggregates.py): the rollup tables on both lanes; on the TimescaleDB lane also
the continuous aggregates daily_ohlcv and hourly_sentiment with their refresh policies.

Not atomic: creating and refreshing a continuous aggregate cannot run inside a transaction. Every
step is idempotent, so a migration interrupted half-way can simply be run again. The rollups are
built by the consumer's first run (no ``timeseries_rollup_state`` row yet: it rebuilds everything,
including data loaded before the change log existed); until then every bucket is read live.
"""
from django.db import migrations, models
from psycopg import sql


def install(apps, schema_editor):
    from timeseries import aggregates
    from timeseries.capabilities import capabilities

    capabilities(fresh=True)
    with schema_editor.connection.cursor() as cur:
        aggregates.aggregates_install(cur=cur)


def uninstall(apps, schema_editor):
    from timeseries import aggregates

    with schema_editor.connection.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
        if cur.fetchone() is not None:
            for agg in aggregates.AGGREGATES.values():
                cur.execute(sql.SQL("DROP MATERIALIZED VIEW IF EXISTS {} CASCADE").format(sql.Identifier(agg.cagg)))
        cur.execute("DELETE FROM timeseries_change_cursor WHERE consumer = %s", [aggregates.CONSUMER])


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("timeseries", "0005_curation")]
    operations = [
        migrations.CreateModel(
            name='DailyOhlcvRollup',
            fields=[
                ('pk', models.CompositePrimaryKey('symbol', 'bucket', blank=True, editable=False, primary_key=True, serialize=False)),
                ('symbol', models.CharField(max_length=32)),
                ('bucket', models.DateTimeField(help_text='UTC day start')),
                ('open', models.DecimalField(decimal_places=6, max_digits=18, null=True)),
                ('high', models.DecimalField(decimal_places=6, max_digits=18, null=True)),
                ('low', models.DecimalField(decimal_places=6, max_digits=18, null=True)),
                ('close', models.DecimalField(decimal_places=6, max_digits=18, null=True)),
                ('volume', models.DecimalField(decimal_places=0, max_digits=38, null=True)),
                ('pv', models.DecimalField(decimal_places=6, help_text='sum(vwap x volume)', max_digits=50, null=True)),
                ('pv_volume', models.DecimalField(decimal_places=0, help_text='volume of bars with a vwap', max_digits=38, null=True)),
                ('bars', models.IntegerField()),
                ('versions', models.IntegerField(help_text='versions in the bucket (all keys)')),
                ('max_known_at', models.DateTimeField()),
                ('max_recorded_at', models.DateTimeField()),
            ],
            options={
                'db_table': 'timeseries_rollup_daily_ohlcv',
            },
        ),
        migrations.CreateModel(
            name='HourlySentimentRollup',
            fields=[
                ('pk', models.CompositePrimaryKey('symbol', 'bucket', blank=True, editable=False, primary_key=True, serialize=False)),
                ('symbol', models.CharField(max_length=32)),
                ('bucket', models.DateTimeField(help_text='hour start')),
                ('platforms', models.IntegerField()),
                ('mentions', models.DecimalField(decimal_places=0, max_digits=38, null=True)),
                ('weighted', models.FloatField(help_text='sum(sentiment_avg x mention_count)', null=True)),
                ('weight', models.DecimalField(decimal_places=0, help_text='mentions with a sentiment', max_digits=38, null=True)),
                ('versions', models.IntegerField()),
                ('max_known_at', models.DateTimeField()),
                ('max_recorded_at', models.DateTimeField()),
            ],
            options={
                'db_table': 'timeseries_rollup_hourly_sentiment',
            },
        ),
        migrations.CreateModel(
            name="RollupState",
            fields=[
                ("dataset", models.CharField(max_length=32, primary_key=True, serialize=False)),
                ("built_at", models.DateTimeField(auto_now=True)),
            ],
            options={"db_table": "timeseries_rollup_state"},
        ),
        migrations.RunPython(install, uninstall),
    ]
