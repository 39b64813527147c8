"""What the connected database can do: the one place the rest of the code asks.

See docs/architecture.md, "Storage lanes".
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from django.db import connection

from timeseries.datasets import DATASETS


@dataclass(frozen=True)
class Capabilities:
    timescaledb: bool
    timescaledb_version: str | None
    hypertables: frozenset[str]

    @property
    def lane(self) -> str:
        return "timescaledb" if self.timescaledb else "postgresql"

    @property
    def continuous_aggregates(self) -> bool:
        return self.timescaledb

    @property
    def compression(self) -> bool:
        return self.timescaledb


def _probe() -> Capabilities:
    with connection.cursor() as cur:
        cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
        row = cur.fetchone()
        hypertables: frozenset[str] = frozenset()
        if row:
            cur.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")
            hypertables = frozenset(r[0] for r in cur.fetchall()) & {d.table for d in DATASETS.values()}
    return Capabilities(
        timescaledb=row is not None, timescaledb_version=row[0] if row else None, hypertables=hypertables
    )


@lru_cache(maxsize=1)
def _cached(alias_key: str) -> Capabilities:
    return _probe()


def capabilities(*, fresh: bool = False) -> Capabilities:
    """Capabilities of the default database (cached per database name; ``fresh`` re-probes)."""
    key = connection.settings_dict["NAME"]
    if fresh:
        _cached.cache_clear()
    return _cached(key)
