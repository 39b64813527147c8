#!/usr/bin/env python
"""Lifecycle benchmark: bytes per bar before/after compression, reads and loader merges on compressed chunks.

Prints ONE JSON object on stdout (progress on stderr). Uses its own database ``tsm_bench_lifecycle`` on
the server of DATABASE_URL (TimescaleDB lane: point DATABASE_URL at the TimescaleDB server; on plain
PostgreSQL only the uncompressed figures are reported):

    DATABASE_URL=postgres://postgres@127.0.0.1:5433/tsm TSM_TIMESCALEDB=on \\
        flock /tmp/tsm-bench.lock .venv/bin/python bench/bench_lifecycle.py --symbols 400 --days 28

Steps (each figure says what it times; nothing is asserted):
1. load ``--symbols`` x ``--days`` of demo minute bars (time-ordered windows, like a live feed), VACUUM ANALYZE
   (``--variant no-cap``: the same bars without market cap);
2. size: ``hypertable_detailed_size`` (plain: ``pg_total_relation_size``) / bars = bytes per bar;
3. reads (uncompressed, the baseline): ``pit.market_state`` all symbols / one symbol at random T;
4. writes (uncompressed, the baseline): loader merges of a 1-bar correction, a one-symbol-day correction
   (390 new versions), its replay (390 duplicates) and a backfill of 390 new bars of a new symbol;
5. compress every chunk (timed), VACUUM ANALYZE, size again, TimescaleDB's before/after bytes (ratio);
6. the same reads and writes on the compressed chunks (other symbols), size after the writes;
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: bench.lib and the project
from bench.lib.django_env import django_up  # noqa: E402
from bench.lib.django_env import sql_rows as sql
from bench.lib.output import command_line, emit, log, started_at  # noqa: E402
from bench.lib.stats import rank_stats_ms as ms  # noqa: E402
from bench.lib.stats import timed
from timeseries import demo  # noqa: E402  (numpy and pyarrow only, no Django)

DB_NAME = "tsm_bench_lifecycle"
START = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday
WINDOW_DAYS = 7


def setup_django() -> None:
    url = urlsplit(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tsm"))
    django_up(urlunsplit(url._replace(path="/" + DB_NAME)))


# --- data ---------------------------------------------------------------------------------------


def without_market_cap(table):
    """The same bars without a market cap (many minute-bar feeds carry none)."""
    import pyarrow as pa

    return table.set_column(
        table.schema.get_field_index("market_cap"), "market_cap", pa.nulls(table.num_rows, table["market_cap"].type)
    )


def load(symbols: list[str], days: int, seed: int, variant: str = "demo") -> dict:
    import pyarrow as pa

    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from ingestion.loader import ingest_table

    sql("TRUNCATE market_data, timeseries_series, timeseries_change")
    rows = 0
    seconds = 0.0
    for k, lo in enumerate(range(0, days, WINDOW_DAYS)):
        batches = demo.market_data_batches(
            symbols=symbols,
            start=START + timedelta(days=lo),
            days=min(WINDOW_DAYS, days - lo),
            seed=seed + k,
            include_corrections=False,
        )
        table = pa.Table.from_batches(list(batches)).sort_by([("time", "ascending"), ("symbol", "ascending")])
        if variant == "no-cap":
            table = without_market_cap(table)
        if not table.num_rows:
            continue
        s, _ = timed(ingest_table, dataset="market_data", data=table, source=f"bench window {k}")
        seconds += s
        rows += table.num_rows
        log(f"window {k}: {table.num_rows:,} bars in {s:.1f}s")
    sql("VACUUM ANALYZE market_data")
    return {
        "bars": rows,
        "variant": variant,
        "seconds": round(seconds, 1),
        "rows_per_s": round(rows / seconds) if seconds else None,
    }


def is_hypertable() -> bool:
    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from timeseries.capabilities import capabilities

    return "market_data" in capabilities(fresh=True).hypertables


def size(bars: int) -> dict:
    if is_hypertable():
        heap, index, toast, total = sql(
            "SELECT table_bytes, index_bytes, toast_bytes, total_bytes FROM hypertable_detailed_size('market_data')"
        )[0]
    else:
        heap, index, toast, total = sql(
            "SELECT pg_relation_size('market_data'), pg_indexes_size('market_data'), "
            "pg_total_relation_size('market_data') - pg_relation_size('market_data') "
            "- pg_indexes_size('market_data'), pg_total_relation_size('market_data')"
        )[0]
    per = lambda b: round(b / bars, 1)  # noqa: E731
    return {
        "bars": bars,
        "total_bytes": total,
        "bytes_per_bar": per(total),
        "heap_bytes_per_bar": per(heap),
        "index_bytes_per_bar": per(index),
        "toast_bytes_per_bar": per(toast),
    }


def time_range() -> tuple[datetime, datetime]:
    return sql("SELECT min(first_time), max(last_time) FROM timeseries_series WHERE dataset = 'market_data'")[0]


def reads(symbols: list[str], samples: int, seed: int) -> dict:
    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from timeseries import pit

    rng = random.Random(seed)
    lo, hi = time_range()
    span = (hi - lo).total_seconds()
    ats = [lo + timedelta(seconds=rng.uniform(0, span)) for _ in range(samples)]
    for at in ats[:3]:
        pit.market_state(at=at)
    all_s = [timed(pit.market_state, at=at)[0] for at in ats]
    one_s = [timed(pit.market_state, at=at, symbols=[rng.choice(symbols)])[0] for at in ats * 5]
    day = lo.replace(hour=0, minute=0) + timedelta(days=2)
    hist_s = [
        timed(
            pit.history,
            dataset="market_data",
            at=hi + timedelta(days=1),
            symbols=[rng.choice(symbols)],
            start=day,
            end=day + timedelta(days=1),
        )[0]
        for _ in range(samples)
    ]
    return {
        "market_state_all_symbols": ms(all_s),
        "market_state_one_symbol": ms(one_s),
        "history_one_symbol_day": ms(hist_s),
    }


def _symbol_day_table(symbol: str, day: datetime):
    import pyarrow as pa

    rows = sql(
        "SELECT time, symbol, open, high, low, close, volume, known_at FROM market_data "
        "WHERE symbol = %s AND time >= %s AND time < %s ORDER BY time",
        [symbol, day, day + timedelta(days=1)],
    )
    cols = ["time", "symbol", "open", "high", "low", "close", "volume", "known_at"]
    return pa.table({c: [r[i] for r in rows] for i, c in enumerate(cols)})


def writes(symbols: list[str], day: datetime, label: str) -> dict:
    """Loader merges against stored rows of ``day`` (a weekday) for two symbols of ``symbols``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from ingestion.loader import ingest_table

    out = {}
    a, b = symbols[0], symbols[1]
    bars = _symbol_day_table(a, day)
    one = bars.slice(10, 1)
    fix = one.set_column(
        one.schema.get_field_index("close"), "close", pa.array([one["high"][0].as_py()], one["close"].type)
    )
    s, r = timed(ingest_table, dataset="market_data", data=fix, source=f"{label} one fix")
    out["correct_1_bar"] = {"seconds": round(s, 3), "revised": r.revised, "inserted": r.inserted}
    day_bars = _symbol_day_table(b, day)
    later = pc.add(day_bars["known_at"], pa.scalar(timedelta(hours=5), pa.duration("us")))
    day_fix = day_bars.set_column(day_bars.schema.get_field_index("known_at"), "known_at", later)
    day_fix = day_fix.set_column(day_fix.schema.get_field_index("close"), "close", day_fix["high"])
    s, r = timed(ingest_table, dataset="market_data", data=day_fix, source=f"{label} day fix")
    out["correct_symbol_day"] = {"rows": day_fix.num_rows, "seconds": round(s, 3), "revised": r.revised}
    s, r = timed(ingest_table, dataset="market_data", data=day_fix, source=f"{label} day replay")
    out["replay_symbol_day"] = {"rows": day_fix.num_rows, "seconds": round(s, 3), "duplicates": r.duplicates}
    new_symbol = f"NEW{label[:4].upper()}"
    backfill = day_bars.set_column(
        day_bars.schema.get_field_index("symbol"), "symbol", pa.array([new_symbol] * day_bars.num_rows)
    )
    s, r = timed(ingest_table, dataset="market_data", data=backfill, source=f"{label} backfill")
    out["backfill_new_symbol_day"] = {"rows": backfill.num_rows, "seconds": round(s, 3), "inserted": r.inserted}
    return out


