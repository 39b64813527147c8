"""What every bench needs before it measures: Django pointed at the bench's own database (created and
migrated when missing), raw SQL on Django's connection, and what the figures were measured on."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository (bench/lib/ -> bench/ -> root)
BENCH_SECRET = "bench-only-not-a-secret"


def local_url(database: str) -> str:
    """A database of the local PostgreSQL (trust, user postgres)."""
    return f"postgres://postgres@127.0.0.1:5432/{database}"


def bench_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a bench process or of a server / worker it starts: this process's environment,
    ``DATABASE_URL`` forced to the bench's database, ``DEBUG`` off unless set (no query logging in the
    timed code), a throw-away ``SECRET_KEY`` unless set; ``extra`` last (it wins)."""
    env = dict(os.environ, DATABASE_URL=database_url, DJANGO_SETTINGS_MODULE="tsm_site.settings")
    env.setdefault("DEBUG", "false")
    if not env.get("SECRET_KEY"):
        env["SECRET_KEY"] = BENCH_SECRET
    env.update(extra)
    return env


def django_up(database_url: str, *, ensure: bool = True, migrate: bool = True, **env: str) -> None:
    """Set up Django in this process on ``database_url`` (extra environment in ``env``): creates the
    database when missing (``ensure``) and migrates it (``migrate``)."""
    os.environ.update(bench_env(database_url, **env))
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    if ensure:
        call_command("ensure_database", stdout=sys.stderr)  # stdout carries only the JSON answer
    if migrate:
        call_command("migrate", verbosity=0, interactive=False)


def sql_rows(query: str, params=None) -> list[tuple]:
    """Run one statement on Django's connection; its rows (none for a statement without a result)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description else []


# the server settings the figures depend on (bin/pg-tune sets the first six; the rest are context)
PG_SETTINGS = (
    "shared_buffers",
    "effective_cache_size",
    "max_wal_size",
    "checkpoint_timeout",
    "wal_buffers",
    "maintenance_work_mem",
    "work_mem",
    "synchronous_commit",
    "wal_level",
    "max_parallel_workers_per_gather",
    "random_page_cost",
    "jit",
    "autovacuum",
    "shared_preload_libraries",
)


def pg_environment() -> dict:
    """The server's version and the settings in PG_SETTINGS, for the JSON answer."""
    return {
        "postgresql": sql_rows("SELECT version()")[0][0],
        "pg_settings": {n: sql_rows(f"SHOW {n}")[0][0] for n in PG_SETTINGS},
    }


def environment(*, engine: bool = True) -> dict:
    """What the figures were measured on: PostgreSQL version and settings, the storage engine (plain
    PostgreSQL or the TimescaleDB lane), cores, Python, the load average at the start."""
    from django.conf import settings

    return {
        **pg_environment(),
        **({"engine": settings.DATABASES["default"]["ENGINE"]} if engine else {}),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_average_at_start": os.getloadavg(),
    }
