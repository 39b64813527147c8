"""Property tests: adjusted history (``pit.adjusted_history``) equals the brute-force model of
tests/oracle_adjust.py on random histories.

Each example wipes the datasets and loads, one load at a time through the loader (``on_error="skip"``:
an action naming a security not listed just before its ex_date is quarantined, as it would be):
two securities (one may be delisted, with the delisting announced later), random symbol changes
(tickers of a small pool, so tickers get reused), splits (ratios above and below 1), cash dividends
(some above the close: unapplied), each announced before or after its ex_date or on it, corrections of
actions (the same known_at recorded later, or a later known_at), and bars under every ticker with
corrections. The model is given every stored version read back from the tables; the selector and the
model are then asked the same questions for random T (around every ex_date, announcement and bar), S
(None, or between loads), tickers and security_ids, ranges, limits and every ``adjust``.
Runs on both lanes (DATABASE_URL at the TimescaleDB cluster for the other).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection
from hypothesis import event, given, note
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ingestion.loader import ingest_table
from tests.helpers import wipe_datasets
from tests.histories import SETTINGS
from tests.oracle_adjust import AdjustModel, Ambiguous
from timeseries import pit
from timeseries.params import ParameterError

D0 = datetime(2023, 1, 2, 14, 30, tzinfo=UTC)
DAY = timedelta(days=1)
US = timedelta(microseconds=1)
DAYS = 16
TICKERS = ("AAA", "BBB", "CCC")
RATIOS = ("2", "3", "4", "1.5", "0.5", "0.25", "0.1", "7")


def day(i: int) -> datetime:
    return D0 + i * DAY


def price(rng: random.Random) -> Decimal:
    return Decimal(rng.randint(1, 100_000_000)).scaleb(-6)


def bar_row(rng: random.Random, symbol: str, i: int, **more) -> dict:
    o, c = price(rng), price(rng)
    vwap = str(price(rng)) if rng.random() < 0.7 else None
    row = {"time": day(i).isoformat(), "symbol": symbol, "open": str(o), "close": str(c)}
    row |= {"high": str(max(o, c) + price(rng)), "low": str(min(o, c)), "volume": str(rng.randint(0, 10**6))}
    return {**row, "vwap": vwap, **more}


def announcement(rng: random.Random, ex: int) -> str | None:
    kind = rng.choice(("before", "after", "default"))
    if kind == "default":
        return None
    offset = rng.randint(1, 5) * DAY + rng.choice((timedelta(0), US, timedelta(hours=3)))
    return (day(ex) - offset if kind == "before" else day(ex) + offset).isoformat()


def action_row(rng: random.Random, sid: str, kind: str) -> dict:
    ex = rng.randint(1, DAYS - 1)
    row = {"security_id": sid, "action_type": kind, "ex_date": day(ex).isoformat(), "known_at": announcement(rng, ex)}
    if kind == "split":
        row["ratio"] = rng.choice(RATIOS)
    elif kind == "cash_dividend":
        row["amount"] = str(rng.choice((Decimal("0"), price(rng) / 50, price(rng) * 2)))
    else:
        row["new_symbol"] = rng.choice(TICKERS)
    return row


def generate(rng: random.Random) -> list[tuple[str, list[dict]]]:
    """The loads, in order: (dataset, rows)."""
    s1 = {"security_id": "S1", "symbol": "AAA", "name": "one", "exchange": "XNAS", "listed_at": day(-100).isoformat()}
    s2 = {**s1, "security_id": "S2", "symbol": rng.choice(("BBB", "AAA")), "name": "two"}
    s2["listed_at"] = day(rng.randint(-100, 6)).isoformat()
    if s2["symbol"] == "AAA":  # a reused ticker: S1 leaves before S2 lists
        s1["delisted_at"] = s2["listed_at"]
    loads: list[tuple[str, list[dict]]] = [("securities", [s1, s2])]
    if rng.random() < 0.4:  # S2's delisting, announced later
        gone = rng.randint(8, DAYS)
        loads.append(
            ("securities", [{**s2, "delisted_at": day(gone).isoformat(), "known_at": day(gone - 2).isoformat()}])
        )
    changes = [action_row(rng, sid, "symbol_change") for sid in ("S1", "S2") for _ in range(rng.randint(0, 1))]
    if changes:
        loads.append(("corporate_actions", changes))
    loads.append(("market_data", [bar_row(rng, t, i) for t in TICKERS for i in range(DAYS) if rng.random() < 0.8]))
    actions = [
        action_row(rng, rng.choice(("S1", "S2")), rng.choice(("split", "split", "cash_dividend")))
        for _ in range(rng.randint(1, 6))
    ]
    rng.shuffle(actions)
    for i in range(0, len(actions), 2):
        loads.append(("corporate_actions", actions[i : i + 2]))
    for _ in range(rng.randint(0, 3)):  # corrections of actions: same known_at recorded later, or later known_at
        fixed = dict(rng.choice(actions))
        if fixed["action_type"] == "split":
            fixed["ratio"] = rng.choice(RATIOS)
        else:
            fixed["amount"] = str(price(rng) / 40)
        if rng.random() < 0.5:
            fixed["known_at"] = (datetime.fromisoformat(fixed["ex_date"]) + rng.randint(0, 4) * DAY).isoformat()
        loads.append(("corporate_actions", [fixed]))
    for _ in range(rng.randint(0, 2)):  # corrections of bars
        i, t = rng.randrange(DAYS), rng.choice(TICKERS)
        later = {"known_at": (day(i) + rng.randint(1, 3) * DAY).isoformat()} if rng.random() < 0.5 else {}
        loads.append(("market_data", [bar_row(rng, t, i, **later)]))
    return loads


def stored(table: str) -> list[dict]:
    with connection.cursor() as cur:
        cur.execute(f"SELECT * FROM {table}")  # noqa: S608 (a constant table name)
        names = [d.name for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def same_bars(got: list[dict], want: list[dict]) -> bool:
    columns = ("time", "symbol", "security_id", "open", "high", "low", "close", "vwap", "volume", "known_at")
    return [tuple(b[c] for c in (*columns, "recorded_at")) for b in got] == [
        tuple(b[c] for c in (*columns, "recorded_at")) for b in want
    ]


def instants(rng: random.Random, loads_recorded: list[datetime]) -> tuple[datetime, datetime | None]:
    t = day(rng.randint(0, DAYS + 4)) + rng.choice((timedelta(0), -US, US, timedelta(minutes=1), 3 * DAY))
    s = rng.choice([None, None, *loads_recorded, *(r - US for r in loads_recorded)])
    return t, s


@hsettings(max_examples=60, **SETTINGS)
@given(seed=st.integers(0, 2**32 - 1), queries=st.integers(10, 30))
def test_adjusted_history_equals_the_brute_force_model(db, seed, queries):
    wipe_datasets()
    rng = random.Random(seed)
    recorded = []
    for dataset, rows in generate(rng):
        result = ingest_table(dataset=dataset, data=rows, on_error="skip")
        if result.recorded_at is not None:
            recorded.append(result.recorded_at)
    actions = stored("corporate_actions")
    event(f"stored actions: {min(len(actions), 6)}")
    event(f"stored symbol changes: {sum(a['action_type'] == 'symbol_change' for a in actions)}")
    model = AdjustModel(stored("market_data"), stored("securities"), actions)
    for _ in range(queries):
        at, rb = instants(rng, recorded)
        q = {"at": at, "recorded_by": rb, "adjust": rng.choice(("none", "split", "total"))}
        q["symbols"] = rng.sample((*TICKERS, "ZZZ"), rng.randint(0, 2)) or None
        q["security_ids"] = rng.sample(("S1", "S2", "S9"), rng.randint(0 if q["symbols"] else 1, 2)) or None
        if rng.random() < 0.5:
            a, b = sorted((day(rng.randint(-1, DAYS)), day(rng.randint(-1, DAYS))))
            q["start"], q["end"] = rng.choice(((a, b), (a, None), (None, b)))
        if rng.random() < 0.2:
            q["limit"] = rng.randint(1, 20)
        note(repr(q))
        try:
            want = model.answer(**q)
        except Ambiguous:
            try:
                pit.adjusted_history(**q)
            except ParameterError as exc:
                assert "give security_ids" in str(exc)
                continue
            raise AssertionError(f"the model found an ambiguous ticker, the selector did not: {q}") from None
        got = pit.adjusted_history(**q)
        raw = model.answer(**{**q, "adjust": "none"})["bars"]
        event(f"adjust={q['adjust']}: {'some bars changed' if not same_bars(raw, want['bars']) else 'no bar changed'}")
        event(f"unapplied dividends: {bool(want['unapplied'])}")
        tickers = len({(b["security_id"], b["symbol"]) for b in want["bars"]})
        event(f"bars under two tickers: {tickers > len({b['security_id'] for b in want['bars']})}")
        assert got["adjust"] == want["adjust"]
        assert got["securities"] == want["securities"], q
        assert same_bars(got["bars"], want["bars"]), (q, got["bars"], want["bars"])
        assert sorted(
            (u["security_id"], u["ex_date"], u["amount"], u["close_prev"]) for u in got["unapplied"]
        ) == sorted((u["security_id"], u["ex_date"], u["amount"], u["close_prev"]) for u in want["unapplied"]), q
