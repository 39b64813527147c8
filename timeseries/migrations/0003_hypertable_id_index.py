"""On the TimescaleDB lane django-timescaledb drops each dataset's ``id`` primary key before
create_hypertable. Give ``id`` back an index there (unique with ``time``, as hypertables require) so
the admin's and audit trails' lookups by id do not scan every chunk. Plain tables keep their pkey.
"""
from django.db import migrations

TABLES = ("market_data", "news_events", "insider_trades", "social_sentiment", "government_events")


def add_id_indexes(apps, schema_editor):
    with schema_editor.connection.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
        if cur.fetchone() is None:
            return
        cur.execute("SELECT hypertable_name FROM timescaledb_information.hypertables WHERE hypertable_name = ANY(%s)", [list(TABLES)])
        for (table,) in cur.fetchall():
            cur.execute(f'CREATE UNIQUE INDEX IF NOT EXISTS "{table}_id_time" ON "{table}" (id, time)')


def drop_id_indexes(apps, schema_editor):
    with schema_editor.connection.cursor() as cur:
        for table in TABLES:
            cur.execute(f'DROP INDEX IF EXISTS "{table}_id_time"')


class Migration(migrations.Migration):
    dependencies = [("timeseries", "0002_generations_tokens")]
    operations = [migrations.RunPython(add_id_indexes, drop_id_indexes)]
