"""The original spec's ingester and table: the baseline the ingest figures are compared with.

``spec_market_data`` is the spec's schema (a bench-only table, PRIMARY KEY (time, symbol)); the
ingester is the spec's: pandas ``read_csv`` -> asyncpg ``copy_records_to_table`` into a TEMP table ->
``INSERT ... ON CONFLICT (time, symbol) DO NOTHING``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench.lib.django_env import sql_rows

SPEC_COLUMNS = [
    "time",
    "symbol",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "trades",
    "market_cap",
    "source",
    "quality_score",
]
SPEC_DDL = """
CREATE TABLE IF NOT EXISTS spec_market_data (
    time timestamptz NOT NULL, symbol varchar(10) NOT NULL,
    open numeric(12,4), high numeric(12,4), low numeric(12,4), close numeric(12,4),
    volume bigint, vwap numeric(12,4), trades int, market_cap numeric(20,2),
    source varchar(50), quality_score numeric(3,2),
    PRIMARY KEY (time, symbol))
"""
SPEC_LATEST_SQL = "SELECT DISTINCT ON (symbol) * FROM spec_market_data WHERE time <= %s ORDER BY symbol, time DESC"


def spec_table_create() -> None:
    sql_rows(SPEC_DDL)


def spec_table_truncate() -> None:
    sql_rows("TRUNCATE spec_market_data")


async def _spec_ingest(path: Path, database_url: str) -> dict:
    import asyncpg
    import pandas as pd

    t0 = time.perf_counter()
    df = pd.read_csv(path, usecols=SPEC_COLUMNS, parse_dates=["time"])[SPEC_COLUMNS]
    columns = [df["time"].dt.to_pydatetime().tolist()] + [df[c].tolist() for c in SPEC_COLUMNS[1:]]
    t1 = time.perf_counter()
    conn = await asyncpg.connect(database_url.replace("postgres://", "postgresql://"))
    try:
        async with conn.transaction():
            await conn.execute("CREATE TEMP TABLE tmp_market_data (LIKE spec_market_data) ON COMMIT DROP")
            await conn.copy_records_to_table("tmp_market_data", records=zip(*columns), columns=SPEC_COLUMNS)
            t2 = time.perf_counter()
            status = await conn.execute(
                "INSERT INTO spec_market_data SELECT * FROM tmp_market_data ON CONFLICT (time, symbol) DO NOTHING"
            )
    finally:
        await conn.close()
    t3 = time.perf_counter()
    return {
        "rows": len(df),
        "inserted": int(status.split()[-1]),
        "seconds": t3 - t0,
        "read_csv_s": round(t1 - t0, 2),
        "copy_s": round(t2 - t1, 2),
        "insert_s": round(t3 - t2, 2),
    }


def spec_ingest(path: Path, database_url: str) -> dict:
    """The spec's CSV ingester on ``path`` into ``spec_market_data`` of ``database_url``: rows, inserted,
    seconds (unrounded) and its read/copy/insert split."""
    return asyncio.run(_spec_ingest(path, database_url))


def spec_ingest_rated(path: Path, database_url: str) -> dict:
    """``spec_ingest`` on an emptied table, with ``rows_per_s`` and the seconds rounded."""
    spec_table_truncate()
    spec = spec_ingest(path, database_url)
    spec["rows_per_s"] = round(spec["rows"] / spec["seconds"])
    spec["seconds"] = round(spec["seconds"], 2)
    return spec
