"""Each dataset declared once: every per-dataset fact lives here.

Columns, key, series, known_at rule and row checks; its model, its "state as of T" selector, how
symbols match, its id rule, its read-API filters and orderings, the time column of its timeline
windows, its automatic quality checks, its label and change summary on the pages. Loaders, checks,
selectors, the API, the pages, commands and the admin derive from these declarations; nothing
outside this module branches on a dataset's name (tests/timeseries/test_datasets.py checks the
declarations against the models).

The three instants of every row:

* ``time``        event time (bar open, transaction date, publication, window start)
* ``known_at``    knowledge time: when a market participant could first have known the row
* ``recorded_at`` system time: when tsm committed the row (set by tsm, never by the caller)

A *version* is identified by key + known_at + recorded_at; as of T (as recorded by S) the version of a
key with the greatest (known_at, recorded_at) among known_at <= T, recorded_at <= S is the truth.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc
from django.apps import apps
from django.db import models

from timeseries.formats import decimal_text
from timeseries.params import SUSPECT

# Column kinds: the Arrow type we convert input to, and the PostgreSQL type it is stored as.
KINDS: dict[str, tuple[pa.DataType, str]] = {
    "timestamp": (pa.timestamp("us", tz="UTC"), "timestamptz"),
    "price": (pa.decimal128(18, 6), "numeric(18,6)"),
    "money": (pa.decimal128(24, 2), "numeric(24,2)"),
    "float": (pa.float64(), "double precision"),
    "int": (pa.int32(), "integer"),
    "bigint": (pa.int64(), "bigint"),
    "text": (pa.string(), "text"),
    "bool": (pa.bool_(), "boolean"),
    "text[]": (pa.list_(pa.string()), "text[]"),
}


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    required: bool = False  # must be present in the input and non-null on every row
    default: object = None  # value stored when the column is absent or null
    max_length: int | None = None  # text: characters the column holds (the model's CharField max_length)
    symbol: bool = False  # text or text[]: every value obeys the symbol rule (timeseries/rules.py)
    nullable: bool | None = None  # the table column admits NULL; None: exactly when neither required nor defaulted
    # text: the values a row check admits, told to clients too (the write API's JSON schema): a regular
    # expression every non-empty value matches, or the allowed values
    pattern: str | None = None
    choices: tuple[str, ...] = ()

    @property
    def is_nullable(self) -> bool:
        """Whether the table column admits NULL (the model's ``null``)."""
        if self.nullable is not None:
            return self.nullable
        return not self.required and self.default is None

    @property
    def arrow_type(self) -> pa.DataType:
        return KINDS[self.kind][0]

    @property
    def pg_type(self) -> str:
        return KINDS[self.kind][1]


@dataclass(frozen=True)
class RowCheck:
    """A vectorised rule: ``failing(table, ctx)`` returns a boolean mask of rows that break it."""

    column: str
    message: str
    failing: Callable[[pa.Table, CheckContext], pa.ChunkedArray | pa.Array]


@dataclass(frozen=True)
class CheckContext:
    bar_interval: timedelta


@dataclass(frozen=True)
class QualityCheck:
    """An automatic quality check of a curated dataset (its SQL lives in timeseries/quality/checks.py)."""

    name: str
    proposed_score: float | None  # the score a flagged row gets (None: only flagged)
    applied: bool  # lowered automatically (never raised); else only proposed to a curator


@dataclass(frozen=True)
class QualityChecks:
    """Which checks run over a curated dataset's changed spans, and how the spans are widened."""

    suite: str  # the SQL that finds them: "bars" or "stories" (timeseries/quality/checks.py)
    checks: tuple[QualityCheck, ...]
    whole_days: bool  # widen each span to whole UTC days (else the suite adds its own margin of bars)

    def get(self, name: str) -> QualityCheck:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)


