"""Rows at the edges of the stored-instant range, with symbols at the edge of the symbol rule, go
through every page, API listing and point-in-time endpoint (JSON, CSV, Parquet, Arrow), the admin
changelists and change pages, the export command and the consumers: all answer 200 / succeed, and
every symbol is rendered and linked correctly (timeseries/rules.py, docs/input-rules.md).

A stored symbol the rule does not admit (stored before the rule existed) never makes a page fail: it
is listed as text without a link.
"""

from __future__ import annotations

import html
import io
import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from rest_framework.test import APIClient

from ingestion.loader import ingest_table
from timeseries import models, rules
from timeseries.datasets import DATASETS, dataset_of_model
from timeseries.tokens import token_create

pytestmark = pytest.mark.django_db

UTC = UTC
SYM32 = "ABCDEFGHIJKLMNOP/QRSTUVWXYZ01234"
SYMS = ("BRK/B", "A.B^C=D_E:F-G", SYM32)
EARLY = datetime(1800, 1, 1, tzinfo=UTC)  # the first admitted instant
LAST_BAR = datetime(2199, 12, 31, 23, 58, tzinfo=UTC)  # its close (known_at) is the last whole minute
T_EARLY = EARLY + timedelta(minutes=1)
T_LATE = datetime(2199, 12, 31, 23, 59, 59, tzinfo=UTC)
FORMATS = ("json", "csv", "parquet", "arrow")


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def bar(symbol: str, t: datetime) -> dict:
    return {"time": iso(t), "symbol": symbol, "open": "10", "high": "11", "low": "9", "close": "10.5", "volume": "100"}


@pytest.fixture
def edge_rows(db):
    for sym in SYMS:
        assert rules.is_symbol(sym)
    assert len(SYM32) == 32
    ingest_table(
        dataset="market_data",
        data=[bar(s, t) for s in SYMS for t in (EARLY, LAST_BAR - timedelta(minutes=1), LAST_BAR)],
    )
    ingest_table(
        dataset="news_events",
        data=[
            {"time": iso(t), "symbol": s, "title": f"story of {s}", "source": "wire", "url": f"https://example.org/{i}"}
            for i, (s, t) in enumerate((s, t) for s in SYMS for t in (EARLY, T_LATE - timedelta(hours=1)))
        ],
    )
    ingest_table(
        dataset="insider_trades",
        data=[
            {
                "time": iso(T_LATE - timedelta(days=1)),
                "symbol": s,
                "insider_name": "Jo",
                "transaction_type": "buy",
                "shares": "10",
                "price": "10",
                "filing_date": iso(T_LATE - timedelta(minutes=30)),
            }
            for s in SYMS
        ],
    )
    ingest_table(
        dataset="social_sentiment",
        data=[
            {"time": "2199-12-31T22:00:00Z", "symbol": s, "platform": "x", "mention_count": "5", "sentiment_avg": "0.5"}
            for s in SYMS
        ],
    )
    ingest_table(
        dataset="government_events",
        data=[
            {
                "time": iso(T_LATE - timedelta(minutes=50)),
                "event_type": "tariff",
                "primary_symbol": s,
                "affected_symbols": list(SYMS),
                "description": "edge",
            }
            for s in SYMS
        ],
    )
    ingest_table(
        dataset="securities",
        data=[{"listed_at": iso(EARLY), "security_id": s, "symbol": s, "exchange": "XNYS"} for s in SYMS],
    )
    ingest_table(
        dataset="corporate_actions",
        data=[
            {"ex_date": iso(T_LATE - timedelta(days=1)), "symbol": s, "action_type": "cash_dividend", "amount": "0.1"}
            for s in SYMS
        ],
    )


@pytest.fixture
def staff_client(client, db):
    user = User.objects.create_superuser("root", password="pw-root-1")
    client.force_login(user)
    return client


@pytest.fixture
def api(db) -> APIClient:
    user = User.objects.create_user("reader", password="x")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_create(user=user, scope='read', name='e2e')[1]}")
    return client


def symbol_link(sym: str) -> str:
    return reverse("timeline-symbol", args=[sym])


# --- pages ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("at", [T_EARLY, T_LATE], ids=["first-instant", "last-instant"])
def test_the_overview_lists_and_links_every_edge_symbol(staff_client, edge_rows, at):
    response = staff_client.get(reverse("timeline-overview"), {"at": iso(at)})
    assert response.status_code == 200
    page = response.content.decode()
    for sym in SYMS:
        link = symbol_link(sym)
        assert link.startswith("/timeline/") and link.endswith("/")
        assert f'href="{html.escape(link)}?' in page, sym  # a real link, built with reverse()
        assert f">{html.escape(sym)}</a>" in page
        assert staff_client.get(link, {"at": iso(at)}).status_code == 200


