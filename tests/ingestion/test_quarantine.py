"""The rejected-rows CSV: safe for spreadsheets, one line per row, fixable and re-uploadable (issue #14 item 6)."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from ingestion import buffer, parsers, uploads
from ingestion.models import RejectedRow, Upload
from ingestion.quarantine import REASON_COLUMN, cell_escape, cell_unescape, rejected_rows_write
from tests.helpers import bar, csv_bytes
from timeseries.datasets import DATASETS
from timeseries.models import MarketData, NewsEvent
from timeseries.tokens import token_create

INJECTION = "=cmd|' /C calc'!A0"


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (INJECTION, "'" + INJECTION),
        ("+1+2", "'+1+2"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\r=x", "'\r=x"),
        ("-0.5", "-0.5"),  # a plain number stays a number
        ("+3", "+3"),
        ("-1e-3", "-1e-3"),
        ("-", "'-"),
        ("AAPL", "AAPL"),
        ("a=b", "a=b"),
        (None, ""),
        (12.5, "12.5"),
        (["A", "B"], '["A", "B"]'),
    ],
)
def test_it_neutralises_formulas_but_not_plain_numbers(value, cell):
    assert cell_escape(value) == cell
    if isinstance(value, str):
        assert cell_unescape(cell) == value


@pytest.fixture
def staff_client(client, db, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    client.force_login(User.objects.create_user("staff", is_staff=True, is_superuser=True))
    return client


def upload(client, content: bytes, dataset: str = "market_data", name: str = "bars.csv") -> Upload:
    data = {
        "dataset": dataset,
        "bar_interval_text": "1min",
        "on_error": "skip",
        "file": SimpleUploadedFile(name, content),
    }
    response = client.post(reverse("admin:ingestion_upload_add"), data)
    assert response.status_code == 302, response.content[:2000]
    done = uploads.upload_process(upload_id=Upload.objects.latest("created_at").pk)
    assert done.status == "done", done.error
    return done


@pytest.mark.django_db(transaction=False)
def test_a_downloaded_quarantine_can_be_fixed_and_uploaded_again(staff_client, django_capture_on_commit_callbacks):
    rows = [
        bar("AAPL", 0, source="feed"),
        bar("AAPL", 1, high="1", source="feed"),  # three broken rules: high < low, open > high, close > high
        bar("AAPL", 2, close=INJECTION, source="feed"),  # a formula where a number belongs
        bar("AAPL", 3, source="@desk", volume="-5"),  # a formula-like text that is valid, in a bad row
        bar("AAPL", 4, source="-feed"),
    ]
    with django_capture_on_commit_callbacks(execute=False):
        first = upload(staff_client, csv_bytes(rows))
    assert (first.inserted, first.rejected) == (2, 3)

    download = staff_client.get(reverse("admin:ingestion_upload_rejected_csv", args=[first.pk]))
    assert download.status_code == 200 and download["Content-Type"].startswith("text/csv")
    text = download.content.decode()
    cells = [cell for line in csv.reader(io.StringIO(text)) for cell in line]
    assert "'" + INJECTION in cells
    assert not [
        c
        for c in cells
        if c[:1] in ("=", "+", "@", "\t", "\r") or (c[:1] == "-" and not c[1:].replace(".", "").isdigit())
    ]
    lines = list(csv.DictReader(io.StringIO(text)))
    # the input columns (nothing the uploader refuses) in the file's usual order, then the reasons
    assert list(lines[0]) == ["time", "symbol", "open", "high", "low", "close", "volume", "source", REASON_COLUMN]
    assert len(lines) == 3  # one line per rejected row
    by_minute = {line["time"]: line for line in lines}
    two = by_minute[bar("AAPL", 1)["time"]][REASON_COLUMN]
    assert two.startswith("row 2: ") and "high is below low" in two and two.count(";") >= 1  # all its reasons
    assert by_minute[bar("AAPL", 2)["time"]]["close"] == "'" + INJECTION
    assert by_minute[bar("AAPL", 3)["time"]]["source"] == "'@desk"
    assert "volume" in by_minute[bar("AAPL", 3)["time"]][REASON_COLUMN]

    # fix the bad values in the downloaded file (as a spreadsheet user would), keep everything else
    for line in lines:
        if line["high"] == "1":
            line["high"] = "11"
        if line["close"] == "'" + INJECTION:
            line["close"] = "10.25"
        if line["volume"] == "-5":
            line["volume"] = "5"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(lines[0]))
    writer.writeheader()
    writer.writerows(lines)
    with django_capture_on_commit_callbacks(execute=False):
        second = upload(staff_client, out.getvalue().encode(), name="fixed.csv")
    assert (second.inserted, second.rejected) == (3, 0)
    stored = {r.time.minute - 30: r for r in MarketData.objects.filter(symbol="AAPL")}
    assert sorted(stored) == [0, 1, 2, 3, 4]
    assert float(stored[2].close) == 10.25 and stored[1].high == 11
    assert stored[3].source == "@desk" and stored[3].volume == 5  # the protective quote is gone again
    assert stored[4].source == "-feed"


@pytest.mark.django_db
def test_an_unfixed_download_is_rejected_again_with_the_same_reasons(staff_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        first = upload(staff_client, csv_bytes([bar("AAPL", 0, close=INJECTION)]))
    content = staff_client.get(reverse("admin:ingestion_upload_rejected_csv", args=[first.pk])).content
    with django_capture_on_commit_callbacks(execute=False):
        again = upload(staff_client, content, name="again.csv")
    assert (again.inserted, again.rejected) == (0, 1)
    row = RejectedRow.objects.get(load_id=again.load_id)
    assert row.raw["close"] == INJECTION and row.column == "close"  # the value as first sent, not "'=cmd…"


@pytest.mark.django_db
def test_a_news_quarantine_round_trips_its_text_columns(staff_client, django_capture_on_commit_callbacks):
    stories = [
        {
            "time": "2024-03-01T14:30:00+00:00",
            "symbol": "AAPL",
            "title": "-5% at the open",
            "url": "u1",
            "impact_score": "2",
            "news_id": "n1",
        },
        {
            "time": "2024-03-01T14:31:00+00:00",
            "symbol": "AAPL",
            "title": '=HYPERLINK("x")',
            "url": "u2",
            "impact_score": "0.5",
            "news_id": "n2",
        },
    ]
    with django_capture_on_commit_callbacks(execute=False):
        first = upload(staff_client, csv_bytes(stories), dataset="news_events", name="news.csv")
    assert first.rejected == 1  # impact_score 2 is out of range
    lines = list(
        csv.DictReader(
            io.StringIO(
                staff_client.get(reverse("admin:ingestion_upload_rejected_csv", args=[first.pk])).content.decode()
            )
        )
    )
    assert [line["title"] for line in lines] == ["'-5% at the open"]
    lines[0]["impact_score"] = "0.9"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(lines[0]))
    writer.writeheader()
    writer.writerows(lines)
    with django_capture_on_commit_callbacks(execute=False):
        upload(staff_client, out.getvalue().encode(), dataset="news_events", name="news-fixed.csv")
    assert sorted(NewsEvent.objects.values_list("title", flat=True)) == ["-5% at the open", '=HYPERLINK("x")']


def test_an_ordinary_csv_keeps_its_quotes():
    """Only a tsm rejected-rows file (with the reason column) has its protective quotes removed."""
    content = b"time,symbol,title\n2024-03-01T14:30Z,AAPL,'=not ours\n"
    batch = next(parsers.read_batches(content, dataset=DATASETS["news_events"]))
    assert batch.column("title").to_pylist() == ["'=not ours"]
    ours = b"time,symbol,title," + REASON_COLUMN.encode() + b"\n2024-03-01T14:30Z,AAPL,'=ours,row 1: x\n"
    batch = next(parsers.read_batches(ours, dataset=DATASETS["news_events"]))
    assert batch.schema.names == ["time", "symbol", "title"] and batch.column("title").to_pylist() == ["=ours"]


@pytest.mark.django_db
def test_a_fixed_download_goes_back_through_the_write_api_and_the_ingest_command(
    staff_client, tmp_path, django_capture_on_commit_callbacks
):
    from django.core.management import call_command
    from rest_framework.test import APIClient

    rows = [bar("AAPL", 0, close=INJECTION, source="=x"), bar("MSFT", 0, close=INJECTION, source="-y")]
    with django_capture_on_commit_callbacks(execute=False):
        first = upload(staff_client, csv_bytes(rows))
    assert first.rejected == 2
    text = staff_client.get(reverse("admin:ingestion_upload_rejected_csv", args=[first.pk])).content.decode()
    fixed = text.replace("'" + INJECTION, "10.25")
    aapl = "\n".join(line for line in fixed.splitlines() if ",MSFT," not in line) + "\n"
    msft = "\n".join(line for i, line in enumerate(fixed.splitlines()) if i == 0 or ",MSFT," in line) + "\n"

    api = APIClient()
    api.credentials(
        HTTP_AUTHORIZATION=f"Bearer {token_create(user=User.objects.create_user('feed'), scope='write')[1]}"
    )
    with django_capture_on_commit_callbacks(execute=False):
        response = api.generic("POST", "/api/v1/ingest/market_data/", aapl, content_type="text/csv")
    assert response.status_code == 202, response.content
    buffer.buffer_flush(dataset="market_data")

    path = tmp_path / "msft-fixed.csv"
    path.write_text(msft)
    call_command("ingest", "market_data", str(path), stdout=io.StringIO(), stderr=io.StringIO())
    stored = {r.symbol: r for r in MarketData.objects.all()}
    assert {s: (float(r.close), r.source) for s, r in stored.items()} == {"AAPL": (10.25, "=x"), "MSFT": (10.25, "-y")}


def test_the_file_has_only_columns_the_uploader_accepts_in_the_dataset_order():
    from types import SimpleNamespace

    raw = {
        "url": "u",
        "id": "n1",
        "title": "=1+1",
        "time": "2024-03-01T14:30Z",
        "symbol": "AAPL",
        "known_at": "x",
        "bogus": "?",
    }
    rows = [
        SimpleNamespace(load_id=1, row_number=3, column="known_at", reason="not a timestamp", raw=raw),
        SimpleNamespace(load_id=1, row_number=3, column="", reason="whole row", raw=raw),
    ]
    out = io.StringIO()
    assert rejected_rows_write(rows, out, dataset="news_events") == 1
    header, line = list(csv.reader(io.StringIO(out.getvalue())))
    assert header == ["time", "symbol", "title", "url", "known_at", "id", REASON_COLUMN]
    assert line == ["2024-03-01T14:30Z", "AAPL", "'=1+1", "u", "x", "n1", "row 3: known_at: not a timestamp; whole row"]