@dataclass(frozen=True)
class Dataset:
    name: str
    table: str
    columns: tuple[Column, ...]  # everything the caller may send, except known_at and recorded_at
    key: tuple[str, ...]  # identifies a fact; a version is key + known_at (+ recorded_at)
    series: tuple[str, ...]  # the columns naming one time series (for "latest per series")
    symbol_column: str
    known_at_rule: str  # human description of the default knowledge-time rule
    default_known_at: Callable[[pa.Table, CheckContext], pa.Array]
    min_known_at: Callable[[pa.Table, CheckContext], pa.Array]
    # the Django model of the table, as "app_label.ModelName" (models.py does not import this module,
    # but this module is imported before the apps are ready: resolved on use, see ``model``)
    model_label: str
    label: str  # what the pages call its rows ("Bars", "News", ...)
    # the point-in-time selector answering "the state as of T" (a function of timeseries.pit, by name)
    # and whether it is a list of events (newest first, takes ``limit``) rather than one row per series
    state_selector: str
    change_summary: Callable[[dict, dict | None], str]  # one line for a changed row (row, previous version)
    state_is_event_list: bool = False
    checks: tuple[RowCheck, ...] = field(default=())
    known_at_from: str = "time"  # the column the default known_at is derived from (named in errors)
    order_newest: tuple[str, ...] = ("time DESC",)  # a total order: ties broken by the rest of the key
    # a text[] column whose elements also name the row's symbols: asked for symbol S, a row matches
    # when symbol_column = S or S is one of these (government events: primary or affected symbols)
    symbols_array: str | None = None
    # the column placing a row in a window of the timeline (filings are placed at filing time)
    window_time_column: str = "time"
    # dataset-specific filters of the read API: parameter -> column; the column's kind picks the
    # filter: text -> comma list (IN), text[] -> comma list (overlaps), float -> <p>_min/<p>_max,
    # timestamp -> <p>_after/<p>_before (timeseries/api/filters.py)
    api_filters: tuple[tuple[str, str], ...] = ()
    # orderings of the read API beyond the version index and (time, id), each backed by an index
    api_orderings: tuple[tuple[str, tuple[str, ...]], ...] = ()
    quality_checks: QualityChecks | None = None  # curated datasets with automatic checks
    # a required column the caller may leave out: then it is derived per row by ``derive_ids`` from
    # the input's ``id`` column, else from other columns (news: a hash of source + url or title)
    id_column: str | None = None
    derive_ids: Callable[[pa.RecordBatch], pa.Array] | None = None
    # a hypertable on the TimescaleDB lane (its model's time is a TimescaleDateTimeField); False for
    # small reference data kept as plain tables on both lanes: compression, retention, continuous
    # aggregates and the chunk figures of the storage report leave it alone
    hypertable: bool = True
    # the name files, the write API and error messages give the ``time`` column ("listed_at" for a
    # security, "ex_date" for a corporate action); ``time`` is accepted too (not both in one input)
    time_input: str = "time"
    # every row's known_at is at or after its time (the loader's min_known_at makes it so): the
    # point-in-time selectors then bound their scans with time <= T. False where a row may be known
    # before its time (a listing or a split is announced before it takes effect)
    known_after_time: bool = True
    # columns the caller may give either of, the loader filling the other (and checking them against
    # each other) before any row check: ``resolve`` names a function of timeseries.securities that
    # takes (columns, rows to skip) and returns (filled columns, [(row index, column, message)])
    resolved_columns: tuple[str, ...] = ()
    resolve: str | None = None

    @property
    def model(self) -> type[models.Model]:
        """The Django model of the dataset's table (the apps must be ready)."""
        return apps.get_model(self.model_label)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def time_keyed(self) -> bool:
        """Whether ``time`` is part of the key. If not (a security: a corrected listed_at is a new
        version of the same security), a staged row can never be proven new by its time range alone
        and the loader sends every row through the version merge."""
        return "time" in self.key

    def input_name(self, column: str) -> str:
        """The name the input gives ``column`` (``time_input`` for ``time``)."""
        return self.time_input if column == "time" else column

    @property
    def value_columns(self) -> tuple[str, ...]:
        """Columns compared to decide whether an incoming row is a duplicate of the current version.

        ``quality_score`` is not one: curation changes it in place (timeseries/quality/curation.py), so a
        replayed row that differs from the stored version only in its score is a duplicate, and
        replaying a file never undoes a curation.
        """
        return tuple(c.name for c in self.columns if c.name not in self.key and c.name not in CURATED_COLUMNS)

    @property
    def curated(self) -> bool:
        """Whether rows of this dataset carry a ``quality_score`` (curation, ``min_quality``)."""
        return "quality_score" in self.column_names

    @property
    def timestamp_columns(self) -> tuple[str, ...]:
        """The instants the caller gives (each must lie in the stored range, timeseries/rules.py)."""
        return tuple(c.name for c in self.columns if c.kind == "timestamp")

    @property
    def symbol_columns(self) -> tuple[str, ...]:
        """Columns (text or text[]) whose values obey the symbol rule (timeseries/rules.py)."""
        return tuple(c.name for c in self.columns if c.symbol)

    @property
    def stored_columns(self) -> tuple[str, ...]:
        return self.column_names + ("known_at", "recorded_at")

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def accepted_input_columns(self) -> frozenset[str]:
        extra = {"known_at", self.time_input}
        if self.id_column is not None:
            extra.add("id")
        return frozenset(self.column_names) | extra

    @property
    def input_required_columns(self) -> tuple[str, ...]:
        """Required columns the input must hold, by their input names (a derived id column and the
        resolved columns may be left out)."""
        return tuple(
            self.input_name(c.name)
            for c in self.columns
            if c.required and c.name != self.id_column and c.name not in self.resolved_columns
        )

    @property
    def filters(self) -> dict[str, str]:
        """``api_filters`` as a dict: parameter -> column."""
        return dict(self.api_filters)

    @property
    def orderings(self) -> dict[str, tuple[str, ...]]:
        """``api_orderings`` as a dict: name -> columns."""
        return dict(self.api_orderings)


