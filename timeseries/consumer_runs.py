"""How a bounded change-log consumer task runs (rollups, quality): on the queue it came from, one run at
a time across the worker processes, continuing itself while a backlog is left.

Task-layer helpers shared by ``timeseries/tasks.py`` and ``timeseries/quality_tasks.py`` (and used by
``ingestion/tasks.py``): they touch Celery's request and the cache only, never a service.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from celery import Task
from django.core.cache import cache

CONTINUE_AFTER_S = 5.0  # a consumer's next bounded run: as often as beat runs it, so a burst keeps its CPU


def enqueue_beside(task: Task, current: Task, *args, countdown: float = 0, **kwargs) -> None:
    """Send ``task(*args, **kwargs)`` to the queue ``current`` (a running task) came from."""
    queue = (current.request.delivery_info or {}).get("routing_key")
    task.apply_async(args, kwargs, countdown=countdown, **({"queue": queue} if queue else {}))


def _chain_key(current: Task, dataset: str | None) -> str:
    return f"tsm:continue:{current.name}:{dataset}"


def chain_running(current: Task, dataset: str | None, *, continued: bool) -> bool:
    """Whether a beat run should stand aside: a continuation chain (continue_backlog) is working
    through the backlog at its own pace, and a second run would only double the consumers' share of
    the CPU during a write burst."""
    if continued or current.request.is_eager:
        return False
    try:
        return cache.get(_chain_key(current, dataset)) is not None
    except Exception:  # Redis trouble: run
        return False


def continue_backlog(current: Task, dataset: str | None, *, continued: bool, backlog: bool) -> None:
    """After a bounded consumer run: while changes are pending, run again CONTINUE_AFTER_S later — also
    without beat (after an upload, on a worker without beat). Running at once instead kept the consumers
    busy through a write burst: the write API fell from 91k to 69k rows/s. One chain at a time:
    the chain holds a cache key, renewed by each link and dropped by the last; a beat run starts a chain
    only when none holds it (or its holder died: the key expires). Not from ``apply()`` (tests,
    commands): those callers call again themselves."""
    if current.request.is_eager:
        return
    key = _chain_key(current, dataset)
    try:
        if not backlog:
            if continued:
                cache.delete(key)
            return
        if continued:
            cache.set(key, 1, timeout=60)
        elif not cache.add(key, 1, timeout=60):
            return  # a chain is already on it
    except Exception:  # Redis trouble: the next beat run picks the backlog up
        return
    enqueue_beside(current, current, dataset, countdown=CONTINUE_AFTER_S, continued=True)


CONSUMER_SLOT_KEY = "tsm:consumer-slot"
CONSUMER_SLOT_TTL = 300  # seconds; far longer than a bounded run (~2 s here), so only a dead holder's slot expires


@contextmanager
def consumer_slot(current: Task) -> Iterator[bool]:
    """Whether this run may work now: one bounded consumer run (rollups or quality) at a time, across
    every worker process. Two running side by side held both of `make run`'s two processes, and a
    write-API flush sent meanwhile waited for one of them: accepted -> queryable p99 19 s in one
    bench window. Eager calls (tests, commands) always run; so does everyone when Redis fails.

    The slot is a cache key holding this run's token, dropped at the end if it still holds that
    token (get-then-delete: a holder that outlived the TTL may drop a successor's slot, which costs
    one overlap, never a wrong answer — runs serialise on their consumer's cursor row)."""
    if current.request.is_eager:
        yield True
        return
    token = uuid.uuid4().hex
    try:
        got = cache.add(CONSUMER_SLOT_KEY, token, timeout=CONSUMER_SLOT_TTL)
    except Exception:  # Redis trouble: run
        yield True
        return
    try:
        yield got
    finally:
        if got:
            try:
                if cache.get(CONSUMER_SLOT_KEY) == token:
                    cache.delete(CONSUMER_SLOT_KEY)
            except Exception:  # the key expires by itself
                pass


def consumer_run(current: Task, dataset: str | None, *, continued: bool, work: Callable[[], tuple[dict, bool]]) -> dict:
    """One bounded run of a change-log consumer task: ``work()`` returns (report, backlog left).

    A beat run stands aside while a continuation chain works (``chain_running``). A run finding the
    consumer slot taken does no work and tries again CONTINUE_AFTER_S later as a chain (a continuation
    keeps its chain; any other run starts one unless one exists), so a run sent once — after an
    upload, without beat — is never lost to a busy slot. After the work, ``continue_backlog``."""
    if chain_running(current, dataset, continued=continued):
        return {"skipped": "a continuation is working through the backlog"}
    with consumer_slot(current) as got:
        if not got:
            continue_backlog(current, dataset, continued=continued, backlog=True)
            return {"skipped": "another consumer run holds the slot"}
        report, backlog = work()
    continue_backlog(current, dataset, continued=continued, backlog=backlog)
    return report
