"""Redis-backed caching of selector results, invalidated by ingestion (and curation).

Keys include the normalised parameters and the current generation of every dataset the answer
reads; the generations live in PostgreSQL and are bumped in the same transaction as the change, so a
cached answer can never outlive new data that changes it — even a correction for a past time bumps
the generation and so retires answers for every later time too. If Redis is down or slow, answers
are computed from PostgreSQL and a warning is logged; the request does not fail.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from django.core.cache import cache
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.db import connection

from timeseries.formats import plain

logger = logging.getLogger(__name__)


def generation_bump(*, datasets: Iterable[str], cur=None) -> None:
    """Call inside the transaction that changes the datasets (``cur``: a cursor of that transaction,
    when it is not Django's connection's)."""
    names = sorted(set(datasets))
    if not names:
        return
    if cur is None:
        with connection.cursor() as cur:
            generation_bump(datasets=names, cur=cur)
        return
    cur.execute(
        """
        INSERT INTO timeseries_datasetgeneration (dataset, generation, changed_at)
        SELECT unnest(%s::text[]), 1, clock_timestamp()
        ON CONFLICT (dataset) DO UPDATE
        SET generation = timeseries_datasetgeneration.generation + 1, changed_at = clock_timestamp()
        """,
        [names],
    )


def generations(datasets: Iterable[str]) -> dict[str, str]:
    """Per dataset, its generation number *and* the instant of its last bump.

    The instant makes a generation unique even when numbers restart (a restored or recreated
    database, a rolled-back bump), so an old cached answer is never taken for a new one.
    """
    names = sorted(set(datasets))
    with connection.cursor() as cur:
        cur.execute(
            "SELECT dataset, generation, changed_at FROM timeseries_datasetgeneration WHERE dataset = ANY(%s)", [names]
        )
        found = {d: f"{g}@{c.isoformat()}" for d, g, c in cur.fetchall()}
    return {n: found.get(n, "0") for n in names}


def cache_key(name: str, datasets: Iterable[str], params: dict[str, Any]) -> str:
    gens = generations(datasets)
    db = connection.settings_dict
    body = json.dumps(
        {"db": [db.get("HOST"), db.get("PORT"), db.get("NAME")], "p": plain(params), "g": gens},
        sort_keys=True,
        default=str,
    )
    return f"pit:{name}:{hashlib.sha256(body.encode()).hexdigest()}"


def cached(
    name: str,
    *,
    datasets: Iterable[str],
    params: dict[str, Any],
    compute: Callable[[], Any],
    timeout: int | object = DEFAULT_TIMEOUT,
) -> Any:
    """``compute()``'s result, from the cache when an answer for these parameters and generations exists."""
    key = cache_key(name, datasets, params)
    try:
        hit = cache.get(key)
    except Exception as exc:  # Redis down or slow: answer from PostgreSQL
        logger.warning("cache unavailable (%s); answering %s from PostgreSQL", exc, name)
        return compute()
    if hit is not None:
        return hit
    value = compute()
    try:
        cache.set(key, value, timeout)
    except Exception as exc:
        logger.warning("cache unavailable (%s); %s not cached", exc, name)
    return value