CURATED_COLUMNS = frozenset({"quality_score"})


# --- helpers used by the declarations -----------------------------------------------------------


def _col(t: pa.Table, name: str) -> pa.ChunkedArray:
    return t.column(name)


def _plus(t: pa.Table, name: str, delta: timedelta) -> pa.ChunkedArray:
    return pc.add(_col(t, name), pa.scalar(delta, pa.duration("us")))


def _less(a, b):
    return pc.fill_null(pc.less(a, b), False)


def _outside(t: pa.Table, name: str, lo: float, hi: float):
    c = _col(t, name)
    return pc.fill_null(pc.or_(pc.less(c, lo), pc.greater(c, hi)), False)


def _negative(t: pa.Table, name: str):
    return pc.fill_null(pc.less(_col(t, name), 0), False)


def _known_at_not_before(column: str, delta: timedelta = timedelta(0)):
    def rule(t: pa.Table, ctx: CheckContext):
        return _plus(t, column, delta) if delta else _col(t, column)

    return rule


def _market_min_known_at(t: pa.Table, ctx: CheckContext):
    return _plus(t, "time", ctx.bar_interval)


def _range_check(name: str, lo: float, hi: float) -> RowCheck:
    return RowCheck(name, f"{name} must be between {lo:g} and {hi:g}", lambda t, ctx: _outside(t, name, lo, hi))


def _non_negative(name: str) -> RowCheck:
    return RowCheck(name, f"{name} must not be negative", lambda t, ctx: _negative(t, name))


def _on_the_hour(t: pa.Table, ctx: CheckContext):
    c = _col(t, "time")
    return pc.fill_null(pc.not_equal(c, pc.floor_temporal(c, unit="hour")), False)


def _news_ids(batch: pa.RecordBatch) -> pa.Array:
    """A stable id per story: the input's ``id``, else a hash of source + url (title when no url)."""
    names = batch.schema.names

    def get(name: str) -> list:
        return batch.column(name).to_pylist() if name in names else [None] * batch.num_rows

    given = [None if v is None or str(v).strip() == "" else str(v).strip() for v in get("id")]
    out = []
    for gid, source, url, title in zip(given, get("source"), get("url"), get("title")):
        if gid is not None:
            out.append(gid)
            continue
        basis = f"{source or ''}\x1f{url or ''}" if url else f"{source or ''}\x1f\x1f{title or ''}"
        out.append("h:" + hashlib.sha1(basis.encode()).hexdigest()[:24])
    return pa.array(out, pa.string())


def _bar_summary(row: dict, prev: dict | None) -> str:
    text = f"bar {row['time']:%Y-%m-%d %H:%M} close {decimal_text(row['close'])} vol {row['volume']}"
    if prev:
        text += f" (was close {decimal_text(prev['close'])} vol {prev['volume']})"
    return text


def _news_summary(row: dict, prev: dict | None) -> str:
    return f"{row['title']}" + (f" (was: {prev['title']})" if prev and prev["title"] != row["title"] else "")


def _filing_summary(row: dict, prev: dict | None) -> str:
    return f"{row['insider_name']} {row['transaction_type']} {row['shares'] or '?'} sh, traded {row['time']:%Y-%m-%d}"


