"""A brute-force, in-memory model of the time model (docs/time-model.md) and of the loader's merge.

Nothing here is clever on purpose: every question is answered by scanning every stored version. The
property tests (tests/timeseries/test_pit_oracle.py) load random histories both through
``ingestion.loader`` and into an :class:`Oracle` and compare every selector of ``timeseries.pit``
with the oracle's answer.

The model
---------
* A *version* is a complete stored row: every column of the dataset, ``known_at`` and
  ``recorded_at``. Versions are never changed or removed.
* As of T (as recorded by S): for each key, among the versions with ``known_at <= T`` and
  ``recorded_at <= S`` the one with the greatest ``(known_at, recorded_at)`` is the truth; the
  others do not exist.
* One load gets one ``recorded_at``, greater than every earlier load's, and a *feed* (the source
  of its rows, "" = unnamed). A stored version's feed is its load's. Within a load, rows with the
  same (key, known_at) must carry the same values (they collapse into one, counted as duplicates);
  different values are a conflict and the load stores nothing (on_error="reject"), or every row
  of the conflicting group is rejected and the rest loaded (on_error="skip").
* Then, per key, the load's rows in known_at order. For row r at known_at K: Ks is the greatest
  known_at <= K among the key's stored versions (as they were before the load), p the load's own
  row of the key with the greatest known_at < K (if any).

  - p exists and (no Ks, or p.known_at >= Ks): r is a duplicate iff its values equal p's; else it
    is stored ("revised").
  - else, Ks exists: cur is the stored version at (key, Ks) with the greatest recorded_at. r equal
    to cur: a duplicate. Else, unless the load re-asserts: r equal to another stored version at
    (key, Ks) is a duplicate *re-sent* (kind "superseded"), else r equal to an *outranked version*
    at (key, Ks) is a duplicate re-sent (kind "outranked"). Else r is new: when Ks == K, the load
    does not overrule and its feed ranks below cur's feed, r is kept as an outranked version
    (``outranked_by`` = cur's recorded_at; never stored, never current, counted "outranked");
    otherwise it is stored ("revised").
  - else r is stored: "inserted" when the key had no version at all (stored, or earlier-known in
    the same load), else "revised".

  Ranks: the dataset's TSM_FEED_PRECEDENCE, highest first; a feed not listed (and "") ranks below
  every listed one, equal to the other unlisted ones; no list = every feed equal. "duplicates"
  counts the re-sent rows too; a re-sent row is remembered with its key, known_at, kind and the
  recorded_at of cur (:attr:`Oracle.resent_rows`). Outranked versions are kept apart
  (:attr:`Oracle.outranked`), so every answer below reads :attr:`Oracle.versions` only.

Rows given to :meth:`Oracle.load` are already typed (datetimes, ``Decimal``, floats, ints, lists);
missing or ``None`` columns get the declared defaults and ``known_at`` its dataset rule, like the
loader's checks do. :func:`typed_row` converts well-formed loader input (ISO strings...) to that.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from timeseries.datasets import DATASETS, Dataset

ONE_HOUR = timedelta(hours=1)


class OracleConflict(ValueError):
    """Two rows of one load share key and known_at but not values: the load must store nothing."""


# --- input conversion ---------------------------------------------------------------------------


def _parse_time(v: Any) -> datetime | None:
    if v is None or isinstance(v, datetime):
        return v
    d = datetime.fromisoformat(str(v).strip())
    if d.tzinfo is None:
        raise ValueError(f"naive timestamp {v!r}")
    return d.astimezone(UTC)


def _parse_list(v: Any) -> list[str] | None:
    if v is None or isinstance(v, list):
        return v
    text = str(v).strip()
    if not text:
        return []
    if text.startswith("["):
        return [str(x) for x in json.loads(text)]
    return [p.strip() for p in text.split("|") if p.strip()]


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v.strip() == "")


def typed_row(dataset: str, raw: dict) -> dict:
    """Well-formed loader input (strings as a CSV gives them) -> a typed row for :meth:`Oracle.load`."""
    spec = DATASETS[dataset]
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "id":
            out["id"] = None if _blank(value) else str(value).strip()
            continue
        kind = "timestamp" if name == "known_at" else spec.column(name).kind
        if kind == "text":
            out[name] = value
        elif kind == "text[]":
            out[name] = _parse_list(value)
        elif _blank(value):
            out[name] = None
        elif kind == "timestamp":
            out[name] = _parse_time(value)
        elif kind in ("price", "money"):
            out[name] = Decimal(str(value).strip())
        elif kind == "float":
            out[name] = float(str(value).strip())
        elif kind in ("int", "bigint"):
            out[name] = int(Decimal(str(value).strip()))
        elif kind == "bool":
            out[name] = (
                value if isinstance(value, bool) else str(value).strip().lower() in ("true", "t", "1", "yes", "y")
            )
        else:  # pragma: no cover
            raise AssertionError(kind)
    return out


def news_id_for(row: dict) -> str:
    """The loader's id rule for a story: the input's ``id``, else a hash of source + url (or title)."""
    if not _blank(row.get("id")):
        return str(row["id"]).strip()
    source, url, title = row.get("source"), row.get("url"), row.get("title")
    basis = f"{source or ''}\x1f{url or ''}" if url else f"{source or ''}\x1f\x1f{title or ''}"
    return "h:" + hashlib.sha1(basis.encode()).hexdigest()[:24]


# --- helpers ------------------------------------------------------------------------------------


def _hashable(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(v)
    return v


def key_of(spec: Dataset, row: dict) -> tuple:
    return tuple(row[k] for k in spec.key)


def values_of(spec: Dataset, row: dict) -> tuple:
    """Value columns, compared by value (Decimals numerically, floats exactly, lists element-wise)."""
    return tuple(_hashable(row[c]) for c in spec.value_columns)


def version_of(row: dict) -> tuple:
    return (row["known_at"], row["recorded_at"])


def _symbols(symbols: Iterable[str] | str | None) -> list[str] | None:
    """Same reading of a symbols argument as timeseries.pit: a string is one symbol, blanks are dropped."""
    if symbols is None:
        return None
    if isinstance(symbols, str):
        symbols = [symbols]
    return [s.strip() for s in symbols if s and s.strip()]


def _desc_nulls_last(v: Any) -> tuple:
    """Sort key component for "v DESC NULLS LAST" inside an ascending sort."""
    return (1, 0) if v is None else (0, -v)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _neg_time(t: datetime) -> int:
    """Sort key component for "t DESC" (exact, in microseconds)."""
    return -((t - _EPOCH) // timedelta(microseconds=1))


# --- the oracle ---------------------------------------------------------------------------------


class Oracle:
    def __init__(self) -> None:
        self.versions: dict[str, list[dict]] = defaultdict(list)
        self.loads: list[datetime] = []
        # versions a lower-ranked feed sent for a (key, known_at) whose current version comes from a
        # higher-ranked feed: every column, known_at, recorded_at, feed, outranked_by; never current
        self.outranked: dict[str, list[dict]] = defaultdict(list)
        # (dataset, a load's recorded_at) -> the load's feed, and the rows it found re-sent
        # ({key, known_at, kind, current_recorded_at})
        self.feeds: dict[tuple[str, datetime], str] = {}
        self.resent_rows: dict[tuple[str, datetime], list[dict]] = {}
        # dataset -> its feed precedence (TSM_FEED_PRECEDENCE), used when load() is given no ranks
        self.ranks: dict[str, tuple[str, ...]] = {}
        # curation (timeseries/quality/): per dataset, audit entries {version, old, new, changed_at}
        self.audits: dict[str, list[dict]] = defaultdict(list)

    # -- curation -----------------------------------------------------------------------------

    @staticmethod
    def version_id(spec: Dataset, row: dict) -> tuple:
        """A version's identity: key + known_at + recorded_at (the version constraint)."""
        return (*key_of(spec, row), row["known_at"], row["recorded_at"])

    def curate(self, dataset: str, version: tuple, score: float | None, changed_at: datetime) -> bool:
        """Set the stored version's score in place and audit it; a version that has the score already is
        left alone (False)."""
        spec = DATASETS[dataset]
        for v in self.versions[dataset]:
            if self.version_id(spec, v) == version:
                if v["quality_score"] == score:
                    return False
                self.audits[dataset].append(
                    {"version": version, "old": v["quality_score"], "new": score, "changed_at": changed_at}
                )
                v["quality_score"] = score
                return True
        raise KeyError(version)

    def score_at(self, dataset: str, row: dict, recorded_by: datetime | None) -> float | None:
        """The score the version had as recorded by S: old score of its earliest audit after S, else current."""
        if recorded_by is None:
            return row["quality_score"]
        version = self.version_id(DATASETS[dataset], row)
        later = [a for a in self.audits[dataset] if a["version"] == version and a["changed_at"] > recorded_by]
        return min(later, key=lambda a: a["changed_at"])["old"] if later else row["quality_score"]

    @staticmethod
    def passes(score: float | None, min_quality: float | None) -> bool:
        """min_quality keeps unscored rows (NULL) and rows scored >= min_quality."""
        return min_quality is None or score is None or score >= min_quality

    # -- writing ------------------------------------------------------------------------------

    def complete(self, spec: Dataset, row: dict, bar_interval: timedelta = timedelta(minutes=1)) -> dict:
        """The row as the loader would stage it: every column (defaults applied) and known_at."""
        unknown = set(row) - set(spec.column_names) - {"known_at", "id"}
        if unknown:
            raise ValueError(f"unknown column(s) {sorted(unknown)} for {spec.name}")
        out: dict[str, Any] = {}
        for col in spec.columns:
            value = row.get(col.name)
            if col.name == "news_id" and spec.name == "news_events" and _blank(value):
                value = news_id_for(row)
            if value is None and col.default is not None:
                value = list(col.default) if isinstance(col.default, list) else col.default
            out[col.name] = value
        known_at = row.get("known_at")
        if known_at is None:
            known_at = self.default_known_at(spec, out, bar_interval)
        out["known_at"] = known_at
        return out

    @staticmethod
    def default_known_at(spec: Dataset, row: dict, bar_interval: timedelta) -> datetime:
        if spec.name == "market_data":
            return row["time"] + bar_interval
        if spec.name == "insider_trades":
            return row["filing_date"]
        if spec.name == "social_sentiment":
            return row["time"] + ONE_HOUR
        return row["time"]

    def collapse(
        self,
        dataset: str,
        rows: list[dict],
        *,
        bar_interval: timedelta = timedelta(minutes=1),
        on_error: str = "reject",
    ) -> tuple[dict[tuple, dict], int, int]:
        """One row per (key, known_at), the number of rows collapsed into another, the number rejected.

        A conflict (same key and known_at, different values) raises OracleConflict when
        ``on_error="reject"``; with ``"skip"`` every row of the conflicting group is rejected.
        """
        spec = DATASETS[dataset]
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for row in (self.complete(spec, r, bar_interval) for r in rows):
            groups[(key_of(spec, row), row["known_at"])].append(row)
        distinct: dict[tuple, dict] = {}
        duplicates = rejected = 0
        for vk, group in groups.items():
            if len({values_of(spec, r) for r in group}) > 1:
                if on_error == "reject":
                    raise OracleConflict(f"same key and known_at, different values: {group}")
                rejected += len(group)
                continue
            distinct[vk] = group[0]
            duplicates += len(group) - 1
        return distinct, duplicates, rejected

    def rank(self, feed: str, ranks: tuple[str, ...]) -> int:
        """A feed's rank, 0 the highest; a feed not in ``ranks`` (and "") ranks below every listed one."""
        return ranks.index(feed) if feed in ranks else len(ranks)

    def feed_of(self, dataset: str, version: dict) -> str:
        """The feed of a stored version: that of the load with the same dataset and recorded_at."""
        return self.feeds[(dataset, version["recorded_at"])]

    def load(
        self,
        dataset: str,
        rows: list[dict],
        recorded_at: datetime,
        *,
        bar_interval: timedelta = timedelta(minutes=1),
        on_error: str = "reject",
        feed: str = "",
        reassert: bool = False,
        overrule: bool = False,
        ranks: tuple[str, ...] | None = None,
    ) -> dict[str, int]:
        """Apply one load; returns {"inserted", "revised", "duplicates", "rejected", "resent", "outranked"}.

        ``ranks``: the dataset's feed precedence (highest first) for this load; None: ``self.ranks``'s
        entry for the dataset (none: every feed ranks the same). Raises OracleConflict (and applies
        nothing) for a conflict when ``on_error="reject"``.
        """
        spec = DATASETS[dataset]
        if self.loads and recorded_at <= self.loads[-1]:
            raise AssertionError(f"recorded_at {recorded_at} is not after the previous load's {self.loads[-1]}")
        if ranks is None:
            ranks = self.ranks.get(dataset, ())
        distinct, duplicates, rejected = self.collapse(dataset, rows, bar_interval=bar_interval, on_error=on_error)
        by_key: dict[tuple, list[dict]] = defaultdict(list)
        for (key, _), row in distinct.items():
            by_key[key].append(row)
        stored = self.by_key(dataset)  # as before the load: this load's versions are judged by the rule's p
        kept_apart = defaultdict(list)
        for o in self.outranked[dataset]:
            kept_apart[key_of(spec, o)].append(o)
        inserted = revised = resent = outranked = 0
        new_versions, new_outranked, resent_rows = [], [], []
        for key, group in by_key.items():
            group.sort(key=lambda r: r["known_at"])
            existing = stored.get(key, [])
            for i, row in enumerate(group):
                k = row["known_at"]
                ks = max((v["known_at"] for v in existing if v["known_at"] <= k), default=None)
                p = group[i - 1] if i > 0 else None  # sorted, one row per known_at: the greatest known_at < K
                if p is not None and (ks is None or p["known_at"] >= ks):
                    if values_of(spec, row) == values_of(spec, p):
                        duplicates += 1
                        continue
                    revised += 1
                    new_versions.append({**row, "recorded_at": recorded_at})
                    continue
                if ks is not None:
                    at_ks = [v for v in existing if v["known_at"] == ks]
                    cur = max(at_ks, key=lambda v: v["recorded_at"])
                    if values_of(spec, row) == values_of(spec, cur):
                        duplicates += 1
                        continue
                    kind = None
                    if not reassert:
                        if any(values_of(spec, row) == values_of(spec, v) for v in at_ks):
                            kind = "superseded"
                        elif any(
                            values_of(spec, row) == values_of(spec, o) for o in kept_apart[key] if o["known_at"] == ks
                        ):
                            kind = "outranked"
                    if kind is not None:
                        duplicates += 1
                        resent += 1
                        resent_rows.append(
                            {"key": key, "known_at": k, "kind": kind, "current_recorded_at": cur["recorded_at"]}
                        )
                        continue
                    if (
                        ks == k
                        and not overrule
                        and self.rank(feed, ranks) > self.rank(self.feed_of(dataset, cur), ranks)
                    ):
                        outranked += 1
                        new_outranked.append(
                            {**row, "recorded_at": recorded_at, "feed": feed, "outranked_by": cur["recorded_at"]}
                        )
                        continue
                    revised += 1
                    new_versions.append({**row, "recorded_at": recorded_at})
                    continue
                if existing or i > 0:
                    revised += 1
                else:
                    inserted += 1
                new_versions.append({**row, "recorded_at": recorded_at})
        self.versions[dataset].extend(new_versions)
        self.outranked[dataset].extend(new_outranked)
        self.resent_rows[(dataset, recorded_at)] = resent_rows
        self.feeds[(dataset, recorded_at)] = feed
        self.loads.append(recorded_at)
        return {
            "inserted": inserted,
            "revised": revised,
            "duplicates": duplicates,
            "rejected": rejected,
            "resent": resent,
            "outranked": outranked,
        }

    # -- reading ------------------------------------------------------------------------------

    def by_key(self, dataset: str) -> dict[tuple, list[dict]]:
        spec = DATASETS[dataset]
        out: dict[tuple, list[dict]] = defaultdict(list)
        for v in self.versions[dataset]:
            out[key_of(spec, v)].append(v)
        return out

    def all_versions(self, dataset: str) -> list[dict]:
        return [dict(v) for v in self.versions[dataset]]

    def current(
        self, dataset: str, at: datetime, recorded_by: datetime | None = None, min_quality: float | None = None
    ) -> list[dict]:
        """The truth as of ``at`` (as recorded by ``recorded_by``): one version per key, unordered.

        Curated datasets: ``quality_score`` is the score as it stood at ``recorded_by``; ``min_quality``
        then drops the truths scored below it (they are not replaced by an older version)."""
        spec = DATASETS[dataset]
        best: dict[tuple, dict] = {}
        for v in self.versions[dataset]:
            if v["known_at"] > at or (recorded_by is not None and v["recorded_at"] > recorded_by):
                continue
            k = key_of(spec, v)
            if k not in best or version_of(v) > version_of(best[k]):
                best[k] = v
        if "quality_score" not in spec.column_names:
            return [dict(v) for v in best.values()]
        out = [{**v, "quality_score": self.score_at(dataset, v, recorded_by)} for v in best.values()]
        return [v for v in out if self.passes(v["quality_score"], min_quality)]

    def _latest_per_series(self, dataset: str, at, symbols, recorded_by, min_quality=None) -> list[dict]:
        spec = DATASETS[dataset]
        symbols = _symbols(symbols)
        latest: dict[tuple, dict] = {}
        for row in self.current(
            dataset, at, recorded_by, **({"min_quality": min_quality} if min_quality is not None else {})
        ):
            if symbols is not None and row[spec.symbol_column] not in symbols:
                continue
            s = tuple(row[c] for c in spec.series)
            if s not in latest or row["time"] > latest[s]["time"]:
                latest[s] = row
        return [latest[s] for s in sorted(latest)]

    def market_state(
        self, *, at: datetime, symbols=None, recorded_by: datetime | None = None, min_quality=None
    ) -> list[dict]:
        """Per symbol its latest bar known at ``at`` (with min_quality: its latest good bar), ordered by symbol."""
        return self._latest_per_series("market_data", at, symbols, recorded_by, min_quality)

    def recent_bars(
        self, *, symbol: str, at: datetime, bars: int = 200, recorded_by: datetime | None = None, min_quality=None
    ) -> list[dict]:
        """The last ``bars`` bars of ``symbol`` known at ``at`` (current versions, every column), oldest first."""
        current = self.current("market_data", at, recorded_by, min_quality)
        rows = sorted((r for r in current if r["symbol"] == symbol), key=lambda r: r["time"])
        return rows[-bars:]

    def sentiment(self, *, at: datetime, symbols=None, recorded_by: datetime | None = None) -> list[dict]:
        """Per (symbol, platform) the latest window known at ``at``, ordered by symbol, platform."""
        return self._latest_per_series("social_sentiment", at, symbols, recorded_by)

    # ordering keys (the selectors' documented order) and total tie-breakers

    @staticmethod
    def news_order(row: dict) -> tuple:
        return (_neg_time(row["time"]), _desc_nulls_last(row["impact_score"]))

    @staticmethod
    def insider_order(row: dict) -> tuple:
        return (_neg_time(row["filing_date"]), _desc_nulls_last(row["value"]))

    @staticmethod
    def government_order(row: dict) -> tuple:
        return (_neg_time(row["time"]),)

    def _listing(self, dataset, rows, order, limit) -> list[dict]:
        spec = DATASETS[dataset]
        rows.sort(key=lambda r: (order(r), key_of(spec, r)))
        return rows if limit is None else rows[:limit]

    def news(
        self,
        *,
        at: datetime,
        symbols=None,
        limit: int | None = 1000,
        recorded_by: datetime | None = None,
        min_quality=None,
    ) -> list[dict]:
        """Stories known at ``at``, time desc then impact_score desc nulls last (ties: by key)."""
        symbols = _symbols(symbols)
        rows = [
            r
            for r in self.current("news_events", at, recorded_by, min_quality)
            if symbols is None or r["symbol"] in symbols
        ]
        return self._listing("news_events", rows, self.news_order, limit)

    def insider_trades(
        self, *, at: datetime, symbols=None, limit: int | None = 500, recorded_by: datetime | None = None
    ) -> list[dict]:
        """Current trades filed by ``at``, filing_date desc then value desc nulls last (ties: by key)."""
        symbols = _symbols(symbols)
        rows = [
            r
            for r in self.current("insider_trades", at, recorded_by)
            if r["filing_date"] <= at and (symbols is None or r["symbol"] in symbols)
        ]
        return self._listing("insider_trades", rows, self.insider_order, limit)

    def government_events(
        self, *, at: datetime, symbols=None, sectors=None, limit: int | None = 1000, recorded_by: datetime | None = None
    ) -> list[dict]:
        """Events whose primary or affected symbols or sectors match (no filter: all), time desc."""
        symbols, sectors = _symbols(symbols), _symbols(sectors)

        def matches(r: dict) -> bool:
            if symbols is None and sectors is None:
                return True
            if symbols is not None and (
                r["primary_symbol"] in symbols or set(r["affected_symbols"] or ()) & set(symbols)
            ):
                return True
            return sectors is not None and bool(set(r["sectors"] or ()) & set(sectors))

        rows = [r for r in self.current("government_events", at, recorded_by) if matches(r)]
        return self._listing("government_events", rows, self.government_order, limit)

    def history(
        self,
        *,
        dataset: str,
        at: datetime,
        symbols=None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
        recorded_by: datetime | None = None,
        min_quality: float | None = None,
    ) -> list[dict]:
        """Current rows with event time in [start, end], ordered by key."""
        spec = DATASETS[dataset]
        symbols = _symbols(symbols)
        rows = [
            r
            for r in self.current(
                dataset, at, recorded_by, **({"min_quality": min_quality} if min_quality is not None else {})
            )
            if (symbols is None or r[spec.symbol_column] in symbols)
            and (start is None or r["time"] >= start)
            and (end is None or r["time"] <= end)
        ]
        rows.sort(key=lambda r: key_of(spec, r))
        return rows if limit is None else rows[:limit]

    def asof_candidates(
        self, point: dict, dataset: str, recorded_by: datetime | None = None, min_quality: float | None = None
    ) -> list[dict]:
        """Every current row of the point's series known at its time whose event time is the latest."""
        spec = DATASETS[dataset]
        at = point["time"]
        kw = {"min_quality": min_quality} if min_quality is not None else {}
        rows = [r for r in self.current(dataset, at, recorded_by, **kw) if all(r[c] == point[c] for c in spec.series)]
        if not rows:
            return []
        newest = max(r["time"] for r in rows)
        return [r for r in rows if r["time"] == newest]

    def asof_join(
        self, points: list[dict], dataset: str = "market_data", recorded_by: datetime | None = None, min_quality=None
    ) -> list[dict]:
        """One dict per point, in order: the point's series columns, ``at`` and the latest row's columns.

        Where several keys of the series share the latest event time (news, insider trades...), the
        one with the greatest rest of the key is taken; callers comparing with pit should accept any
        of :meth:`asof_candidates`.
        """
        spec = DATASETS[dataset]
        rest = [k for k in spec.key if k not in spec.series and k != "time"]
        out = []
        for p in points:
            cands = self.asof_candidates(p, dataset, recorded_by, min_quality)
            row = max(cands, key=lambda r: tuple(r[k] for k in rest), default=None)
            d = {"at": p["time"], **{c: p[c] for c in spec.series}}
            for c in spec.stored_columns:
                if c not in spec.series:
                    d[c] = None if row is None else row[c]
            out.append(d)
        return out


