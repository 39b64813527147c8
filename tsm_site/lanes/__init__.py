"""Which storage lane is live: plain PostgreSQL or TimescaleDB (docs/architecture.md, "Storage lanes").

django-timescaledb's backend runs ``CREATE EXTENSION timescaledb`` before migrating and fails where
the extension is missing or not preloaded, so the engine is chosen by asking the server, never
hard-wired. ``TSM_TIMESCALEDB=on`` forces it, ``off`` never uses it, ``auto`` probes — once, when
the process opens its first database connection, never at settings import: settings name
``AUTO_ENGINE`` (this package), whose ``base.DatabaseWrapper`` probes and then writes the engine it
chose back into the connection's settings (``tsm_site/lanes/base.py``).
At run time, ``timeseries.capabilities`` reports what the connected database can do.
"""

from __future__ import annotations

import logging

import psycopg

PLAIN_ENGINE = "django.db.backends.postgresql"
TIMESCALE_ENGINE = "timescale.db.backends.postgresql"
AUTO_ENGINE = "tsm_site.lanes"  # TSM_TIMESCALEDB=auto: resolved to one of the two on first connection

logger = logging.getLogger(__name__)

PROBE_SQL = """
SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
   AND current_setting('shared_preload_libraries') LIKE '%timescaledb%'
"""


def server_can_load_timescaledb(db: dict) -> bool:
    """True when the server has the extension installed and preloaded. False if unreachable."""
    try:
        with psycopg.connect(
            host=db.get("HOST") or None,
            port=db.get("PORT") or None,
            user=db.get("USER") or None,
            password=db.get("PASSWORD") or None,
            dbname="postgres",
            connect_timeout=3,
        ) as conn:
            row = conn.execute(PROBE_SQL).fetchone()  # no parameters: its % are literal
            return bool(row and row[0])
    except psycopg.Error as exc:
        logger.warning("could not probe for TimescaleDB (%s); using plain PostgreSQL", exc)
        return False


def choose_engine(db: dict, mode: str) -> str:
    """The engine for ``mode`` (TSM_TIMESCALEDB); ``auto`` asks the server now."""
    if mode == "on":
        return TIMESCALE_ENGINE
    if mode == "off":
        return PLAIN_ENGINE
    return TIMESCALE_ENGINE if server_can_load_timescaledb(db) else PLAIN_ENGINE


def engine_setting(mode: str) -> str:
    """What settings.py puts in DATABASES["default"]["ENGINE"]: the engine itself for ``on``/``off``,
    ``AUTO_ENGINE`` for ``auto`` (no connection at settings import)."""
    return AUTO_ENGINE if mode == "auto" else choose_engine({}, mode)
