"""TimescaleDB lane: each hypertable's compression layout and its compression and retention policy
jobs kept in line with the settings (``lifecycle_apply``, run by the migration and by
``manage.py lifecycle_apply``; ``lifecycle_remove`` undoes it), and compression on demand."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

from django.db import connection, transaction
from psycopg import sql

from timeseries.capabilities import capabilities
from timeseries.datasets import DATASETS, Dataset, get_dataset
from timeseries.lifecycle.policies import compress_after, compression_layout, datasets_selected, retention_horizon

FIRST_RUN_DELAY = "1 hour"  # a new policy job first runs this long after it is (re)created


def _normalised(text: str | None) -> str:
    return (text or "").replace('"', "").replace(" ", "").lower()


def _policy_job(cur, table: str, proc: str) -> tuple[int, str] | None:
    """(job_id, interval in its config) of the hypertable's policy job ``proc``, if any."""
    cur.execute(
        "SELECT job_id, config FROM timescaledb_information.jobs WHERE hypertable_name = %s AND proc_name = %s",
        [table, proc],
    )
    row = cur.fetchone()
    if row is None:
        return None
    config = row[1] if isinstance(row[1], dict) else json.loads(row[1])
    return row[0], config.get("compress_after") or config.get("drop_after")


def _same_interval(cur, a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    cur.execute("SELECT %s::interval = %s::interval", [a, b])
    return cur.fetchone()[0]


def _delay_first_run(cur, job_id: int) -> None:
    cur.execute("SELECT alter_job(%s, next_start => now() + %s::interval)", [job_id, FIRST_RUN_DELAY])


def _sync_policy(cur, spec: Dataset, *, proc: str, wanted: str | None, add: str, remove: str, arg: str) -> str | None:
    """Make the hypertable's ``proc`` policy match ``wanted``; returns what was done (None: nothing)."""
    current = _policy_job(cur, spec.table, proc)
    if current is not None and _same_interval(cur, current[1], wanted):
        return None
    if current is not None:
        cur.execute(sql.SQL("SELECT {}(%s, if_exists => true)").format(sql.Identifier(remove)), [spec.table])
    if wanted is None:
        return f"removed {proc}" if current is not None else None
    cur.execute(
        sql.SQL("SELECT {}(%s, {} => %s::interval)").format(sql.Identifier(add), sql.Identifier(arg)),
        [spec.table, wanted],
    )
    _delay_first_run(cur, cur.fetchone()[0])
    return f"{proc} {wanted}"


def _sync_layout(cur, spec: Dataset) -> str | None:
    layout = compression_layout(dataset=spec.name)
    segmentby, orderby = layout.options()
    cur.execute(
        "SELECT segmentby, orderby FROM timescaledb_information.hypertable_compression_settings "
        "WHERE hypertable = %s::regclass",
        [spec.table],
    )
    row = cur.fetchone()
    if row and _normalised(row[0]) == _normalised(segmentby) and _normalised(row[1]) == _normalised(orderby):
        return None
    cur.execute(
        sql.SQL(
            "ALTER TABLE {} SET (timescaledb.compress, timescaledb.compress_segmentby = {}, "
            "timescaledb.compress_orderby = {})"
        ).format(sql.Identifier(spec.table), sql.Literal(segmentby), sql.Literal(orderby))
    )
    return f"compression segmentby {segmentby} orderby {orderby}"


def lifecycle_apply(*, datasets: Iterable[str] | None = None) -> list[dict]:
    """Bring compression layouts and compression / retention policies in line with the settings.

    TimescaleDB lane only (returns [] on the plain lane, where retention is ``retention_run``).
    Idempotent: a dataset whose layout and policies already match is left alone. A new or changed
    policy job first runs ``FIRST_RUN_DELAY`` later.
    """
    caps = capabilities(fresh=True)
    if not caps.timescaledb:
        return []
    done = []
    with transaction.atomic(), connection.cursor() as cur:
        for spec in datasets_selected(datasets):
            if spec.table not in caps.hypertables:
                continue
            actions = [
                a
                for a in (
                    _sync_layout(cur, spec) if compress_after(dataset=spec.name) is not None else None,
                    _sync_policy(
                        cur,
                        spec,
                        proc="policy_compression",
                        wanted=compress_after(dataset=spec.name),
                        add="add_compression_policy",
                        remove="remove_compression_policy",
                        arg="compress_after",
                    ),
                    _sync_policy(
                        cur,
                        spec,
                        proc="policy_retention",
                        wanted=retention_horizon(dataset=spec.name),
                        add="add_retention_policy",
                        remove="remove_retention_policy",
                        arg="drop_after",
                    ),
                )
                if a
            ]
            done.append({"dataset": spec.name, "actions": actions})
    return done


def lifecycle_remove() -> None:
    """Undo ``lifecycle_apply`` (the migration's reverse): drop the policies, decompress, compression off."""
    caps = capabilities(fresh=True)
    if not caps.timescaledb:
        return
    with transaction.atomic(), connection.cursor() as cur:
        for spec in DATASETS.values():
            if spec.table not in caps.hypertables:
                continue
            cur.execute("SELECT remove_compression_policy(%s, if_exists => true)", [spec.table])
            cur.execute("SELECT remove_retention_policy(%s, if_exists => true)", [spec.table])
            cur.execute(
                "SELECT decompress_chunk(format('%%I.%%I', chunk_schema, chunk_name)::regclass) "
                "FROM timescaledb_information.chunks WHERE hypertable_name = %s AND is_compressed",
                [spec.table],
            )
            cur.execute(
                "SELECT compression_enabled FROM timescaledb_information.hypertables WHERE hypertable_name = %s",
                [spec.table],
            )
            if cur.fetchone()[0]:
                cur.execute(
                    sql.SQL("ALTER TABLE {} SET (timescaledb.compress = false)").format(sql.Identifier(spec.table))
                )


def chunks_compress(*, dataset: str, older_than: datetime | None = None) -> int:
    """Compress now the chunks of ``dataset`` that end before ``older_than`` (default: what the
    policy would compress). Returns how many chunks were compressed. TimescaleDB lane only."""
    spec = get_dataset(dataset)
    if not capabilities().compression:
        raise ValueError(f"{spec.name}: compression needs the TimescaleDB lane (this database is plain PostgreSQL)")
    with connection.cursor() as cur:
        if older_than is None:
            after = compress_after(dataset=spec.name)
            if after is None:
                return 0
            cur.execute("SELECT now() - %s::interval", [after])
            older_than = cur.fetchone()[0]
        cur.execute(
            "SELECT count(compress_chunk(c, if_not_compressed => true))"
            " FROM show_chunks(%s::regclass, older_than => %s) c",
            [spec.table, older_than],
        )
        return cur.fetchone()[0]