# --- the quality checks' gap rule (timeseries/quality/checks.py, docs/calendars.md) -----------------


def trading_periods(schedule) -> list[tuple[datetime, datetime]]:
    """[start, end) trading periods of an exchange-calendars schedule (DataFrame): [open, close), or the
    halves around a lunch break. Read straight from the package, not through timeseries.calendars."""
    out = []
    for o, bs, be, c in zip(schedule["open"], schedule["break_start"], schedule["break_end"], schedule["close"]):
        o, c = o.to_pydatetime(), c.to_pydatetime()
        if bs is None or bs != bs or be != be:  # NaT: no break
            out.append((o, c))
        else:
            out += [(o, bs.to_pydatetime()), (be.to_pydatetime(), c)]
    return out


def gap_findings(times: list[datetime], periods: list[tuple[datetime, datetime]]) -> dict[datetime, int]:
    """Brute force: the bars (sorted distinct times of one series) the gap check flags, with the minutes
    missing before each. A bar is flagged when the bar before it is more than a minute earlier, both lie
    in one trading period, and among the steps of the 30 bars either side (a step: a bar's time minus
    the previous bar's) one is exactly a minute and none is shorter."""
    minute = timedelta(minutes=1)
    steps = [None] + [b - a for a, b in zip(times, times[1:])]
    out = {}
    for i in range(1, len(times)):
        around = [s for s in steps[max(0, i - 30) : i + 31] if s is not None]
        if steps[i] <= minute or minute not in around or any(s < minute for s in around):
            continue
        if any(start <= times[i - 1] and times[i] < end for start, end in periods):
            out[times[i]] = int(steps[i].total_seconds()) // 60 - 1
    return out
