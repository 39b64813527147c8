"""The timeline pages' view logic: access, parameter errors (400 naming the parameter), redirects,
same-origin assets, the overview's query count, and what the pages show as of T against the oracle.

The no-look-ahead tests load seeded random histories (several loads: late bars, corrections with a
later known_at, news published late, filings days after the trade, sentiment windows, government
events) through the loader and into ``tests.oracle.Oracle`` and compare what the page's context and
HTML show at many T with the oracle's answer at T.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import reverse

from ingestion.loader import ingest_table
from tests.helpers import T0, assert_same_rows, assert_same_sequence, bar, wipe_datasets
from tests.oracle import Oracle, typed_row
from timeseries.views.timeline import iso

SYMS = ("AAA", "BBB", "CCC")
HOUR0 = T0.replace(minute=0)


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("staff", password="pw-staff-1", is_staff=True)


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def symbol_url(symbol: str = "AAA", **params) -> str:
    return reverse("timeline-symbol", args=[symbol]) + (
        "?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else ""
    )


def overview_url(**params) -> str:
    return reverse("timeline-overview") + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")


AT = "2024-03-01T15:00:00Z"


@pytest.fixture
def aaa(db):
    """A bar of AAA known before AT (a symbol nothing is known of answers 404)."""
    ingest_table(dataset="market_data", data=[bar("AAA", 0)])


# --- access ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [overview_url(at=AT), symbol_url(at=AT)])
def test_it_sends_anonymous_users_to_the_login_page(client, db, url):
    response = client.get(url)
    assert response.status_code == 302
    target = urlsplit(response["Location"])
    assert target.path == "/accounts/login/" and parse_qs(target.query)["next"] == [url]


@pytest.mark.parametrize("url", [overview_url(at=AT), symbol_url(at=AT)])
def test_it_refuses_a_user_without_staff_or_the_read_permission(client, django_user_model, url):
    client.force_login(django_user_model.objects.create_user("reader", password="x"))
    response = client.get(url)
    assert response.status_code == 403
    assert "timeseries.view_marketdata" in response.content.decode()


def test_it_lets_in_a_user_with_the_read_permission(client, django_user_model, aaa):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("reader", password="x")
    user.user_permissions.add(Permission.objects.get(content_type__app_label="timeseries", codename="view_marketdata"))
    client.force_login(user)
    assert client.get(overview_url(at=AT)).status_code == 200
    assert client.get(symbol_url(at=AT)).status_code == 200


def test_it_logs_a_reader_in_through_the_login_page(client, django_user_model):
    django_user_model.objects.create_user("reader", password="pw-reader-1", is_staff=True)
    response = client.post(
        "/accounts/login/", {"username": "reader", "password": "pw-reader-1", "next": overview_url(at=AT)}
    )
    assert response.status_code == 302 and response["Location"] == overview_url(at=AT)


# --- parameters -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, name, words",
    [
        ({"at": "yesterday"}, "at", "not an ISO 8601 timestamp"),
        ({"at": "2024-03-01T15:00:00"}, "at", "no UTC offset"),
        ({"at": AT, "recorded_by": "2024-13-01T00:00:00Z"}, "recorded_by", "not an ISO 8601"),
        ({"at": AT, "from": "2024-03-02T00:00:00Z", "to": "2024-03-01T00:00:00Z"}, "from", "before to"),
        ({"at": AT, "from": "1990-01-01T00:00:00Z"}, "from", "at most"),
        ({"at": AT, "since": "2024-03-02T00:00:00Z"}, "since", "must not be after at"),
        ({"at": AT, "form": "2024-03-01T00:00:00Z"}, "form", "not a parameter"),
    ],
)
def test_it_answers_400_naming_the_bad_parameter_of_the_symbol_page(staff_client, params, name, words):
    response = staff_client.get(reverse("timeline-symbol", args=["AAA"]), params)
    assert response.status_code == 400
    message = response.context["message"]
    assert message.startswith(name) and words in message, message


@pytest.mark.parametrize(
    "params, name",
    [
        ({"at": "2024-03-01 15:00"}, "at"),
        ({"at": AT, "sort": "price"}, "sort"),
        ({"at": AT, "recorded_by": "x"}, "recorded_by"),
    ],
)
def test_it_answers_400_naming_the_bad_parameter_of_the_overview(staff_client, params, name):
    response = staff_client.get(reverse("timeline-overview"), params)
    assert response.status_code == 400 and response.context["message"].startswith(name)


def test_it_answers_400_for_a_symbol_that_is_not_a_ticker(staff_client):
    response = staff_client.get(symbol_url("A%20B", at=AT))
    assert response.status_code == 400 and response.context["message"].startswith("symbol")


def test_it_redirects_a_page_without_at_to_the_newest_knowledge_time(staff_client):
    wipe_datasets()
    ingest_table(dataset="market_data", data=[bar("AAA", 0), bar("AAA", 5)])
    response = staff_client.get(symbol_url("AAA", **{"from": "2024-03-01T00:00:00Z"}))
    assert response.status_code == 302
    query = parse_qs(urlsplit(response["Location"]).query)
    assert query["at"] == [iso(T0 + timedelta(minutes=6))] and query["from"] == ["2024-03-01T00:00:00Z"]
    assert parse_qs(urlsplit(staff_client.get(overview_url())["Location"]).query)["at"] == [
        iso(T0 + timedelta(minutes=6))
    ]


def test_it_puts_t_in_every_step_link(staff_client, aaa):
    response = staff_client.get(symbol_url("AAA", at=AT))
    steps = dict(response.context["steps"])
    at = datetime(2024, 3, 1, 15, tzinfo=UTC)
    for label, delta in (
        ("-1 day", -timedelta(days=1)),
        ("-1 hour", -timedelta(hours=1)),
        ("+1 hour", timedelta(hours=1)),
        ("+1 day", timedelta(days=1)),
    ):
        query = parse_qs(urlsplit(steps[label]).query)
        assert query["at"] == [iso(at + delta)]
        assert datetime.fromisoformat(query["since"][0]) <= at + delta  # never a comparison with the future


# --- assets ---------------------------------------------------------------------------------------


def test_it_loads_scripts_and_styles_only_from_the_site_itself(staff_client, aaa):
    html = staff_client.get(symbol_url("AAA", at=AT)).content.decode()
    sources = re.findall(r"""<(?:script|link|img|iframe)\b[^>]*?\b(?:src|href)=["']([^"']+)""", html)
    assert any("plotly.min.js" in s for s in sources)
    for src in sources:
        if src.startswith("data:"):  # inline (the empty favicon): no request at all
            continue
        parts = urlsplit(src)
        assert not parts.scheme and not parts.netloc and src.startswith("/"), f"asset from elsewhere: {src}"


def test_it_serves_plotly_from_the_installed_package(client, db):
    import plotly

    response = client.get(reverse("timeline-asset", args=["plotly.min.js"]))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/javascript")
    body = b"".join(response.streaming_content)
    assert (
        len(body) > 1_000_000 and body == (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_bytes()
    )
    assert client.get("/timeline/assets/settings.py").status_code == 404
    assert client.get("/timeline/assets/..%2Fpages.py").status_code == 404


# --- query count ----------------------------------------------------------------------------------


def load_symbols(n: int) -> None:
    rows = [bar(f"S{i:03d}", m) for i in range(n) for m in range(3)]
    ingest_table(dataset="market_data", data=rows)
    ingest_table(
        dataset="social_sentiment",
        data=[
            {
                "time": HOUR0.isoformat(),
                "symbol": f"S{i:03d}",
                "platform": p,
                "mention_count": "5",
                "sentiment_avg": "0.1",
            }
            for i in range(n)
            for p in ("reddit", "x")
        ],
    )


def test_it_reads_the_overview_in_a_fixed_number_of_queries(staff_client, django_assert_num_queries):
    wipe_datasets()
    load_symbols(3)
    at = iso(T0 + timedelta(hours=2))
    staff_client.get(overview_url(at=at))  # warm the session
    # session + user (2), market_state (1), sentiment (1): the same for 3 symbols and for 40
    with django_assert_num_queries(4):
        response = staff_client.get(overview_url(at=at))
    assert len(response.context["rows"]) == 3
    load_symbols(40)
    with django_assert_num_queries(4):
        response = staff_client.get(overview_url(at=at, sort="-close"))
    assert len(response.context["rows"]) == 40


# --- no look-ahead, against the oracle -------------------------------------------------------------


class History:
    """A seeded random history of all five datasets, loaded through the loader and into the oracle."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.oracle = Oracle()
        self.news_titles: dict[tuple, str] = {}

    def load(self, dataset: str, rows: list[dict]) -> None:
        if not rows:
            return
        result = ingest_table(dataset=dataset, data=[dict(r) for r in rows])
        expected = (
            self.oracle.load(dataset, [typed_row(dataset, r) for r in rows], result.recorded_at)
            if result.recorded_at
            else None
        )
        assert expected is None or expected == result.counts()

    def build(self) -> History:
        rng = self.rng
        wipe_datasets()
        for round_ in range(3):
            bars, news, trades, windows, gov = [], [], [], [], []
            for sym in SYMS:
                for _ in range(rng.randint(10, 30)):
                    minute = rng.randrange(0, 3 * 24 * 60)
                    late = rng.random() < 0.2
                    close = rng.choice(["9.5", "10", "10.5", "10.25"])
                    row = bar(sym, minute, close=close)
                    if late:
                        row["known_at"] = (T0 + timedelta(minutes=minute + rng.randrange(2, 600))).isoformat()
                    bars.append(row)
                for i in range(rng.randint(2, 6)):
                    t = T0 + timedelta(minutes=rng.randrange(0, 3 * 24 * 60))
                    key = (sym, round_, i)
                    title = f"story-{sym}-{round_}-{i}-{rng.randrange(10**6)}"
                    self.news_titles[key] = title
                    news.append(
                        {
                            "time": t.isoformat(),
                            "symbol": sym,
                            "news_id": f"n-{round_}-{i}",
                            "title": title,
                            "impact_score": str(rng.choice([0.1, 0.5, 0.9])),
                            "known_at": (t + timedelta(minutes=rng.choice([0, 0, 30, 300]))).isoformat(),
                        }
                    )
                for i in range(rng.randint(0, 3)):
                    t = T0 + timedelta(days=rng.randrange(0, 3), hours=rng.randrange(0, 6))
                    trades.append(
                        {
                            "time": t.isoformat(),
                            "symbol": sym,
                            "insider_name": f"insider-{sym}-{round_}-{i}",
                            "transaction_type": rng.choice(["buy", "sell"]),
                            "shares": str(rng.randrange(1, 1000)),
                            "filing_date": (t + timedelta(hours=rng.randrange(1, 60))).isoformat(),
                        }
                    )
                for platform in ("reddit", "x"):
                    for h in rng.sample(range(72), 10):
                        windows.append(
                            {
                                "time": (HOUR0 + timedelta(hours=h)).isoformat(),
                                "symbol": sym,
                                "platform": platform,
                                "mention_count": str(rng.randrange(1, 50)),
                                "sentiment_avg": str(rng.choice([-0.5, 0.0, 0.25, 0.75])),
                            }
                        )
                t = T0 + timedelta(minutes=rng.randrange(0, 3 * 24 * 60))
                gov.append(
                    {
                        "time": t.isoformat(),
                        "event_type": f"hearing-{round_}",
                        "primary_symbol": sym,
                        "description": f"gov-{sym}-{round_}",
                    }
                )
            for dataset, rows in (
                ("market_data", bars),
                ("news_events", news),
                ("insider_trades", trades),
                ("social_sentiment", windows),
                ("government_events", gov),
            ):
                seen, unique = set(), []
                for r in rows:  # one version per (key, known_at) within a load
                    k = tuple(
                        sorted(
                            (c, r[c])
                            for c in r
                            if c
                            in (
                                "time",
                                "symbol",
                                "news_id",
                                "insider_name",
                                "transaction_type",
                                "platform",
                                "event_type",
                                "primary_symbol",
                                "known_at",
                            )
                        )
                    )
                    if k not in seen:
                        seen.add(k)
                        unique.append(r)
                self.load(dataset, unique)
        return self

    def instants(self) -> list[datetime]:
        out = set()
        for versions in self.oracle.versions.values():
            for v in versions:
                out |= {v["known_at"], v["known_at"] - timedelta(microseconds=1)}
        return sorted(out)


def oracle_daily(rows: list[dict]) -> list[tuple]:
    days: dict[datetime, list[dict]] = defaultdict(list)
    for r in rows:
        days[r["time"].replace(hour=0, minute=0, second=0, microsecond=0)].append(r)
    out = []
    for day, bars in sorted(days.items()):
        bars.sort(key=lambda b: b["time"])
        out.append(
            (
                day,
                bars[0]["open"],
                max(b["high"] for b in bars),
                min(b["low"] for b in bars),
                bars[-1]["close"],
                sum(b["volume"] for b in bars),
            )
        )
    return out


def oracle_hourly(rows: list[dict]) -> list[tuple]:
    hours: dict[datetime, list[dict]] = defaultdict(list)
    for r in rows:
        hours[r["time"]].append(r)
    return [
        (h, sum(r["sentiment_avg"] * r["mention_count"] for r in rs) / sum(r["mention_count"] for r in rs))
        for h, rs in sorted(hours.items())
    ]


def check_symbol_page(
    client, history: History, symbol: str, at: datetime, *, start: datetime, end: datetime, explicit: bool, rb=None
) -> None:
    o = history.oracle
    params = {"at": iso(at)}
    if explicit:
        params |= {"from": iso(start), "to": iso(end)}
    if rb is not None:
        params["recorded_by"] = iso(rb)
    response = client.get(reverse("timeline-symbol", args=[symbol]), params)
    assert response.status_code == 200, response.content[:500]
    ctx, html = response.context, response.content.decode()
    what = f"{symbol} at={iso(at)} rb={rb} from={iso(start)} to={iso(end)}"
    bars = o.history(dataset="market_data", at=at, symbols=[symbol], start=start, end=end, recorded_by=rb)
    if ctx["resolution"] == "1min":
        assert_same_sequence(ctx["bars"], bars, f"bars {what}")
    else:
        got = [(b["time"], b["open"], b["high"], b["low"], b["close"], b["volume"]) for b in ctx["bars"]]
        assert got == oracle_daily(bars), f"daily bars {what}"
    news = [n for n in o.history(dataset="news_events", at=at, symbols=[symbol], start=start, end=end, recorded_by=rb)]
    assert_same_rows(ctx["news"], news, f"news {what}")
    trades = [
        t
        for t in o.insider_trades(at=at, symbols=[symbol], limit=None, recorded_by=rb)
        if start <= t["filing_date"] <= end
    ]
    assert_same_rows(ctx["filings"], trades, f"filings {what}")
    gov = [
        g for g in o.government_events(at=at, symbols=[symbol], limit=None, recorded_by=rb) if start <= g["time"] <= end
    ]
    assert_same_rows(ctx["government"], gov, f"government {what}")
    windows = o.history(
        dataset="social_sentiment", at=at, symbols=[symbol], start=start - timedelta(hours=1), end=end, recorded_by=rb
    )
    windows = [w for w in windows if w["time"] + timedelta(hours=1) > start]
    got = [(s["time"], round(s["sentiment"], 9)) for s in ctx["sentiment"]]
    if ctx["resolution"] == "1min":
        assert got == [(h, round(v, 9)) for h, v in oracle_hourly(windows)], f"sentiment {what}"
    else:  # the day's windows, weighted by mentions
        days = defaultdict(list)
        for w in windows:
            days[w["time"].replace(hour=0)].append(w)
        want = [
            (
                d,
                round(
                    sum(w["sentiment_avg"] * w["mention_count"] for w in ws) / sum(w["mention_count"] for w in ws), 9
                ),
            )
            for d, ws in sorted(days.items())
        ]
        assert got == want, f"daily sentiment {what}"
    state = o.market_state(at=at, symbols=[symbol], recorded_by=rb)
    assert_same_rows([ctx["state"]["market"]] if ctx["state"]["market"] else [], state, f"state {what}")
    for rows in ctx["changes"].values():
        assert all(ctx["since"] < r["known_at"] <= at for r in rows), f"change outside (since, at] {what}"
    # nothing known only after T: news titles of keys not yet known are not in the page
    known_titles = {n["title"] for n in o.news(at=at, symbols=[symbol], limit=None, recorded_by=rb)}
    for version in o.versions["news_events"]:
        if version["symbol"] == symbol and version["title"] not in known_titles:
            assert version["title"] not in html, f"{version['title']} (known_at {version['known_at']}) shown {what}"
    for n in news:
        assert n["title"] in html, f"{n['title']} missing {what}"
    newest = [r["recorded_at"] for rows in (bars, news, trades, gov, state) for r in rows]
    if ctx["max_recorded_at"] is not None:
        assert ctx["max_recorded_at"] >= max(newest, default=ctx["max_recorded_at"])
        assert rb is None or ctx["max_recorded_at"] <= rb
        assert iso(ctx["max_recorded_at"]) in html


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_it_shows_on_the_symbol_page_exactly_what_the_oracle_knew_at_t(staff_client, seed):
    history = History(seed).build()
    rng = random.Random(seed)
    ts = history.instants()
    loads = sorted(history.oracle.loads)
    for _ in range(12):
        at = rng.choice(ts)
        symbol = rng.choice(SYMS)
        rb = rng.choice([None, None, rng.choice(loads)])
        if rng.random() < 0.5:
            check_symbol_page(
                staff_client, history, symbol, at, start=at - timedelta(days=2), end=at, explicit=False, rb=rb
            )
        else:
            start = T0 - timedelta(hours=rng.randrange(0, 30))
            check_symbol_page(
                staff_client,
                history,
                symbol,
                at,
                start=start,
                end=start + timedelta(days=3, hours=1),
                explicit=True,
                rb=rb,
            )


@pytest.mark.parametrize("seed", [4, 5])
def test_it_charts_daily_bars_built_only_from_bars_known_at_t(staff_client, seed):
    history = History(seed).build()
    rng = random.Random(seed)
    ts = history.instants()
    for _ in range(8):
        at = rng.choice(ts)
        start, end = T0 - timedelta(days=10), T0 + timedelta(days=10)
        check_symbol_page(staff_client, history, rng.choice(SYMS), at, start=start, end=end, explicit=True)


def test_it_shows_on_the_overview_exactly_the_oracle_state_at_t(staff_client):
    history = History(7).build()
    rng = random.Random(7)
    for at in rng.sample(history.instants(), 15):
        response = staff_client.get(reverse("timeline-overview"), {"at": iso(at), "sort": "-close"})
        rows = {r["symbol"]: r for r in response.context["rows"]}
        state = {s["symbol"]: s for s in history.oracle.market_state(at=at)}
        windows = history.oracle.sentiment(at=at)
        assert {s for s, r in rows.items() if r["close"] is not None} == set(state)
        for sym, bar_ in state.items():
            assert (rows[sym]["time"], rows[sym]["close"], rows[sym]["volume"]) == (
                bar_["time"],
                bar_["close"],
                bar_["volume"],
            )
        for sym in {w["symbol"] for w in windows}:
            mine = [w for w in windows if w["symbol"] == sym]
            assert rows[sym]["mentions"] == sum(w["mention_count"] for w in mine)
        closes = [r["close"] for r in response.context["rows"] if r["close"] is not None]
        assert closes == sorted(closes, reverse=True)


def test_it_escapes_stored_text_and_links_only_http_urls(staff_client):
    wipe_datasets()
    ingest_table(
        dataset="news_events",
        data=[
            {
                "time": T0.isoformat(),
                "symbol": "AAA",
                "news_id": "x1",
                "title": "<script>alert(1)</script>",
                "url": "javascript:alert(2)",
            },
            {
                "time": T0.isoformat(),
                "symbol": "AAA",
                "news_id": "x2",
                "title": "fine & dandy",
                "url": "https://example.com/a?b=1&c=2",
            },
        ],
    )
    html = staff_client.get(symbol_url("AAA", at=iso(T0 + timedelta(minutes=1)))).content.decode()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "javascript:alert(2)" not in html
    assert '<a href="https://example.com/a?b=1&amp;c=2" rel="noreferrer noopener">fine &amp; dandy</a>' in html


def test_it_replays_a_view_exactly_after_a_later_correction(staff_client):
    wipe_datasets()
    ingest_table(dataset="market_data", data=[bar("AAA", m) for m in range(10)])
    at = iso(T0 + timedelta(minutes=30))
    first = staff_client.get(symbol_url("AAA", at=at))
    replay = first.context["replay_url"]
    assert "recorded_by=" in replay
    ingest_table(dataset="market_data", data=[bar("AAA", 3, close="9.25")])  # a fix of the same version (same known_at)
    now = staff_client.get(symbol_url("AAA", at=at))
    assert [str(b["close"]) for b in now.context["bars"]][3] == "9.250000"
    again = staff_client.get(reverse("timeline-symbol", args=["AAA"]) + replay)
    assert again.status_code == 200
    assert_same_sequence(again.context["bars"], first.context["bars"], "replayed bars")
    assert again.context["max_recorded_at"] == first.context["max_recorded_at"]
