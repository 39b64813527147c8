"""The datasets (+ Symbol and the series registry): five time series and two of reference data.

Every dataset row carries ``time`` (event time), ``known_at`` (knowledge time) and ``recorded_at``
(set by tsm on commit). Rows are never updated in place by ingestion: a correction is a new version.
``time`` is a ``TimescaleDateTimeField`` so that, on the TimescaleDB lane, django-timescaledb turns
each table into a hypertable; on plain PostgreSQL it is an ordinary timestamptz column. The reference
data (securities, corporate actions: ``ReferenceRow``) is small and stays a plain table on both lanes:
its ``time`` is a plain ``DateTimeField``.

The natural-key UniqueConstraint (key + known_at + recorded_at) is the version identity, the merge's
conflict target and the index every point-in-time lookup walks backwards. Its column order puts the
series columns first and ``time`` next, so "latest row of a series known at T" is one backward index
probe. ``id`` exists for the admin (which cannot use composite keys) and for curation audit rows.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from datetime import time as dt_time

from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import models
from timescale.db.models.fields import TimescaleDateTimeField
from timescale.db.models.managers import TimescaleManager

from timeseries.rules import SYMBOL_RULE_TEXT, instant_problem, symbol_problem

PRICE = {"max_digits": 18, "decimal_places": 6}
MONEY = {"max_digits": 24, "decimal_places": 2}


class TimeSeriesRow(models.Model):
    id = models.BigAutoField(primary_key=True)
    time = TimescaleDateTimeField(interval="7 days", help_text="event time")
    known_at = models.DateTimeField(help_text="when a market participant could first have known the row")
    recorded_at = models.DateTimeField(help_text="when tsm committed this version")

    objects = models.Manager()
    timescale = TimescaleManager()

    class Meta:
        abstract = True


def version_constraint(table: str, *key: str) -> models.UniqueConstraint:
    return models.UniqueConstraint(fields=[*key, "known_at", "recorded_at"], name=f"{table}_version")


class MarketData(TimeSeriesRow):
    symbol = models.CharField(max_length=32)
    open = models.DecimalField(**PRICE)
    high = models.DecimalField(**PRICE)
    low = models.DecimalField(**PRICE)
    close = models.DecimalField(**PRICE)
    volume = models.BigIntegerField()
    vwap = models.DecimalField(**PRICE, null=True, blank=True)
    trades = models.IntegerField(null=True, blank=True)
    market_cap = models.DecimalField(**MONEY, null=True, blank=True)
    source = models.CharField(max_length=64, blank=True, default="")
    quality_score = models.FloatField(null=True, blank=True, default=1.0)

    class Meta:
        db_table = "market_data"
        verbose_name = "market data bar"
        verbose_name_plural = "market data"
        constraints = [version_constraint("market_data", "symbol", "time")]

    def __str__(self) -> str:
        return f"{self.symbol} {self.time:%Y-%m-%d %H:%M}"


class NewsEvent(TimeSeriesRow):
    symbol = models.CharField(max_length=32)
    news_id = models.CharField(max_length=128)
    title = models.TextField()
    content = models.TextField(blank=True, default="")
    source = models.CharField(max_length=128, blank=True, default="")
    sentiment = models.FloatField(null=True, blank=True)
    impact_score = models.FloatField(null=True, blank=True)
    categories = ArrayField(models.TextField(), blank=True, default=list)
    url = models.TextField(blank=True, default="")
    author = models.TextField(blank=True, default="")
    language = models.CharField(max_length=16, blank=True, default="en")
    quality_score = models.FloatField(null=True, blank=True, help_text="NULL: not scored (kept by min_quality)")

    class Meta:
        db_table = "news_events"
        constraints = [version_constraint("news_events", "symbol", "time", "news_id")]
        indexes = [models.Index(fields=["time"], name="news_events_time")]

    def __str__(self) -> str:
        return f"{self.symbol} {self.time:%Y-%m-%d %H:%M} {self.title[:40]}"


class InsiderTrade(TimeSeriesRow):
    symbol = models.CharField(max_length=32)
    insider_name = models.CharField(max_length=200)
    title = models.CharField(max_length=200, blank=True, default="")
    transaction_type = models.CharField(max_length=32)
    shares = models.BigIntegerField(null=True, blank=True)
    price = models.DecimalField(**PRICE, null=True, blank=True)
    value = models.DecimalField(**MONEY, null=True, blank=True)
    filing_date = models.DateTimeField()
    form_type = models.CharField(max_length=16, blank=True, default="4")
    is_cluster_trade = models.BooleanField(default=False)
    political_connection = models.BooleanField(default=False)

    class Meta:
        db_table = "insider_trades"
        constraints = [version_constraint("insider_trades", "symbol", "time", "insider_name", "transaction_type")]
        indexes = [models.Index(fields=["filing_date"], name="insider_trades_filing")]

    def __str__(self) -> str:
        return f"{self.symbol} {self.insider_name} {self.transaction_type} {self.time:%Y-%m-%d}"


class SocialSentiment(TimeSeriesRow):
    symbol = models.CharField(max_length=32)
    platform = models.CharField(max_length=64)
    mention_count = models.IntegerField(null=True, blank=True)
    sentiment_avg = models.FloatField(null=True, blank=True)
    sentiment_std = models.FloatField(null=True, blank=True)
    unique_users = models.IntegerField(null=True, blank=True)
    total_engagement = models.BigIntegerField(null=True, blank=True)
    momentum_score = models.FloatField(null=True, blank=True)
    viral_score = models.FloatField(null=True, blank=True)

    class Meta:
        db_table = "social_sentiment"
        verbose_name_plural = "social sentiment"
        constraints = [version_constraint("social_sentiment", "symbol", "platform", "time")]

    def __str__(self) -> str:
        return f"{self.symbol} {self.platform} {self.time:%Y-%m-%d %H:%M}"


class GovernmentEvent(TimeSeriesRow):
    event_type = models.CharField(max_length=64)
    amount = models.DecimalField(**MONEY, null=True, blank=True)
    description = models.TextField(blank=True, default="")
    primary_symbol = models.CharField(max_length=32, blank=True, default="", help_text='"" = market-wide')
    affected_symbols = ArrayField(models.TextField(), blank=True, default=list)
    sectors = ArrayField(models.TextField(), blank=True, default=list)
    country = models.CharField(max_length=64, blank=True, default="")
    state_province = models.CharField(max_length=64, blank=True, default="")
    market_impact = models.FloatField(null=True, blank=True)
    confidence = models.FloatField(null=True, blank=True)

    class Meta:
        db_table = "government_events"
        constraints = [version_constraint("government_events", "time", "event_type", "primary_symbol")]
        indexes = [
            models.Index(fields=["primary_symbol", "time"], name="government_events_symbol"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.primary_symbol or '(market)'} {self.time:%Y-%m-%d}"


class ReferenceRow(models.Model):
    """A dataset row of reference data: versioned like every dataset, never a hypertable."""

    id = models.BigAutoField(primary_key=True)
    known_at = models.DateTimeField(help_text="when a market participant could first have known the row")
    recorded_at = models.DateTimeField(help_text="when tsm committed this version")

    class Meta:
        abstract = True


class Security(ReferenceRow):
    """The security master: one security per ``security_id``; a correction (another listed_at, a
    delisting announced later) is a new version of it."""

    time = models.DateTimeField("listed_at", help_text="the listing instant (input column listed_at)")
    security_id = models.CharField(max_length=32)
    symbol = models.CharField(max_length=32, help_text="the ticker it listed under")
    name = models.TextField(blank=True, default="")
    exchange = models.CharField(max_length=16, help_text="ISO 10383 MIC (XNYS, XNAS, ...)")
    delisted_at = models.DateTimeField(null=True, blank=True)
    figi = models.CharField(max_length=12, blank=True, default="")

    class Meta:
        db_table = "securities"
        verbose_name = "security"
        verbose_name_plural = "securities"
        constraints = [version_constraint("securities", "security_id")]
        indexes = [models.Index(fields=["symbol"], name="securities_symbol")]

    def __str__(self) -> str:
        return f"{self.security_id} {self.symbol} {self.exchange}"


class CorporateAction(ReferenceRow):
    """A split, cash dividend, symbol change or delisting of a security, effective at ex_date."""

    time = models.DateTimeField("ex_date", help_text="the first session on the new basis (input column ex_date)")
    security_id = models.CharField(max_length=32)
    symbol = models.CharField(max_length=32, help_text="the ticker just before ex_date")
    action_type = models.CharField(max_length=16)
    ratio = models.DecimalField(**PRICE, null=True, blank=True, help_text="split: new shares per old share")
    amount = models.DecimalField(**PRICE, null=True, blank=True, help_text="cash_dividend: per share")
    currency = models.CharField(max_length=3, blank=True, default="USD")
    new_symbol = models.CharField(max_length=32, blank=True, default="", help_text="symbol_change: the new ticker")
    record_date = models.DateTimeField(null=True, blank=True)
    pay_date = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        db_table = "corporate_actions"
        constraints = [version_constraint("corporate_actions", "security_id", "action_type", "time")]
        indexes = [
            models.Index(fields=["time"], name="corporate_actions_time"),
            models.Index(fields=["new_symbol"], name="corporate_actions_new_symbol"),
        ]

    def __str__(self) -> str:
        return f"{self.security_id} {self.action_type} {self.time:%Y-%m-%d}"


class Series(models.Model):
    """One row per (dataset, series) ever loaded, with its event-time range.

    Maintained by the loader in the merge transaction. Selectors use it to enumerate series for
    "latest per series" lookups without scanning the datasets; the loader uses the time range to
    take the no-overlap fast path. It is not a source of truth for what was known when.
    """

    dataset = models.CharField(max_length=32)
    symbol = models.CharField(max_length=32)
    subkey = models.CharField(max_length=64, blank=True, default="")  # platform for sentiment
    first_time = models.DateTimeField()
    last_time = models.DateTimeField()

    class Meta:
        db_table = "timeseries_series"
        verbose_name_plural = "series"
        constraints = [models.UniqueConstraint(fields=["dataset", "symbol", "subkey"], name="timeseries_series_unique")]

    def __str__(self) -> str:
        return f"{self.dataset}:{self.symbol}{'/' + self.subkey if self.subkey else ''}"

    def clean(self) -> None:
        """The shared input rules (timeseries/rules.py) for the admin form."""
        _rules_check(self, symbols=("symbol",), instants=("first_time", "last_time"))


class Symbol(models.Model):
    """Reference data about instruments. Optional: no selector requires it."""

    symbol = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200, blank=True, default="")
    sector = models.CharField(max_length=64, blank=True, default="")
    exchange = models.CharField(max_length=32, blank=True, default="")
    listed_on = models.DateField(null=True, blank=True)
    delisted_on = models.DateField(null=True, blank=True)

    def __str__(self) -> str:
        return self.symbol

    def clean(self) -> None:
        """The shared input rules (timeseries/rules.py) for the admin form."""
        _rules_check(self, symbols=("symbol",), instants=("listed_on", "delisted_on"))


def _rules_check(obj: models.Model, *, symbols: tuple[str, ...], instants: tuple[str, ...]) -> None:
    """ValidationError naming each field whose symbol or instant (a date: its midnight UTC) the
    shared input rules refuse."""
    errors: dict[str, str] = {}
    for name in symbols:
        value = getattr(obj, name)
        problem = symbol_problem(value) if value not in (None, "") else None
        if problem is not None:
            errors[name] = f"{name} {value!r} {problem}: {SYMBOL_RULE_TEXT}"
    for name in instants:
        value = getattr(obj, name)
        if isinstance(value, date) and not isinstance(value, datetime):
            value = datetime.combine(value, dt_time(0), tzinfo=UTC)
        problem = instant_problem(value) if value is not None else None
        if problem is not None:
            errors[name] = f"{name}: {problem}"
    if errors:
        raise ValidationError(errors)


class DatasetGeneration(models.Model):
    """A counter per dataset, bumped in the same transaction as every change to the dataset.

    Cached answers are keyed by it, so a cached answer can never outlive the data it was computed
    from, even if Redis missed an invalidation (it lives in PostgreSQL, not in the cache).
    """

    dataset = models.CharField(max_length=32, primary_key=True)
    generation = models.BigIntegerField(default=0)
    changed_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.dataset}@{self.generation}"


class ApiToken(models.Model):
    """A bearer token with a scope. Only a SHA-256 digest of the key is stored."""

    class Scope(models.TextChoices):
        READ = "read"
        WRITE = "write"  # write implies read

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, default="")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=8, editable=False, help_text="first characters, to recognise a token")
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.READ)
    feed = models.CharField(
        max_length=64,
        blank=True,
        default="",
        help_text="a write token bound to a feed sends rows only as that feed (TSM_FEED_PRECEDENCE); "
        "blank: the caller names the feed (?feed=), or none",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.scope}) for {self.user}"


class Change(models.Model):
    """The change log: one row per series a merge wrote new versions into, with the event-time span.

    Written by the loader inside the merge transaction (so it is exactly as durable as the rows).
    Merges of one dataset run one at a time under the merge lock, so within a dataset ids become
    visible in increasing order and a consumer may remember "done through id N" (``ChangeCursor``).
    The span covers every staged row of the series, a superset of what actually changed.
    Consumers: rollups (aggregates), automatic quality checks, the InfluxDB backup.
    """

    id = models.BigAutoField(primary_key=True)
    dataset = models.CharField(max_length=32)
    symbol = models.CharField(max_length=32)
    subkey = models.CharField(max_length=64, blank=True, default="")
    first_time = models.DateTimeField()
    last_time = models.DateTimeField()
    recorded_at = models.DateTimeField(help_text="recorded_at of the versions the merge stored")

    class Meta:
        db_table = "timeseries_change"
        indexes = [models.Index(fields=["dataset", "id"], name="timeseries_change_dataset_id")]

    def __str__(self) -> str:
        return f"{self.dataset}:{self.symbol} {self.first_time}..{self.last_time} @ {self.recorded_at}"


class ChangeCursor(models.Model):
    """How far a consumer of the change log has got, per dataset."""

    consumer = models.CharField(max_length=32)
    dataset = models.CharField(max_length=32)
    last_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "timeseries_change_cursor"
        constraints = [models.UniqueConstraint(fields=["consumer", "dataset"], name="timeseries_change_cursor_unique")]

    def __str__(self) -> str:
        return f"{self.consumer}/{self.dataset} through {self.last_id}"


class OutrankedVersion(models.Model):
    """A version a feed sent for a (key, known_at) whose current version comes from a higher-ranked feed
    (TSM_FEED_PRECEDENCE). Kept, never current: it lives beside the dataset table, so no as-of answer
    (as recorded by any time) can see it. ``row``: every column of the dataset as sent."""

    id = models.BigAutoField(primary_key=True)
    dataset = models.CharField(max_length=32)
    symbol = models.CharField(max_length=32, help_text="the row's symbol column ('' when it has none)")
    time = models.DateTimeField(help_text="event time of the row")
    known_at = models.DateTimeField()
    recorded_at = models.DateTimeField(help_text="when tsm received it (the load's recorded_at)")
    feed = models.CharField(max_length=64, blank=True, default="")
    load_id = models.UUIDField(help_text="the load that sent it")
    outranked_by = models.DateTimeField(help_text="recorded_at of the current version that outranked it")
    row = models.JSONField()

    class Meta:
        db_table = "timeseries_outranked_version"
        indexes = [models.Index(fields=["dataset", "symbol", "time", "known_at"], name="outranked_version_key")]

    def __str__(self) -> str:
        when = f"{self.time:%Y-%m-%d %H:%M} known {self.known_at:%Y-%m-%d %H:%M}"
        return f"{self.dataset} {self.symbol} {when} ({self.feed or 'unnamed feed'})"


class QualityAudit(models.Model):
    """One curated row: who (user, or the check that did it), when, which row, old and new score, why.

    Written only by ``timeseries.quality`` in the same statement that changes ``quality_score`` (one
    ``UPDATE … RETURNING`` feeding one ``INSERT``), never edited. ``changed_at`` is the database's
    clock_timestamp(), on the same clock as ``recorded_at``: the score a row had "as recorded by S" is
    ``old_score`` of its earliest audit with ``changed_at > S``, else its current score.
    """

    id = models.BigAutoField(primary_key=True)
    dataset = models.CharField(max_length=32)
    row_id = models.BigIntegerField(help_text="id of the version row whose score changed")
    symbol = models.CharField(max_length=32)
    time = models.DateTimeField(help_text="event time of the row")
    known_at = models.DateTimeField()
    recorded_at = models.DateTimeField()
    old_score = models.FloatField(null=True, blank=True)
    new_score = models.FloatField(null=True, blank=True)
    reason = models.TextField()
    source = models.CharField(max_length=64, help_text='"user" or the name of the automatic check')
    user = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    changed_at = models.DateTimeField()
    batch = models.UUIDField(help_text="one curation action (all rows changed together)")

    class Meta:
        db_table = "timeseries_quality_audit"
        verbose_name = "quality audit entry"
        verbose_name_plural = "quality audit"
        indexes = [
            models.Index(fields=["dataset", "row_id", "changed_at"], name="quality_audit_row"),
            models.Index(fields=["dataset", "symbol", "time"], name="quality_audit_symbol_time"),
            models.Index(fields=["changed_at"], name="quality_audit_changed_at"),
            models.Index(fields=["batch"], name="quality_audit_batch"),
        ]

    def __str__(self) -> str:
        return f"{self.dataset}#{self.row_id} {self.old_score} -> {self.new_score} ({self.source})"


class QualityFlag(models.Model):
    """What an automatic check found about a row, with its reason and proposed score.

    One row per (dataset, row, check): re-running a check over the same span refreshes it. Checks that
    apply their score record it here with ``applied`` and in ``QualityAudit``; the others only propose.
    """

    id = models.BigAutoField(primary_key=True)
    dataset = models.CharField(max_length=32)
    row_id = models.BigIntegerField()
    symbol = models.CharField(max_length=32)
    time = models.DateTimeField()
    check_name = models.CharField(max_length=32)
    reason = models.TextField()
    proposed_score = models.FloatField(null=True, blank=True)
    applied = models.BooleanField(default=False)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "timeseries_quality_flag"
        constraints = [models.UniqueConstraint(fields=["dataset", "row_id", "check_name"], name="quality_flag_unique")]
        indexes = [models.Index(fields=["dataset", "symbol", "time"], name="quality_flag_symbol_time")]

    def __str__(self) -> str:
        return f"{self.dataset}#{self.row_id} {self.check_name}: {self.reason}"


class DailyOhlcvRollup(models.Model):
    """daily_ohlcv per symbol and UTC day, from the current versions (timeseries/aggregates.py).

    Maintained by the rollups consumer of the change log; never a source of truth (rebuilt from
    market_data). Plain PostgreSQL lane: every bucket. TimescaleDB lane: only the buckets where a key
    has several versions (the continuous aggregate ``daily_ohlcv`` serves the others).
    """

    pk = models.CompositePrimaryKey("symbol", "bucket")
    symbol = models.CharField(max_length=32)
    bucket = models.DateTimeField(help_text="UTC day start")
    open = models.DecimalField(**PRICE, null=True)
    high = models.DecimalField(**PRICE, null=True)
    low = models.DecimalField(**PRICE, null=True)
    close = models.DecimalField(**PRICE, null=True)
    volume = models.DecimalField(max_digits=38, decimal_places=0, null=True)
    pv = models.DecimalField(max_digits=50, decimal_places=6, null=True, help_text="sum(vwap x volume)")
    pv_volume = models.DecimalField(max_digits=38, decimal_places=0, null=True, help_text="volume of bars with a vwap")
    bars = models.IntegerField()
    versions = models.IntegerField(help_text="versions in the bucket (all keys)")
    max_known_at = models.DateTimeField()
    max_recorded_at = models.DateTimeField()

    class Meta:
        db_table = "timeseries_rollup_daily_ohlcv"


class HourlySentimentRollup(models.Model):
    """hourly_sentiment per symbol and hour over its platforms (see DailyOhlcvRollup)."""

    pk = models.CompositePrimaryKey("symbol", "bucket")
    symbol = models.CharField(max_length=32)
    bucket = models.DateTimeField(help_text="hour start")
    platforms = models.IntegerField()
    mentions = models.DecimalField(max_digits=38, decimal_places=0, null=True)
    weighted = models.FloatField(null=True, help_text="sum(sentiment_avg x mention_count)")
    weight = models.DecimalField(max_digits=38, decimal_places=0, null=True, help_text="mentions with a sentiment")
    versions = models.IntegerField()
    max_known_at = models.DateTimeField()
    max_recorded_at = models.DateTimeField()

    class Meta:
        db_table = "timeseries_rollup_hourly_sentiment"


class RollupState(models.Model):
    """Per aggregated dataset: when the rollups were last built from scratch (timeseries/aggregates.py).

    Without this row (fresh install, restored or truncated database) stored buckets are not trusted —
    every bucket is read live — and the rollups consumer first rebuilds everything, then creates it.
    """

    dataset = models.CharField(max_length=32, primary_key=True)
    built_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "timeseries_rollup_state"

    def __str__(self) -> str:
        return f"{self.dataset} rollups built {self.built_at:%Y-%m-%d %H:%M:%S}"


class ConsumerFailure(models.Model):
    """A change-log entry (one series' span of one merge) a consumer could not process.

    Written by the consumer run that failed on it (``timeseries.changes``), in the transaction that
    moves its cursor past the span, so the other spans and datasets go on. Open failures (no
    ``resolved_at``) are retried on later runs with a growing pause (``next_attempt_at``) and
    resolved when a retry succeeds — e.g. after ``manage.py remove_versions`` removed the bad version.
    """

    consumer = models.CharField(max_length=32)
    dataset = models.CharField(max_length=32)
    change_id = models.BigIntegerField(help_text="the change-log entry (timeseries_change.id) that failed")
    symbol = models.CharField(max_length=64, blank=True, default="")
    subkey = models.CharField(max_length=64, blank=True, default="")
    span = models.TextField(blank=True, default="", help_text="event-time span of the entry, as stored")
    error = models.TextField()
    attempts = models.IntegerField(default=1)
    first_attempt_at = models.DateTimeField()
    last_attempt_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField(help_text="the next automatic retry is due from then")
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "timeseries_consumer_failure"
        constraints = [
            models.UniqueConstraint(fields=["consumer", "dataset", "change_id"], name="consumer_failure_unique")
        ]
        indexes = [
            models.Index(
                fields=["consumer", "dataset", "next_attempt_at"],
                name="consumer_failure_due",
                condition=models.Q(resolved_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        state = "resolved" if self.resolved_at else "open"
        return f"{self.consumer}/{self.dataset} change {self.change_id} ({state})"


class VersionRemoval(models.Model):
    """Audit of one version row removed by an operator (``manage.py remove_versions``, admin action).

    ``row`` holds every stored column of the removed version as JSON (instants as ISO text, also
    those Python cannot represent), so the removal can be reviewed and, if need be, undone by hand.
    """

    dataset = models.CharField(max_length=32)
    row_id = models.BigIntegerField(help_text="id the version row had")
    symbol = models.CharField(max_length=64, blank=True, default="")
    row = models.JSONField(help_text="the removed row's stored values")
    reason = models.TextField()
    user = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor = models.CharField(max_length=150, help_text="who removed it (user name, or the command)")
    removed_at = models.DateTimeField()
    change_id = models.BigIntegerField(null=True, blank=True, help_text="the change-log entry the removal appended")

    class Meta:
        db_table = "timeseries_version_removal"
        indexes = [models.Index(fields=["dataset", "row_id"], name="version_removal_row")]

    def __str__(self) -> str:
        return f"{self.dataset}#{self.row_id} removed by {self.actor}"