def _sentiment_summary(row: dict, prev: dict | None) -> str:
    text = f"{row['platform']} {row['time']:%Y-%m-%d %H:%M} sentiment {row['sentiment_avg']}"
    return text + (f" (was {prev['sentiment_avg']})" if prev else "")


def _government_summary(row: dict, prev: dict | None) -> str:
    return f"{row['event_type']} {row['time']:%Y-%m-%d %H:%M}: {row['description'][:80]}"


# --- the five time series datasets ----------------------------------------------------------------

MARKET_DATA = Dataset(
    name="market_data",
    table="market_data",
    model_label="timeseries.MarketData",
    label="Bars",
    state_selector="market_state",
    change_summary=_bar_summary,
    api_filters=(("source", "source"), ("quality", "quality_score")),
    quality_checks=QualityChecks(
        suite="bars",
        checks=(
            QualityCheck("ohlc", SUSPECT, True),
            QualityCheck("spike", 0.2, True),
            QualityCheck("stale", 0.5, False),
            QualityCheck("volume", 0.5, False),
            QualityCheck("gap", None, False),
        ),
        whole_days=False,
    ),
    columns=(
        Column("time", "timestamp", required=True),
        Column("symbol", "text", required=True, max_length=32, symbol=True),
        Column("open", "price", required=True),
        Column("high", "price", required=True),
        Column("low", "price", required=True),
        Column("close", "price", required=True),
        Column("volume", "bigint", required=True),
        Column("vwap", "price"),
        Column("trades", "int"),
        Column("market_cap", "money"),
        Column("source", "text", default="", max_length=64),
        Column("quality_score", "float", default=1.0, nullable=True),  # curation may set NULL (not scored)
    ),
    key=("symbol", "time"),
    series=("symbol",),
    symbol_column="symbol",
    known_at_rule="bar close: time + bar interval (default 1 minute)",
    default_known_at=_market_min_known_at,
    min_known_at=_market_min_known_at,
    checks=(
        RowCheck("high", "high is below low", lambda t, ctx: _less(_col(t, "high"), _col(t, "low"))),
        RowCheck(
            "open",
            "open is outside [low, high]",
            lambda t, ctx: pc.or_(_less(_col(t, "open"), _col(t, "low")), _less(_col(t, "high"), _col(t, "open"))),
        ),
        RowCheck(
            "close",
            "close is outside [low, high]",
            lambda t, ctx: pc.or_(_less(_col(t, "close"), _col(t, "low")), _less(_col(t, "high"), _col(t, "close"))),
        ),
        _non_negative("volume"),
        _non_negative("trades"),
        _non_negative("market_cap"),
        _range_check("quality_score", 0.0, 1.0),
    ),
)

NEWS_EVENTS = Dataset(
    name="news_events",
    table="news_events",
    model_label="timeseries.NewsEvent",
    label="News",
    state_selector="news",
    state_is_event_list=True,
    change_summary=_news_summary,
    api_filters=(("source", "source"), ("language", "language"), ("news_id", "news_id"), ("impact", "impact_score")),
    quality_checks=QualityChecks(
        suite="stories", checks=(QualityCheck("duplicate_title", 0.3, True),), whole_days=True
    ),
    id_column="news_id",
    derive_ids=_news_ids,
    columns=(
        Column("time", "timestamp", required=True),
        Column("symbol", "text", required=True, max_length=32, symbol=True),
        Column("news_id", "text", required=True, max_length=128),
        Column("title", "text", required=True),
        Column("content", "text", default=""),
        Column("source", "text", default="", max_length=128),
        Column("sentiment", "float"),
        Column("impact_score", "float"),
        Column("categories", "text[]", default=[]),
        Column("url", "text", default=""),
        Column("author", "text", default=""),
        Column("language", "text", default="en", max_length=16),
        Column("quality_score", "float"),  # NULL: not scored
    ),
    key=("symbol", "time", "news_id"),
    series=("symbol",),
    symbol_column="symbol",
    known_at_rule="publication: time",
    default_known_at=_known_at_not_before("time"),
    min_known_at=_known_at_not_before("time"),
    checks=(
        _range_check("sentiment", -1.0, 1.0),
        _range_check("impact_score", 0.0, 1.0),
        _range_check("quality_score", 0.0, 1.0),
    ),
    order_newest=("time DESC", "impact_score DESC NULLS LAST", "symbol", "news_id"),
)

