"""The as-of join: for each decision point (series, time), the latest row known at that time."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import numpy as np
import pgpq
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from django.db import connection
from psycopg import sql

from timeseries.datasets import Dataset, get_dataset
from timeseries.pit._sql import NaiveDatetime, aware, latest_lateral, min_quality_clean, quality_ok, stored_cols
from timeseries.rules import END_OF_TIME
from timeseries.sqltext import identifiers


def _points_table(points, series: Sequence[str]) -> pa.Table:
    if isinstance(points, pa.Table):
        table = points
    else:
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover
            pd = None
        if pd is not None and isinstance(points, pd.DataFrame):
            table = pa.Table.from_pandas(points, preserve_index=False)
        else:
            rows = list(points)
            if rows and not isinstance(rows[0], dict):
                rows = [dict(zip([*series, "time"], r)) for r in rows]
            table = (
                pa.Table.from_pylist(rows)
                if rows
                else pa.table(
                    {c: pa.array([], pa.string()) for c in series}
                    | {"time": pa.array([], pa.timestamp("us", tz="UTC"))}
                )
            )
    for c in [*series, "time"]:
        if c not in table.column_names:
            raise ValueError(f"points need a {c!r} column")
    t = table.column("time").type
    if not pa.types.is_timestamp(t) or t.tz is None:
        raise NaiveDatetime("points.time must be tz-aware timestamps")
    cols = [table.column(c).cast(pa.string()) for c in series]
    return pa.table(
        [pa.array(range(table.num_rows), pa.int64()), *cols, table.column("time").cast(pa.timestamp("us", tz="UTC"))],
        names=["idx", *series, "at"],
    )


PARALLEL_ASOF_POINTS = 200_000  # from this many points, probe on two connections at once


def asof_join(
    points, *, dataset: str = "market_data", recorded_by: datetime | None = None, min_quality: float | None = None
) -> list[dict]:
    """For each decision point (symbol, time) the latest row known at that time.

    ``points``: (symbol, time) tuples, dicts, an Arrow table or a DataFrame; for social_sentiment each
    point also names its platform. Returns one dict per point, in input order, with the point's
    ``symbol`` (and series columns), ``at`` (the point's time) and the row's columns (None where no
    row was known). ``asof_join_table`` gives the same answer as an Arrow table (for bulk callers).
    ``min_quality=q``: the latest row scored NULL or >= q (as the score stood at ``recorded_by``).
    """
    return asof_join_table(points, dataset=dataset, recorded_by=recorded_by, min_quality=min_quality).to_pylist()


def asof_join_table(
    points, *, dataset: str = "market_data", recorded_by: datetime | None = None, min_quality: float | None = None
) -> pa.Table:
    """``asof_join`` as an Arrow table (exact decimals, UTC timestamps), built without Python rows.

    Set-based: the points are copied into a temporary table and probed with one LATERAL query in
    (series, time) order, so consecutive probes share index and heap pages; the answer comes back
    through COPY as CSV parsed by Arrow. Large inputs are split in two halves probed on two
    connections sharing one exported snapshot, so both halves see exactly the same data.
    """
    spec = get_dataset(dataset)
    table = _points_table(points, spec.series)
    table = table.take(_probe_order(table, spec.series))
    rb = aware("recorded_by", recorded_by, required=False) or END_OF_TIME
    min_quality = min_quality_clean(spec, min_quality)
    if table.num_rows >= PARALLEL_ASOF_POINTS and not connection.in_atomic_block:
        result = _asof_parallel(spec, table, rb, min_quality)
    else:
        with connection.cursor() as cur:
            result = _asof_probe(cur.cursor, spec, table, rb, min_quality)
    # back to input order: idx is a permutation of 0..n-1, so a stable argsort of it is exact
    idx = result.column("idx").to_numpy()
    return result.take(np.argsort(idx, kind="stable")).drop_columns(["idx"])


def _probe_order(table: pa.Table, series: Sequence[str]) -> np.ndarray:
    """The order to probe the points in: grouped by series, time ascending within one.

    Consecutive probes of one series then share index and heap pages; sorting here spares
    PostgreSQL a sort (the probes follow the temp table's insertion order). Series are grouped by
    their dictionary code, not sorted by name: grouping is all the locality needs, and integer keys
    sort in half the time of strings (0.19 against 0.41 s for 1M points).
    """
    codes = [pc.dictionary_encode(table.column(c).combine_chunks()).indices.fill_null(-1).to_numpy() for c in series]
    at = table.column("at").combine_chunks().cast(pa.int64()).fill_null(0).to_numpy()
    return np.lexsort((at, *reversed(codes)))


ASOF_CONNECTIONS = 2  # one per core here; each probes a contiguous share of the sorted points


def _asof_parallel(spec: Dataset, table: pa.Table, rb: datetime, min_quality: float | None = None) -> pa.Table:
    """Probe contiguous shares of the (series, time)-sorted points on several connections, all in
    REPEATABLE READ on one exported snapshot, so every share sees exactly the same data."""
    n = ASOF_CONNECTIONS
    cuts = [table.num_rows * i // n for i in range(n + 1)]
    params = connection.get_connection_params()
    conns = [psycopg.connect(**params) for _ in range(n)]
    try:
        conns[0].execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        snapshot = conns[0].execute("SELECT pg_export_snapshot()").fetchone()[0]
        for conn in conns[1:]:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        jobs = [(conn, table.slice(cuts[i], cuts[i + 1] - cuts[i])) for i, conn in enumerate(conns)]
        with ThreadPoolExecutor(n) as pool:
            parts = list(pool.map(lambda job: _asof_probe(job[0].cursor(), spec, job[1], rb, min_quality), jobs))
        return pa.concat_tables(parts)
    finally:
        for conn in conns:
            conn.close()


def _asof_result_schema(spec: Dataset) -> list[tuple[str, pa.DataType]]:
    series = [(c, pa.string()) for c in spec.series]
    rest = [(c.name, c.arrow_type) for c in spec.columns if c.name not in spec.series]
    times = [(c, pa.timestamp("us", tz="UTC")) for c in ("known_at", "recorded_at")]
    return [("idx", pa.int64()), *series, ("at", pa.timestamp("us", tz="UTC")), *rest, *times]


def _asof_probe(cur, spec: Dataset, points: pa.Table, rb: datetime, min_quality: float | None = None) -> pa.Table:
    """One connection's share: COPY the points in, probe, COPY the answer out as CSV."""
    names = ["idx", *(f"s{i + 1}" for i in range(len(spec.series))), "at"]
    cur.execute("CREATE TEMP TABLE IF NOT EXISTS tsm_asof_points (idx bigint, s1 text, s2 text, at timestamptz)")
    cur.execute("TRUNCATE tsm_asof_points")
    renamed = points.rename_columns(names)
    encoder = pgpq.ArrowToPostgresBinaryEncoder(renamed.schema)
    with cur.copy(
        sql.SQL("COPY tsm_asof_points ({}) FROM STDIN WITH (FORMAT binary)").format(identifiers(names))
    ) as copy:
        copy.write(encoder.write_header())
        for batch in renamed.to_batches(max_chunksize=100_000):
            copy.write(encoder.write_batch(batch))
        copy.write(encoder.finish())
    schema = _asof_result_schema(spec)
    arrays = {c.name for c in spec.columns if c.kind == "text[]"}
    row_cols = sql.SQL(", ").join(
        sql.SQL("to_json(x.{c})::text" if name in arrays else "x.{c}").format(c=sql.Identifier(name))
        for name, _ in schema[len(spec.series) + 2 :]
    )
    series_as = sql.SQL(", ").join(
        sql.SQL("p.{} AS {}").format(sql.Identifier(f"s{i + 1}"), sql.Identifier(c)) for i, c in enumerate(spec.series)
    )
    series_out = sql.SQL(", ").join(sql.SQL("p.{}").format(sql.Identifier(c)) for c in spec.series)
    params: dict[str, Any] = {"rb": rb}
    quality = None if min_quality is None else quality_ok(spec, "m", params, min_quality)
    # no ORDER BY: the points were copied in (series, time) order and a scan of the fresh temporary
    # table returns them so; the answer does not depend on the order, only the speed does
    query = sql.SQL(
        "SELECT p.idx, {series_out}, p.at, {row_cols} FROM (SELECT idx, at, {series_as} FROM tsm_asof_points p) p"
        " LEFT JOIN LATERAL ({lateral}) x ON true"
    ).format(
        series_out=series_out,
        row_cols=row_cols,
        series_as=series_as,
        lateral=latest_lateral(spec, "p", "p.at", quality, stored_cols(spec, "m", params)),
    )
    cur.execute("SET TimeZone = 'UTC'")
    buffer = io.BytesIO()
    statement = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv)").format(query)
    with cur.copy(statement, params) as copy:
        for chunk in copy:
            buffer.write(chunk)
    cur.execute("TRUNCATE tsm_asof_points")
    buffer.seek(0)
    types = {name: (pa.string() if name in arrays else kind) for name, kind in schema}
    result = (
        pcsv.read_csv(
            buffer,
            read_options=pcsv.ReadOptions(column_names=[name for name, _ in schema]),
            convert_options=pcsv.ConvertOptions(
                column_types=types,
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                true_values=["t"],
                false_values=["f"],
            ),
        )
        if buffer.getbuffer().nbytes
        else pa.table({name: pa.array([], kind) for name, kind in schema})
    )
    for name in arrays:
        values = [None if v is None else json.loads(v) for v in result.column(name).to_pylist()]
        result = result.set_column(result.schema.get_field_index(name), name, pa.array(values, pa.list_(pa.string())))
    return result