def compress_all() -> dict:
    n = sql("SELECT count(*) FROM show_chunks('market_data')")[0][0]
    s, _ = timed(sql, "SELECT count(compress_chunk(c, if_not_compressed => true)) FROM show_chunks('market_data') c")
    sql("VACUUM ANALYZE market_data")
    before, after = sql(
        "SELECT sum(before_compression_total_bytes), sum(after_compression_total_bytes) "
        "FROM chunk_compression_stats('market_data')"
    )[0]
    return {
        "chunks": n,
        "seconds": round(s, 1),
        "before_compression_total_bytes": int(before),
        "after_compression_total_bytes": int(after),
        "ratio": round(before / after, 2),
    }


def partial_chunks() -> int:
    return sql(
        "SELECT count(*) FROM _timescaledb_catalog.chunk c JOIN _timescaledb_catalog.hypertable h "
        "ON h.id = c.hypertable_id WHERE h.table_name = 'market_data' AND c.status & 8 = 8"
    )[0][0]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--symbols", type=int, default=400)
    p.add_argument("--days", type=int, default=28, help="calendar days of minute bars (weekdays only)")
    p.add_argument("--samples", type=int, default=40, help="read samples per figure")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--skip-load", action="store_true", help="reuse what is loaded (uncompressed)")
    p.add_argument(
        "--variant",
        choices=("demo", "no-cap"),
        default="demo",
        help="demo: timeseries.demo bars as generated (prices in ticks, market cap once a day); "
        "no-cap: the same bars without market cap",
    )
    args = p.parse_args(argv)
    command = command_line()
    setup_django()

    symbols = demo.make_symbols(args.symbols)
    out: dict = {
        "command": command,
        "started_at": started_at(),
        "postgresql": sql("SELECT version()")[0][0],
        "timescaledb": (sql("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'") or [[None]])[0][0],
        "shared_buffers": sql("SHOW shared_buffers")[0][0],
        "load_average_at_start": os.getloadavg(),
    }
    if not args.skip_load:
        log(f"loading {args.symbols} symbols x {args.days} days ...")
        out["load"] = load(symbols, args.days, args.seed, args.variant)
    bars = sql("SELECT count(*) FROM market_data")[0][0]
    out["bars"] = bars
    out["size_uncompressed"] = size(bars)
    log(f"uncompressed: {out['size_uncompressed']}")
    days = sorted(
        {d for (d,) in sql("SELECT DISTINCT date_trunc('day', time) FROM market_data WHERE symbol = %s", [symbols[0]])}
    )
    out["reads_uncompressed"] = reads(symbols, args.samples, args.seed)
    log(f"reads uncompressed: {out['reads_uncompressed']}")
    out["writes_uncompressed"] = writes(symbols[0:2], days[3], "plain")
    log(f"writes uncompressed: {out['writes_uncompressed']}")
    if not is_hypertable():
        out["compression"] = {"skipped": "plain PostgreSQL lane: no compression"}
    else:
        out["size_before_compression"] = size(sql("SELECT count(*) FROM market_data")[0][0])
        out["compression"] = compress_all()
        log(f"compressed: {out['compression']}")
        bars_now = sql("SELECT count(*) FROM market_data")[0][0]
        out["size_compressed"] = size(bars_now)
        out["bytes_per_bar_ratio"] = round(
            out["size_before_compression"]["bytes_per_bar"] / out["size_compressed"]["bytes_per_bar"], 2
        )
        log(f"compressed size: {out['size_compressed']} ratio {out['bytes_per_bar_ratio']}")
        out["reads_compressed"] = reads(symbols, args.samples, args.seed)
        log(f"reads compressed: {out['reads_compressed']}")
        out["writes_compressed"] = writes(symbols[2:4], days[3], "comp")
        out["partially_compressed_chunks_after_writes"] = partial_chunks()
        out["size_after_writes"] = size(sql("SELECT count(*) FROM market_data")[0][0])
        log(f"writes compressed: {out['writes_compressed']}")
    out["load_average_at_end"] = os.getloadavg()
    emit(out)


if __name__ == "__main__":
    main()