INSIDER_TRADES = Dataset(
    name="insider_trades",
    table="insider_trades",
    model_label="timeseries.InsiderTrade",
    label="Insider filings",
    state_selector="insider_trades",
    state_is_event_list=True,
    change_summary=_filing_summary,
    window_time_column="filing_date",
    api_filters=(
        ("transaction_type", "transaction_type"),
        ("form_type", "form_type"),
        ("insider_name", "insider_name"),
        ("filing_date", "filing_date"),
    ),
    api_orderings=(("filing_date", ("filing_date", "id")),),
    columns=(
        Column("time", "timestamp", required=True),
        Column("symbol", "text", required=True, max_length=32, symbol=True),
        Column("insider_name", "text", required=True, max_length=200),
        Column("title", "text", default="", max_length=200),
        Column("transaction_type", "text", required=True, max_length=32),
        Column("shares", "bigint"),
        Column("price", "price"),
        Column("value", "money"),
        Column("filing_date", "timestamp", required=True),
        Column("form_type", "text", default="4", max_length=16),
        Column("is_cluster_trade", "bool", default=False),
        Column("political_connection", "bool", default=False),
    ),
    key=("symbol", "time", "insider_name", "transaction_type"),
    series=("symbol",),
    symbol_column="symbol",
    known_at_rule="filing: filing_date (never the transaction date)",
    default_known_at=_known_at_not_before("filing_date"),
    min_known_at=_known_at_not_before("filing_date"),
    known_at_from="filing_date",
    checks=(
        RowCheck(
            "filing_date",
            "filing_date is before the transaction date (time)",
            lambda t, ctx: _less(_col(t, "filing_date"), _col(t, "time")),
        ),
        _non_negative("shares"),
        _non_negative("price"),
    ),
    order_newest=("filing_date DESC", "value DESC NULLS LAST", "symbol", "time", "insider_name", "transaction_type"),
)

SOCIAL_SENTIMENT = Dataset(
    name="social_sentiment",
    table="social_sentiment",
    model_label="timeseries.SocialSentiment",
    label="Sentiment windows",
    state_selector="sentiment",
    change_summary=_sentiment_summary,
    api_filters=(("platform", "platform"),),
    columns=(
        Column("time", "timestamp", required=True),
        Column("symbol", "text", required=True, max_length=32, symbol=True),
        Column("platform", "text", required=True, max_length=64),
        Column("mention_count", "int"),
        Column("sentiment_avg", "float"),
        Column("sentiment_std", "float"),
        Column("unique_users", "int"),
        Column("total_engagement", "bigint"),
        Column("momentum_score", "float"),
        Column("viral_score", "float"),
    ),
    key=("symbol", "platform", "time"),
    series=("symbol", "platform"),
    symbol_column="symbol",
    known_at_rule="window end: time + 1 hour",
    default_known_at=_known_at_not_before("time", timedelta(hours=1)),
    min_known_at=_known_at_not_before("time", timedelta(hours=1)),
    checks=(
        RowCheck("time", "time must be the start of an hourly window", _on_the_hour),
        _non_negative("mention_count"),
        _non_negative("unique_users"),
        _non_negative("total_engagement"),
        _non_negative("sentiment_std"),
        _range_check("sentiment_avg", -1.0, 1.0),
    ),
)

GOVERNMENT_EVENTS = Dataset(
    name="government_events",
    table="government_events",
    model_label="timeseries.GovernmentEvent",
    label="Government events",
    state_selector="government_events",
    state_is_event_list=True,
    change_summary=_government_summary,
    symbols_array="affected_symbols",
    api_filters=(("event_type", "event_type"), ("sector", "sectors"), ("country", "country")),
    columns=(
        Column("time", "timestamp", required=True),
        Column("event_type", "text", required=True, max_length=64),
        Column("amount", "money"),
        Column("description", "text", default=""),
        Column("primary_symbol", "text", default="", max_length=32, symbol=True),  # "" = market-wide event
        Column("affected_symbols", "text[]", default=[], symbol=True),
        Column("sectors", "text[]", default=[]),
        Column("country", "text", default="", max_length=64),
        Column("state_province", "text", default="", max_length=64),
        Column("market_impact", "float"),
        Column("confidence", "float"),
    ),
    key=("time", "event_type", "primary_symbol"),
    series=("primary_symbol",),
    symbol_column="primary_symbol",
    known_at_rule="publication: time",
    default_known_at=_known_at_not_before("time"),
    min_known_at=_known_at_not_before("time"),
    checks=(_range_check("confidence", 0.0, 1.0), _range_check("market_impact", -1.0, 1.0)),
    order_newest=("time DESC", "event_type", "primary_symbol"),
)


