"""The TimescaleDB lane's ``id`` index (migration 0003) becomes non-unique: ``(id)``, not UNIQUE ``(id, time)``.

An INSERT into a compressed chunk checks every unique index by decompressing the batches that could
hold a conflicting row, and with two unique indexes TimescaleDB filters batches only on the columns
the two share — ``time`` alone. A one-bar correction then decompressed the batches of *every* symbol
around that minute (380k rows on 400 symbols), and past ``timescaledb.max_tuples_decompressed_per_dml_transaction``
(100k) the merge failed. ``id`` comes from an identity sequence the loader never writes, so its
uniqueness needs no index; lookups by id keep one (and compressed chunks a bloom filter on it).
"""
from django.db import migrations

TABLES = ("market_data", "news_events", "insider_trades", "social_sentiment", "government_events")


def _hypertables(cur) -> list[str]:
    cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
    if cur.fetchone() is None:
        return []
    cur.execute("SELECT hypertable_name FROM timescaledb_information.hypertables WHERE hypertable_name = ANY(%s)", [list(TABLES)])
    return [table for (table,) in cur.fetchall()]


def id_index_nonunique(apps, schema_editor):
    with schema_editor.connection.cursor() as cur:
        for table in _hypertables(cur):
            cur.execute(f'CREATE INDEX IF NOT EXISTS "{table}_id" ON "{table}" (id)')
            cur.execute(f'DROP INDEX IF EXISTS "{table}_id_time"')


def id_index_unique(apps, schema_editor):
    with schema_editor.connection.cursor() as cur:
        for table in _hypertables(cur):
            cur.execute(f'CREATE UNIQUE INDEX IF NOT EXISTS "{table}_id_time" ON "{table}" (id, time)')
            cur.execute(f'DROP INDEX IF EXISTS "{table}_id"')


class Migration(migrations.Migration):
    dependencies = [("timeseries", "0007_lifecycle")]
    operations = [migrations.RunPython(id_index_nonunique, id_index_unique)]