def test_the_link_of_a_symbol_with_a_slash_reaches_its_own_page(staff_client, edge_rows):
    assert symbol_link("BRK/B") == "/timeline/BRK/B/"
    assert symbol_link("A.B^C=D_E:F-G") == "/timeline/A.B%5EC=D_E:F-G/"
    for sym in SYMS:
        response = staff_client.get(symbol_link(sym), {"at": iso(T_LATE)})
        assert response.status_code == 200
        assert response.context["symbol"] == sym
        assert [b["time"] for b in response.context["bars"]][-1] == LAST_BAR
        assert f"{html.escape(sym)} as of" in response.content.decode()


@pytest.mark.parametrize(
    "params",
    [
        {"at": iso(T_LATE)},
        {"at": iso(T_EARLY)},
        {"at": iso(T_LATE), "from": "2199-01-01T00:00:00Z", "to": iso(T_LATE)},  # daily bars (rollups)
        {"at": iso(T_EARLY), "from": "1799-06-01T00:00:00Z", "to": iso(T_EARLY)},
        {"at": iso(T_LATE), "since": iso(EARLY)},
    ],
    ids=["late", "early", "late-daily", "early-daily", "since-first-instant"],
)
def test_the_symbol_page_works_at_the_edges(staff_client, edge_rows, params):
    for sym in SYMS:
        response = staff_client.get(symbol_link(sym), params)
        assert response.status_code == 200, (sym, params, response.content[:500])
        for _, url in response.context["steps"]:
            assert staff_client.get(symbol_link(sym) + url).status_code in (200, 404)  # 404: T before any row


def test_the_redirect_to_a_default_t_keeps_the_symbol(staff_client, edge_rows):
    response = staff_client.get(symbol_link("BRK/B"))
    assert response.status_code == 302
    assert response["Location"].startswith("/timeline/BRK/B/?at=")


def test_a_symbol_nothing_is_known_of_at_t_answers_404_without_leaking_later_rows(staff_client, edge_rows):
    response = staff_client.get(symbol_link("NOSUCH"), {"at": iso(T_LATE)})
    assert response.status_code == 404
    assert f"No data for symbol NOSUCH is known at {iso(T_LATE)}" in response.content.decode()
    # BRK/B's first row (a story published at EARLY) becomes known at EARLY: a second before, the
    # page says the same as for NOSUCH; at EARLY it shows the symbol
    before = staff_client.get(symbol_link("BRK/B"), {"at": "1799-12-31T23:59:59Z"})
    assert before.status_code == 404
    assert "No data for symbol BRK/B is known at 1799-12-31T23:59:59Z" in before.content.decode()
    assert staff_client.get(symbol_link("BRK/B"), {"at": iso(EARLY)}).status_code == 200
    # and as recorded by an instant before anything was recorded
    replay = staff_client.get(symbol_link("BRK/B"), {"at": iso(T_LATE), "recorded_by": "2000-01-01T00:00:00Z"})
    assert replay.status_code == 404


def test_a_symbol_the_rule_refuses_answers_400_naming_it(staff_client, edge_rows):
    response = staff_client.get("/timeline/A%20B/", {"at": iso(T_LATE)})
    assert response.status_code == 400 and response.context["message"].startswith("symbol=")
    assert staff_client.get("/timeline/A/../B/", {"at": iso(T_LATE)}).status_code in (400, 404)
    assert staff_client.get("/timeline/assets/..%2Fpages.py").status_code == 404


def test_a_legacy_symbol_the_rule_refuses_is_shown_as_text_without_a_link(staff_client, edge_rows):
    """Rows stored before the rule: the overview lists them unlinked instead of failing."""
    ingest_table(dataset="market_data", data=[bar("LEGACYA", LAST_BAR), bar("LEGACYB", LAST_BAR)])
    with connection.cursor() as cur:
        for old, new in (("LEGACYA", "X?Y#Z"), ("LEGACYB", "A B")):
            cur.execute("UPDATE market_data SET symbol = %s WHERE symbol = %s", [new, old])
            cur.execute("UPDATE timeseries_series SET symbol = %s WHERE symbol = %s", [new, old])
    response = staff_client.get(reverse("timeline-overview"), {"at": iso(T_LATE)})
    assert response.status_code == 200
    page = response.content.decode()
    for legacy in ("X?Y#Z", "A B"):
        assert f'data-symbol="{html.escape(legacy)}"' in page
        assert (
            f'<span class="unlinked" title="stored before the symbol rule: no page">{html.escape(legacy)}</span>'
            in page
        )
    for sym in SYMS:
        assert f'href="{html.escape(symbol_link(sym))}?' in page


# --- API --------------------------------------------------------------------------------------------

LISTINGS = ("market-data", "news", "insider-trades", "sentiment", "government-events")