# --- reference data: the security master and corporate actions (plain tables on both lanes) -------

ACTION_TYPES = ("split", "cash_dividend", "symbol_change", "delisting")
MIC_PATTERN = "^[A-Z0-9]{4}$"  # an ISO 10383 market identifier code (XNYS, XNAS, ARCX, ...)
CURRENCY_PATTERN = "^[A-Z]{3}$"  # an ISO 4217 code


def _no_lower_bound(t: pa.Table, ctx: CheckContext) -> pa.Array:
    """No earliest known_at: a listing or an action is announced before it takes effect."""
    return pa.nulls(t.num_rows, pa.timestamp("us", tz="UTC"))


def _not_matching(name: str, pattern: str):
    def failing(t: pa.Table, ctx: CheckContext):
        return pc.fill_null(pc.invert(pc.match_substring_regex(_col(t, name), pattern)), False)

    return failing


def _is_action(t: pa.Table, action: str):
    return pc.fill_null(pc.equal(_col(t, "action_type"), action), False)


def _given(t: pa.Table, name: str):
    c = _col(t, name)
    if pa.types.is_string(c.type):
        return pc.fill_null(pc.not_equal(c, ""), False)
    return pc.is_valid(c)


def _required_for(name: str, action: str, invalid=None) -> Callable[[pa.Table, CheckContext], pa.Array]:
    """``name`` must be given (and, with ``invalid``, not fail it) on rows of ``action``."""

    def failing(t: pa.Table, ctx: CheckContext):
        bad = pc.invert(_given(t, name))
        if invalid is not None:
            bad = pc.or_(bad, pc.fill_null(invalid(_col(t, name)), False))
        return pc.and_(_is_action(t, action), bad)

    return failing


def _only_for(name: str, action: str) -> RowCheck:
    return RowCheck(
        name,
        f"{name} must be empty unless action_type is {action}",
        lambda t, ctx: pc.and_(pc.invert(_is_action(t, action)), _given(t, name)),
    )


def _security_summary(row: dict, prev: dict | None) -> str:
    text = f"{row['security_id']} {row['symbol']} on {row['exchange']}, listed {row['time']:%Y-%m-%d}"
    if row.get("delisted_at"):
        text += f", delisted {row['delisted_at']:%Y-%m-%d}"
    return text


def _action_summary(row: dict, prev: dict | None) -> str:
    detail = {
        "split": lambda: f"ratio {decimal_text(row['ratio'])}",
        "cash_dividend": lambda: f"{decimal_text(row['amount'])} {row['currency']}",
        "symbol_change": lambda: f"to {row['new_symbol']}",
    }.get(row["action_type"], lambda: "")()
    parts = [f"{row['security_id']} ({row['symbol']})", row["action_type"], detail, f"ex {row['time']:%Y-%m-%d}"]
    return " ".join(p for p in parts if p)


SECURITIES = Dataset(
    name="securities",
    table="securities",
    model_label="timeseries.Security",
    label="Securities",
    state_selector="securities",
    change_summary=_security_summary,
    hypertable=False,
    time_input="listed_at",
    known_after_time=False,
    api_filters=(("ticker", "symbol"), ("exchange", "exchange"), ("delisted_at", "delisted_at")),
    columns=(
        Column("time", "timestamp", required=True),  # listed_at: the listing instant
        Column("security_id", "text", required=True, max_length=32, symbol=True),
        Column("symbol", "text", required=True, max_length=32, symbol=True),  # the ticker it listed under
        Column("name", "text", default=""),
        Column("exchange", "text", required=True, max_length=16, pattern=MIC_PATTERN),
        Column("delisted_at", "timestamp"),
        Column("figi", "text", default="", max_length=12),
    ),
    # no time: a corrected listed_at is a new version of the same security
    key=("security_id",),
    series=("security_id",),
    symbol_column="security_id",
    known_at_rule="the listing: listed_at by default; any earlier known_at (the announcement) is allowed",
    default_known_at=_known_at_not_before("time"),
    min_known_at=_no_lower_bound,
    checks=(
        RowCheck(
            "exchange",
            "exchange must be an ISO 10383 MIC: 4 characters A-Z or 0-9 (e.g. XNYS, XNAS)",
            _not_matching("exchange", MIC_PATTERN),
        ),
        RowCheck(
            "delisted_at",
            "delisted_at is before listed_at",
            lambda t, ctx: _less(_col(t, "delisted_at"), _col(t, "time")),
        ),
    ),
    order_newest=("time DESC", "security_id"),
)

