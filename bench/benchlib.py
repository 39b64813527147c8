"""What every bench script needs before it measures: Django pointed at the bench's own database
(created and migrated when missing), stdout kept for the one JSON answer, and a raw SQL helper."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    """Progress on stderr, timestamped (stdout carries only the JSON answer)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def django_up(database_url: str, **env: str) -> None:
    """Set up Django on ``database_url`` (extra environment in ``env``), creating and migrating it."""
    os.environ.update(DATABASE_URL=database_url, DJANGO_SETTINGS_MODULE="tsm_site.settings", **env)
    os.environ.setdefault("DEBUG", "false")  # no query logging in the timed code
    os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("ensure_database", stdout=sys.stderr)  # stdout carries only the JSON answer
    call_command("migrate", verbosity=0, interactive=False)


def sql_rows(query: str, params=None) -> list[tuple]:
    """Run one statement on Django's connection; its rows (none for a statement without a result)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description else []


# the server settings the figures depend on (bin/pg-tune sets the first six; the rest are context)
PG_SETTINGS = ("shared_buffers", "effective_cache_size", "max_wal_size", "checkpoint_timeout", "wal_buffers",
               "maintenance_work_mem", "work_mem", "synchronous_commit", "wal_level", "max_parallel_workers_per_gather",
               "random_page_cost", "jit", "autovacuum", "shared_preload_libraries")


def pg_environment() -> dict:
    """The server's version and the settings in PG_SETTINGS, for the JSON answer."""
    return {"postgresql": sql_rows("SELECT version()")[0][0],
            "pg_settings": {n: sql_rows(f"SHOW {n}")[0][0] for n in PG_SETTINGS}}