def rows_of(response, fmt: str) -> list[dict]:
    if fmt == "json":
        body = response.json()
        return body["results"] if isinstance(body, dict) else body
    if fmt == "csv":
        import csv

        return list(csv.DictReader(io.StringIO(response.content.decode())))
    if fmt == "parquet":
        return pq.read_table(io.BytesIO(response.content)).to_pylist()
    return pa.ipc.open_stream(io.BytesIO(response.content)).read_all().to_pylist()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("listing", LISTINGS)
def test_every_listing_filters_on_edge_symbols(api, edge_rows, listing, fmt):
    response = api.get(f"/api/v1/{listing}/", {"symbols": ",".join(SYMS), "format": fmt})
    assert response.status_code == 200, response.content[:300]
    rows = rows_of(response, fmt)
    column = "primary_symbol" if listing == "government-events" else "symbol"
    assert {r[column] for r in rows} == set(SYMS)
    as_of = api.get(f"/api/v1/{listing}/", {"symbols": "BRK/B", "as_of": iso(T_LATE), "format": fmt})
    assert as_of.status_code == 200 and rows_of(as_of, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "endpoint, column",
    [
        ("state", "symbol"),
        ("news/before", "symbol"),
        ("insider-trades/before", "symbol"),
        ("sentiment/before", "symbol"),
        ("government-events/before", "primary_symbol"),
    ],
)
def test_every_point_in_time_endpoint_answers_at_the_last_instant(api, edge_rows, endpoint, column, fmt):
    response = api.get(f"/api/v1/{endpoint}/", {"at": iso(T_LATE), "symbols": ",".join(SYMS), "format": fmt})
    assert response.status_code == 200, response.content[:300]
    assert {r[column] for r in rows_of(response, fmt)} == set(SYMS)


def test_the_state_at_the_first_instant_holds_the_first_bars(api, edge_rows):
    response = api.get("/api/v1/state/", {"at": iso(T_EARLY), "symbols": ",".join(SYMS)})
    assert response.status_code == 200
    assert {(r["symbol"], r["time"]) for r in response.json()["results"]} == {(s, "1800-01-01T00:00:00Z") for s in SYMS}


def test_reconstruct_takes_every_edge_symbol_in_its_path(api, edge_rows):
    for sym in SYMS:
        url = reverse("api-v1:reconstruct", args=[sym])
        response = api.get(url, {"at": iso(T_LATE)})
        assert response.status_code == 200, (url, response.content[:300])
        assert response.json()["results"]["symbol"] == sym
    bad = api.get("/api/v1/reconstruct/A%20B/", {"at": iso(T_LATE)})
    assert bad.status_code == 400 and "symbol" in bad.json()


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_asof_join_answers_for_edge_symbols_at_edge_instants(api, edge_rows, fmt):
    points = [{"symbol": s, "time": iso(t)} for s in SYMS for t in (T_EARLY, T_LATE)]
    response = api.post(f"/api/v1/asof-join/?format={fmt}", points, format="json")
    assert response.status_code == 200, response.content[:300]
    rows = rows_of(response, fmt)
    assert len(rows) == len(points)
    assert {r["symbol"] for r in rows} == set(SYMS)


@pytest.mark.parametrize("param", ["symbols", "symbol"])
@pytest.mark.parametrize("value", ["A B", "X?Y", "..", "A/../B", "X" * 33, "É"])
def test_a_symbol_param_the_rule_refuses_answers_400_naming_it(api, edge_rows, param, value):
    for url in ("/api/v1/market-data/", "/api/v1/government-events/"):
        response = api.get(url, {param: value})
        assert response.status_code == 400, (url, value)
        assert param in response.json() and rules.SYMBOL_RULE_TEXT in response.json()[param][0]
    response = api.get("/api/v1/state/", {"at": iso(T_LATE), "symbols": value})
    assert response.status_code == 400 and "symbols" in response.json()


# --- admin ------------------------------------------------------------------------------------------

ADMIN_MODELS = tuple(spec.model for spec in DATASETS.values())


@pytest.mark.parametrize("model", ADMIN_MODELS, ids=lambda m: m.__name__)
def test_every_admin_changelist_and_change_page_shows_edge_rows(staff_client, edge_rows, model):
    meta = model._meta
    changelist = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
    response = staff_client.get(changelist)
    assert response.status_code == 200
    column = dataset_of_model(model).symbol_column
    filtered = staff_client.get(changelist, {"q": "BRK/B"})  # the search box: exact symbols
    assert filtered.status_code == 200
    page = filtered.content.decode()
    assert "BRK/B" in page
    for obj in model.objects.filter(**{f"{column}__in": SYMS}).order_by("time")[:: max(1, model.objects.count() // 4)]:
        change = staff_client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk]))
        assert change.status_code == 200
        assert html.escape(getattr(obj, column)) in change.content.decode()


