"""A brute-force model of adjusted history as of T (timeseries/pit/adjust.py, docs/adjustment.md).

Like tests/oracle.py, nothing here is clever: it is given every stored version of the bars, the
securities and the corporate actions (read back from the tables) and answers each question by scanning
them all, in pure Python with exact ``fractions.Fraction`` arithmetic:

* the truth as of T (as recorded by S): per key, among the versions with known_at <= T and
  recorded_at <= S, the one with the greatest (known_at, recorded_at);
* the ticker of security s at instant u: s is listed then (listed_at <= u, delisted_at null or after
  u); its ticker is the new_symbol of its latest symbol_change with ex_date <= u, else the symbol it
  listed under;
* a ticker in the query names the securities whose ticker at T is it (several: an error); none, and
  ``end`` before T: those whose ticker at ``end`` is it; none either: the bars stored under the
  ticker, unadjusted, security_id None;
* s's bars are the current bars whose symbol is s's ticker at their time;
* a bar at t of s is adjusted by s's actions with t < ex_date <= T (and ex_date after ``start``, where
  given): a split divides the prices by its ratio and multiplies the volume by it; with ``total`` a
  cash dividend multiplies the prices by 1 - amount / close_prev, close_prev the close of s's bar with
  the greatest time before ex_date; no such bar, or close_prev <= amount: the dividend is unapplied;
* prices are rounded to 6 places and volumes to integers, half to even (``round`` of a Fraction).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Context, Decimal
from fractions import Fraction

PRICES = ("open", "high", "low", "close", "vwap")


class Ambiguous(ValueError):
    """A ticker names several securities at the instant it is resolved at."""


def truth(versions: list[dict], key: tuple[str, ...], at: datetime, recorded_by: datetime | None) -> list[dict]:
    best: dict[tuple, dict] = {}
    for v in versions:
        if v["known_at"] > at or (recorded_by is not None and v["recorded_at"] > recorded_by):
            continue
        k = tuple(v[c] for c in key)
        if k not in best or (v["known_at"], v["recorded_at"]) > (best[k]["known_at"], best[k]["recorded_at"]):
            best[k] = v
    return [dict(v) for v in best.values()]


def _decimal(f: Fraction) -> Decimal:
    """A Fraction rounded to 6 places as a Decimal (exact: its denominator divides 10^6)."""
    return Context(prec=400).divide(Decimal(f.numerator), Decimal(f.denominator))


class AdjustModel:
    def __init__(self, bars: list[dict], securities: list[dict], actions: list[dict]) -> None:
        self.all_bars, self.all_securities, self.all_actions = bars, securities, actions

    def answer(
        self,
        *,
        at: datetime,
        symbols: list[str] | None = None,
        security_ids: list[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
        recorded_by: datetime | None = None,
        adjust: str = "none",
    ) -> dict:
        bars = truth(self.all_bars, ("symbol", "time"), at, recorded_by)
        secs = {s["security_id"]: s for s in truth(self.all_securities, ("security_id",), at, recorded_by)}
        actions = truth(self.all_actions, ("security_id", "action_type", "time"), at, recorded_by)

        def ticker_at(sid: str, u: datetime) -> str | None:
            s = secs[sid]
            if not (s["time"] <= u and (s["delisted_at"] is None or u < s["delisted_at"])):
                return None
            changes = [
                a for a in actions if a["security_id"] == sid and a["action_type"] == "symbol_change" and a["time"] <= u
            ]
            return max(changes, key=lambda a: a["time"])["new_symbol"] if changes else s["symbol"]

        def named(symbol: str, u: datetime) -> list[str]:
            return sorted(sid for sid in secs if ticker_at(sid, u) == symbol)

        resolutions = []
        for symbol in symbols or []:
            ids, when = named(symbol, at), at
            if not ids and end is not None and end < at:
                ids, when = named(symbol, end), end
            if len(ids) > 1:
                raise Ambiguous(symbol)
            sid = ids[0] if ids else None
            resolutions.append({"requested": symbol, "by": "symbol", "security_id": sid, "resolved_at": sid and when})
        for sid in security_ids or []:
            known = sid if sid in secs else None
            resolutions.append({"requested": sid, "by": "security_id", "security_id": known, "resolved_at": None})
        ids = list(dict.fromkeys(r["security_id"] for r in resolutions if r["security_id"] is not None))
        raw = [r["requested"] for r in resolutions if r["by"] == "symbol" and r["security_id"] is None]

        def of(sid: str) -> list[dict]:
            return [b for b in bars if ticker_at(sid, b["time"]) == b["symbol"]]

        chosen: dict[tuple, dict] = {}
        for sid in sorted(ids):
            for b in of(sid):
                chosen.setdefault((b["time"], b["symbol"]), {**b, "security_id": sid})
        for b in bars:
            if b["symbol"] in raw:
                chosen.setdefault((b["time"], b["symbol"]), {**b, "security_id": None})
        out = [chosen[k] for k in sorted(chosen) if (start is None or k[0] >= start) and (end is None or k[0] <= end)]
        if limit is not None:
            out = out[:limit]

        unapplied = []
        if adjust != "none":
            for sid in ids:
                mine = of(sid)
                steps = []  # (ex_date, price factor, volume factor)
                for a in actions:
                    if a["security_id"] != sid or not a["time"] <= at or (start is not None and a["time"] <= start):
                        continue
                    if a["action_type"] == "split":
                        steps.append((a["time"], 1 / Fraction(a["ratio"]), Fraction(a["ratio"])))
                    elif a["action_type"] == "cash_dividend" and adjust == "total":
                        before = [b for b in mine if b["time"] < a["time"]]
                        close = max(before, key=lambda b: b["time"])["close"] if before else None
                        if close is None or close <= a["amount"]:
                            unapplied.append(
                                {"security_id": sid, "ex_date": a["time"], "amount": a["amount"], "close_prev": close}
                            )
                        else:
                            steps.append((a["time"], 1 - Fraction(a["amount"]) / Fraction(close), Fraction(1)))
                for b in out:
                    if b["security_id"] != sid:
                        continue
                    price = volume = Fraction(1)
                    for ex, p, v in steps:
                        if b["time"] < ex:
                            price, volume = price * p, volume * v
                    for c in PRICES:
                        if b[c] is not None:
                            b[c] = _decimal(round(Fraction(b[c]) * price, 6))
                    b["volume"] = round(b["volume"] * volume)
        return {"adjust": adjust, "securities": resolutions, "bars": out, "unapplied": unapplied}
