"""The series registry (``timeseries_series``) recomputed from the stored rows.

The loader only ever widens a series' [first_time, last_time] (in its merge transaction). When rows
are removed — an operator's ``manage.py remove_versions``, or rows deleted by hand — the registry
would go on remembering their range (a deleted bar at 9999-12-31 kept ``rollups --rebuild`` failing).
``series_registry_recompute`` sets each registered series' range to the first and last ``time`` it
holds now (two index probes per series: the dataset's key index starts with the series columns and
``time``) and drops the series that hold no row any more. Every rebuild calls it first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection
from psycopg import sql

from timeseries.datasets import DATASETS


@dataclass
class RegistryResult:
    updated: int = 0  # series whose range changed
    dropped: int = 0  # series without rows any more

    def as_dict(self) -> dict:
        return {"updated": self.updated, "dropped": self.dropped}


def series_registry_recompute(*, dataset: str, symbols: Iterable[str] | None = None) -> RegistryResult:
    """Recompute the registered ranges of ``dataset`` (only ``symbols``' series when given)."""
    spec = DATASETS.get(dataset)
    if spec is None:
        raise ValueError(f"dataset {dataset!r} is unknown: expected one of {', '.join(DATASETS)}")
    match = sql.SQL(" AND ").join(
        sql.SQL("m.{} = s.{}").format(sql.Identifier(column), sql.Identifier(name))
        for column, name in zip(spec.series, ("symbol", "subkey"))
    )
    only = sql.SQL(" AND s.symbol = ANY(%(symbols)s::text[])") if symbols is not None else sql.SQL("")
    query = sql.SQL(
        "WITH now AS (SELECT s.id,"
        " (SELECT m.time FROM {t} m WHERE {match} ORDER BY m.time LIMIT 1) AS lo,"
        " (SELECT m.time FROM {t} m WHERE {match} ORDER BY m.time DESC LIMIT 1) AS hi"
        " FROM timeseries_series s WHERE s.dataset = %(dataset)s{only}),"
        " gone AS (DELETE FROM timeseries_series s USING now n WHERE s.id = n.id AND n.lo IS NULL RETURNING s.id),"
        " changed AS (UPDATE timeseries_series s SET first_time = n.lo, last_time = n.hi FROM now n"
        " WHERE s.id = n.id AND n.lo IS NOT NULL AND (s.first_time, s.last_time) IS DISTINCT FROM (n.lo, n.hi)"
        " RETURNING s.id)"
        " SELECT (SELECT count(*) FROM changed), (SELECT count(*) FROM gone)"
    ).format(t=sql.Identifier(spec.table), match=match, only=only)
    with connection.cursor() as cur:
        cur.execute(query, {"dataset": spec.name, "symbols": list(symbols) if symbols is not None else None})
        updated, dropped = cur.fetchone()
    return RegistryResult(updated=updated, dropped=dropped)