def test_the_admin_filters_take_edge_symbols_and_refuse_others(staff_client, edge_rows):
    changelist = reverse("admin:timeseries_marketdata_changelist")
    response = staff_client.get(
        changelist, {"symbol": ",".join(SYMS), "time_after": iso(EARLY), "time_before": iso(T_LATE)}
    )
    assert response.status_code == 200
    assert response.context["cl"].result_count == 9
    refused = staff_client.get(changelist, {"symbol": "A B"}, follow=True)
    assert refused.status_code == 200
    assert any("symbol='A B' contains ' '" in str(m) for m in refused.context["messages"])


@pytest.mark.parametrize("model", (models.Series, models.Symbol), ids=lambda m: m.__name__)
def test_the_registry_admins_list_edge_symbols(staff_client, edge_rows, model):
    if model is models.Symbol:
        models.Symbol.objects.create(symbol="BRK/B", name="Berkshire B", listed_on=EARLY.date())
    meta = model._meta
    response = staff_client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
    assert response.status_code == 200 and "BRK/B" in response.content.decode()
    obj = model.objects.filter(symbol="BRK/B").first()
    assert (
        staff_client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])).status_code == 200
    )


def test_the_symbol_admin_form_applies_the_rules(staff_client, db):
    add = reverse("admin:timeseries_symbol_add")
    response = staff_client.post(
        add, {"symbol": "A B", "name": "", "sector": "", "exchange": "", "listed_on": "2200-01-01"}
    )
    assert response.status_code == 200  # the form again, with errors
    errors = response.context["adminform"].form.errors
    assert "contains ' '" in errors["symbol"][0] and "outside the supported range" in errors["listed_on"][0]
    assert not models.Symbol.objects.exists()
    response = staff_client.post(
        add, {"symbol": SYM32, "name": "", "sector": "", "exchange": "", "listed_on": "1800-01-01"}
    )
    assert response.status_code == 302
    assert models.Symbol.objects.get().symbol == SYM32


# --- export and consumers ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "json"])
@pytest.mark.parametrize(
    "dataset", ["market_data", "news_events", "insider_trades", "social_sentiment", "government_events"]
)
def test_the_asof_export_writes_edge_rows(edge_rows, dataset, fmt):
    out = io.StringIO()
    call_command("asof", dataset, "--at", iso(T_LATE), "--symbols", ",".join(SYMS), "--format", fmt, stdout=out)
    text = out.getvalue()
    for sym in SYMS:
        assert sym in text
    if fmt == "json":
        assert len(json.loads(text)) >= len(SYMS)


@pytest.mark.django_db(transaction=True)  # TimescaleDB lane: continuous aggregates refresh outside transactions
def test_the_consumers_process_edge_rows(edge_rows):
    out = io.StringIO()
    call_command("rollups", stdout=out)
    json.loads(out.getvalue())
    out = io.StringIO()
    call_command("rollups", "--rebuild", stdout=out)
    rebuilt = json.loads(out.getvalue())
    assert (
        rebuilt["market_data"]["buckets"] >= 2 * len(SYMS) or rebuilt["market_data"]["buckets"] == 0
    )  # 0: continuous aggregates
    out = io.StringIO()
    call_command("rollups", "--lag", stdout=out)
    assert all(v["pending"] == 0 for v in json.loads(out.getvalue()).values())
    for dataset in ("market_data", "news_events"):
        out = io.StringIO()
        call_command(
            "quality_check",
            dataset,
            "--start",
            iso(EARLY),
            "--end",
            iso(T_LATE),
            "--symbols",
            ",".join(SYMS),
            stdout=out,
        )
        assert json.loads(out.getvalue())["spans"] >= len(SYMS)
        out = io.StringIO()
        call_command("quality_check", dataset, "--pending", stdout=out)
        json.loads(out.getvalue())


@pytest.mark.parametrize(
    "command",
    [
        ("asof", "market_data", "--at", iso(T_LATE)),
        ("quality_check", "market_data", "--start", iso(EARLY), "--end", iso(T_LATE)),
    ],
)
def test_the_commands_refuse_a_symbol_the_rule_refuses_naming_the_option(db, command):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=r"--symbols='A B' contains ' '"):
        call_command(*command, "--symbols", "AAPL,A B", stdout=io.StringIO())


def test_the_asof_join_refuses_a_point_whose_symbol_the_rule_refuses(api, db):
    points = [{"symbol": "BRK/B", "time": iso(T_LATE)}, {"symbol": "A B", "time": iso(T_LATE)}]
    response = api.post("/api/v1/asof-join/", points, format="json")
    assert response.status_code == 400
    assert "point 2: symbol='A B' contains ' '" in response.json()["points"][0]