CORPORATE_ACTIONS = Dataset(
    name="corporate_actions",
    table="corporate_actions",
    model_label="timeseries.CorporateAction",
    label="Corporate actions",
    state_selector="corporate_actions",
    state_is_event_list=True,
    change_summary=_action_summary,
    hypertable=False,
    time_input="ex_date",
    known_after_time=False,
    resolved_columns=("security_id", "symbol"),
    resolve="corporate_action_securities",
    api_filters=(("action_type", "action_type"), ("ticker", "symbol"), ("source", "source")),
    columns=(
        Column("time", "timestamp", required=True),  # ex_date: the first session on the new basis
        Column("security_id", "text", required=True, max_length=32, symbol=True),
        # the ticker the security traded under just before ex_date
        Column("symbol", "text", required=True, max_length=32, symbol=True),
        Column("action_type", "text", required=True, max_length=16, choices=ACTION_TYPES),
        Column("ratio", "price"),  # split: new shares per old share (a reverse split: below 1)
        Column("amount", "price"),  # cash_dividend: per share
        Column("currency", "text", default="USD", max_length=3, pattern=CURRENCY_PATTERN),
        Column("new_symbol", "text", default="", max_length=32, symbol=True),  # symbol_change: the new ticker
        Column("record_date", "timestamp"),
        Column("pay_date", "timestamp"),
        Column("source", "text", default="", max_length=64),
    ),
    key=("security_id", "action_type", "time"),
    series=("security_id",),
    symbol_column="security_id",
    known_at_rule="the announcement: ex_date when not given; any earlier known_at is allowed",
    default_known_at=_known_at_not_before("time"),
    min_known_at=_no_lower_bound,
    checks=(
        RowCheck(
            "action_type",
            f"action_type must be one of {', '.join(ACTION_TYPES)}",
            lambda t, ctx: pc.fill_null(
                pc.invert(pc.is_in(_col(t, "action_type"), value_set=pa.array(ACTION_TYPES))), False
            ),
        ),
        RowCheck(
            "ratio",
            "ratio is required for a split and must be above 0 (new shares per old share)",
            _required_for("ratio", "split", lambda c: pc.less_equal(c, 0)),
        ),
        _only_for("ratio", "split"),
        RowCheck(
            "amount",
            "amount is required for a cash_dividend and must not be negative",
            _required_for("amount", "cash_dividend", lambda c: pc.less(c, 0)),
        ),
        _only_for("amount", "cash_dividend"),
        RowCheck(
            "new_symbol", "new_symbol is required for a symbol_change", _required_for("new_symbol", "symbol_change")
        ),
        _only_for("new_symbol", "symbol_change"),
        RowCheck(
            "currency",
            "currency must be an ISO 4217 code: 3 letters A-Z (e.g. USD); empty only unless action_type is"
            " cash_dividend",
            lambda t, ctx: pc.or_(
                pc.and_(_given(t, "currency"), _not_matching("currency", CURRENCY_PATTERN)(t, ctx)),
                pc.and_(_is_action(t, "cash_dividend"), pc.invert(_given(t, "currency"))),
            ),
        ),
    ),
    order_newest=("time DESC", "security_id", "action_type"),
)

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        MARKET_DATA,
        NEWS_EVENTS,
        INSIDER_TRADES,
        SOCIAL_SENTIMENT,
        GOVERNMENT_EVENTS,
        SECURITIES,
        CORPORATE_ACTIONS,
    )
}


class UnknownDataset(ValueError):
    pass


def dataset_of_model(model: type[models.Model]) -> Dataset:
    """The declaration of a dataset model (or of an instance's class)."""
    label = model._meta.label
    for spec in DATASETS.values():
        if spec.model_label == label:
            return spec
    raise UnknownDataset(
        f"{label} is not the model of a dataset: expected one of {', '.join(s.model_label for s in DATASETS.values())}"
    )


def get_dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownDataset(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}") from None
