"""Each input that once answered 500 now answers 4xx naming what is wrong, and stores nothing.

These are the reproduced cases of issue #14 (item 3 and the staff session of item 6) and their
siblings found by the property-based tests beside this file."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from ingestion import parsers
from ingestion.checks import InputError
from ingestion.models import IngestBatch
from tests.helpers import T0, bar
from timeseries.datasets import DATASETS
from timeseries.models import MarketData

pytestmark = pytest.mark.django_db

INGEST = "/api/v1/ingest/market_data/"
ASOF = "/api/v1/asof-join/?dataset=market_data"
STATE = "/api/v1/state/"

# every kind of URL: read API, write API, schema, timeline pages, admin, login
ANY_URLS = [
    STATE,
    INGEST,
    ASOF,
    "/api/v1/schema/",
    "/timeline/",
    "/admin/",
    "/admin/login/",
    "/admin/ingestion/upload/add/",
]


def body_of(response) -> str:
    return response.content.decode("utf-8", "replace")


def nothing_stored():
    return not IngestBatch.objects.exists() and not MarketData.objects.exists()


# --- bar_interval ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "interval", ["99999999999999d", "1000000000d", "999999999999D", "367d", "9" * 5000 + "us", "100000000h"]
)
def test_the_write_api_refuses_an_interval_beyond_the_maximum(writer, interval):
    response = writer.post(f"{INGEST}?bar_interval={interval}", [bar("AAPL", 0)], format="json")
    assert response.status_code == 400, body_of(response)
    assert "bar_interval" in response.json()["detail"] and "366d" in response.json()["detail"]
    assert nothing_stored()


@pytest.mark.parametrize("interval", ["0min", "٣d", "-1d", "1 fortnight", ""])
def test_the_write_api_refuses_a_malformed_interval(writer, interval):
    response = writer.post(f"{INGEST}?bar_interval={interval}", [bar("AAPL", 0)], format="json")
    assert response.status_code == 400, body_of(response)
    assert "bar_interval" in response.json()["detail"]


@pytest.mark.parametrize("interval", ["366d", "31622400000000us", "527040%20min"])
def test_the_write_api_accepts_the_longest_interval(writer, interval):
    response = writer.post(f"{INGEST}?bar_interval={interval}", [bar("AAPL", 0)], format="json")
    assert response.status_code == 202, body_of(response)


@pytest.mark.parametrize("interval", ["99999999999999d", "1000000000D"])
def test_the_upload_form_refuses_an_interval_beyond_the_maximum(admin_client, interval):
    from django.core.files.uploadedfile import SimpleUploadedFile

    csv = "time,symbol,open,high,low,close,volume\n2024-03-01T14:30:00Z,AAPL,1,1,1,1,1\n"
    response = admin_client.post(
        reverse("admin:ingestion_upload_add"),
        {
            "dataset": "market_data",
            "on_error": "reject",
            "bar_interval_text": interval,
            "file": SimpleUploadedFile("bars.csv", csv.encode(), content_type="text/csv"),
        },
    )
    assert response.status_code == 200  # the form again, with the error
    assert "longer than the longest interval accepted (366d)" in body_of(response)


# --- feed and reassert -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, name",
    [
        ("feed=a%00b", "feed"),
        ("feed=%ED%A0%80", "feed"),  # the UTF-8 bytes of a lone surrogate
        ("feed=" + "x" * 5000, "feed"),
        ("feed=%3Cscript%3E", "feed"),
        ("reassert=%00", "reassert"),
        ("reassert=" + "t" * 5000, "reassert"),
        ("reassert=true&reassert=false", "reassert"),
    ],
)
def test_the_write_api_refuses_a_malformed_feed_or_reassert_by_name(writer, query, name):
    response = writer.post(f"{INGEST}?{query}", [bar("AAPL", 0)], format="json")
    assert response.status_code == 400, body_of(response)
    detail = response.json()["detail"]
    assert detail.startswith(name) and len(detail) < 400
    assert response["Content-Type"].startswith("application/json")  # the value echoed as data, never as markup
    assert nothing_stored()


# --- lone surrogates -----------------------------------------------------------------------------

LONE = '"\\ud800"'  # a JSON string escape that names half of a UTF-16 pair: not a character


@pytest.mark.parametrize("column", ["symbol", "time", "close", "volume"])
def test_the_write_api_refuses_a_lone_surrogate_naming_row_and_column(writer, column):
    rows = [bar("AAPL", 0), bar("MSFT", 1, close="10.75", volume="200")]
    text = json.dumps(rows).replace(json.dumps(rows[1][column]), LONE)
    assert text.count(LONE) == 1
    response = writer.generic("POST", INGEST, text, content_type="application/json")
    assert response.status_code == 400, body_of(response)
    errors = response.json()["errors"]
    assert [(e["row"], e["column"]) for e in errors] == [(2, column)]
    assert "surrogate" in errors[0]["message"]
    assert nothing_stored()


def test_the_write_api_refuses_a_lone_surrogate_in_a_key_name(writer):
    response = writer.generic(
        "POST",
        INGEST,
        '[{"time": "2024-03-01T14:30:00Z", "symbol": "A", "\\udc00": 1}]',
        content_type="application/json",
    )
    assert response.status_code == 400, body_of(response)
    assert "surrogate" in body_of(response)


def test_the_write_api_refuses_a_lone_surrogate_in_ndjson(writer):
    text = json.dumps(bar("AAPL", 0)) + "\n" + json.dumps(bar("AAPL", 1)).replace('"AAPL"', LONE) + "\n"
    response = writer.generic("POST", INGEST, text, content_type="application/x-ndjson")
    assert response.status_code == 400, body_of(response)
    assert "surrogate" in body_of(response)
    assert nothing_stored()


@pytest.mark.parametrize("field", ["symbol", "time", "platform"])
def test_the_asof_join_refuses_a_lone_surrogate_naming_the_point(reader, field):
    points = [
        {"symbol": "AAPL", "time": "2024-03-01T15:30:00Z"},
        {"symbol": "MSFT", "time": "2024-03-01T16:00:00Z", "platform": "x"},
    ]
    text = json.dumps(points).replace(json.dumps(points[1][field]), LONE)
    response = reader.generic(
        "POST",
        ASOF.replace("market_data", "social_sentiment" if field == "platform" else "market_data"),
        text,
        content_type="application/json",
    )
    assert response.status_code == 400, body_of(response)
    assert "surrogate" in body_of(response) and "2" in body_of(response)


# --- Content-Length, Transfer-Encoding, charset ------------------------------------------------------


@pytest.mark.parametrize("url", ANY_URLS)
@pytest.mark.parametrize("length", ["abc", "-1", "1e3", " 12", "0x10", "１２", "99999999999999999999999999"])
def test_a_malformed_content_length_is_a_400_on_any_url(writer, url, length):
    response = writer.generic("POST", url, b'[{"a": 1}]', content_type="application/json", CONTENT_LENGTH=length)
    assert response.status_code == 400, body_of(response)[:300]
    assert "Content-Length" in body_of(response)


@pytest.mark.parametrize("url", [INGEST, ASOF])
def test_a_content_length_beyond_the_body_limit_is_a_413(writer, url, settings):
    response = writer.generic(
        "POST",
        url,
        b"[]",
        content_type="application/json",
        CONTENT_LENGTH=str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE * 4),
    )
    assert response.status_code == 413, body_of(response)[:300]
    assert "bytes" in response.json()["detail"]


def test_a_content_length_beyond_the_body_limit_is_a_4xx_on_a_form(staff, settings):
    response = staff.generic(
        "POST",
        "/admin/login/",
        b"a=1",
        content_type="application/x-www-form-urlencoded",
        CONTENT_LENGTH=str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE * 4),
    )
    assert 400 <= response.status_code < 500, body_of(response)[:300]


@pytest.mark.parametrize("url", ANY_URLS)
@pytest.mark.parametrize("encoding", ["gzip", "chunked, gzip", "bogus", "chunked\x00"])
def test_an_unsupported_transfer_encoding_is_refused(writer, url, encoding):
    response = writer.generic("POST", url, b"[]", content_type="application/json", HTTP_TRANSFER_ENCODING=encoding)
    assert 400 <= response.status_code < 500, body_of(response)[:300]


@pytest.mark.parametrize("url", ANY_URLS)
@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=nope",
        "application/x-www-form-urlencoded; charset=nope",
        "text/csv; charset=utf-99",
        "multipart/form-data; boundary=x; charset=nope",
        'application/json; charset="',
        "text/csv; charset=\u00e9",
    ],
)
def test_an_unknown_charset_is_a_415_on_any_url(writer, staff, url, content_type):
    for client in (writer, staff):
        response = client.generic("POST", url, b"a=1&b=2", content_type=content_type)
        assert response.status_code == 415, (content_type, body_of(response)[:300])
        assert "Content-Type" in body_of(response)


@pytest.mark.parametrize("url", ANY_URLS)
@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "application/x-www-form-urlencoded; charset=utf-16",
        "application/json; charset=utf-16",
        "text/csv; charset=utf-32",
        "application/x-ndjson; charset=latin-1",
        ";;;",
        "a/b/c",
    ],
)
def test_an_odd_content_type_is_never_a_server_error(writer, staff, url, content_type):
    for client in (writer, staff):
        headers = {"HTTP_X_CSRFTOKEN": csrf_token(client)} if client is staff else {}
        response = client.generic("POST", url, b"a=1&b=2", content_type=content_type, **headers)
        assert response.status_code < 500, (content_type, body_of(response)[:300])


# --- too many parameters / fields -----------------------------------------------------------------


@pytest.mark.parametrize(
    "url", [STATE, "/api/v1/market-data/", INGEST, ASOF.split("?")[0], "/api/v1/reconstruct/AAPL/", "/timeline/"]
)
def test_more_than_a_thousand_query_parameters_is_a_400_even_anonymously(anonymous, reader, url):
    query = "&".join(f"p{i}=1" for i in range(1200))
    for client in (anonymous, reader):
        for method in ("GET", "POST"):
            response = client.generic(method, f"{url}?{query}", b"[]", content_type="application/json")
            assert response.status_code == 400, (method, body_of(response)[:300])
            assert "parameters" in body_of(response)


def test_too_many_form_fields_is_a_400(staff):
    body = f"csrfmiddlewaretoken={csrf_token(staff)}&" + "&".join(f"f{i}=1" for i in range(1200))
    response = staff.generic(
        "POST", "/admin/ingestion/upload/add/", body, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 400, body_of(response)[:300]


def test_too_many_form_fields_on_the_api_is_a_400(reader):
    body = "&".join(f"f{i}=1" for i in range(1200))
    response = reader.generic("POST", ASOF, body, content_type="application/x-www-form-urlencoded")
    assert 400 <= response.status_code < 500, body_of(response)[:300]


# --- booleans as numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["open", "close", "volume", "vwap", "trades", "market_cap", "quality_score"])
@pytest.mark.parametrize("value", [True, False])
def test_a_json_boolean_is_not_a_number(writer, column, value):
    rows = [bar("AAPL", 0), {**bar("AAPL", 1), column: value}]
    response = writer.post(INGEST, rows, format="json")
    assert response.status_code == 400, body_of(response)
    errors = response.json()["errors"]
    assert [(e["row"], e["column"]) for e in errors] == [(2, column)]
    assert "not a number" in errors[0]["message"] or "not an integer" in errors[0]["message"]
    assert nothing_stored()


def test_a_json_boolean_is_not_a_number_in_ndjson_either(writer):
    text = (
        json.dumps({**bar("AAPL", 0), "volume": True}) + "\n" + json.dumps({**bar("AAPL", 1), "volume": False}) + "\n"
    )
    response = writer.generic("POST", INGEST, text, content_type="application/x-ndjson")
    assert response.status_code == 400, body_of(response)
    assert [(e["row"], e["column"]) for e in response.json()["errors"]] == [(1, "volume"), (2, "volume")]
    # a number, then a boolean: the reader itself refuses the column
    text = json.dumps(bar("AAPL", 0)) + "\n" + json.dumps({**bar("AAPL", 1), "volume": True}) + "\n"
    response = writer.generic("POST", INGEST, text, content_type="application/x-ndjson")
    assert response.status_code == 400, body_of(response)
    assert "volume" in response.json()["detail"]
    assert nothing_stored()


def test_a_json_boolean_is_still_a_boolean_where_the_column_is_one(writer):
    row = {
        "time": T0.isoformat(),
        "symbol": "AAPL",
        "insider_name": "A",
        "transaction_type": "buy",
        "filing_date": T0.isoformat(),
        "is_cluster_trade": True,
    }
    response = writer.post("/api/v1/ingest/insider_trades/", [row], format="json")
    assert response.status_code == 202, body_of(response)


# --- staff sessions write ----------------------------------------------------------------------------


def csrf_token(client) -> str:
    client.get("/admin/login/", follow=True)  # the login form (or, signed in, the admin index) sets the CSRF cookie
    return client.cookies["csrftoken"].value


@pytest.mark.parametrize("fmt", ["json", "ndjson", "csv"])
def test_a_staff_session_can_write_with_its_csrf_token(staff, fmt):
    rows = [bar("AAPL", 0), bar("AAPL", 1)]
    if fmt == "json":
        body, ctype = json.dumps(rows), "application/json"
    elif fmt == "ndjson":
        body, ctype = "\n".join(json.dumps(r) for r in rows), "application/x-ndjson"
    else:
        body, ctype = "\n".join([",".join(rows[0])] + [",".join(r.values()) for r in rows]), "text/csv"
    response = staff.generic("POST", INGEST, body, content_type=ctype, HTTP_X_CSRFTOKEN=csrf_token(staff))
    assert response.status_code == 202, body_of(response)
    assert response.json()["accepted"] == 2
    assert IngestBatch.objects.get().submitted_by.username == "hostile-staff"


def test_a_staff_session_without_the_csrf_token_is_a_403(staff):
    response = staff.generic("POST", INGEST, json.dumps([bar("AAPL", 0)]), content_type="application/json")
    assert response.status_code == 403, body_of(response)
    assert "CSRF" in response.json()["detail"]
    assert nothing_stored()


def test_a_non_staff_session_cannot_write(db):
    from django.contrib.auth.models import User
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_user("plain"))
    response = client.generic(
        "POST",
        INGEST,
        json.dumps([bar("AAPL", 0)]),
        content_type="application/json",
        HTTP_X_CSRFTOKEN=csrf_token(client),
    )
    assert response.status_code == 403, body_of(response)
    assert nothing_stored()


# --- typed bodies at the edges of their types -----------------------------------------------------------


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("value", [-(2**63), 2**63 - 1, -62135596800 * 10**6 - 1, 0])
@pytest.mark.parametrize("tz", ["UTC", None, "+05:00"])
def test_an_arrow_body_with_timestamps_at_the_ends_of_int64_is_never_a_server_error(reader, unit, value, tz):
    import pyarrow as pa
    import pyarrow.ipc as ipc

    table = pa.table({"symbol": pa.array(["AAPL"]), "time": pa.array([value], pa.timestamp(unit, tz=tz))})
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    response = reader.generic(
        "POST", ASOF, sink.getvalue().to_pybytes(), content_type="application/vnd.apache.arrow.stream"
    )
    assert response.status_code < 500, body_of(response)[:300]
    if tz is None:
        assert response.status_code == 400  # naive times are refused, naming the column


# --- numbers and nesting beyond what the readers take ---------------------------------------------------

ROW = '{"time": "2024-03-01T14:30:00Z", "symbol": "A", "open": 1, "high": 1, "low": 1, "close": 1, "volume": %s}'


@pytest.mark.parametrize("content_type", ["application/json", "application/x-ndjson"])
@pytest.mark.parametrize("value", ["9" * 5000, "[" * 100_000 + "]" * 100_000, "[" * 2000 + "]" * 2000])
def test_a_huge_number_or_deep_nesting_is_a_400(writer, content_type, value):
    response = writer.generic("POST", INGEST, ROW % value, content_type=content_type)
    assert response.status_code == 400, body_of(response)[:300]
    assert nothing_stored()


def test_ndjson_nesting_deeper_than_the_limit_is_refused_before_arrow_reads_it():
    """Arrow's JSON reader crashes the process (SIGSEGV) at ~20,000 levels: uploads and the write API
    both read NDJSON through parsers.read_batches, which refuses a line nesting deeper than 100."""
    import io

    deep = (ROW % ("[" * 30_000 + "]" * 30_000)).encode()
    with pytest.raises(InputError, match="nests deeper than 100"):
        list(parsers.read_batches(io.BytesIO(deep), dataset=DATASETS["market_data"], fmt="ndjson"))
    fine = "\n".join(
        [ROW % ("[" * 50 + "1" + "]" * 50)] * 4
    ).encode()  # 4 x 50 levels: the depth starts again on each line
    assert (
        sum(b.num_rows for b in parsers.read_batches(io.BytesIO(fine), dataset=DATASETS["market_data"], fmt="ndjson"))
        == 4
    )


@pytest.mark.parametrize("dataset", ["market_data", "government_events", "corporate_actions"])
@pytest.mark.parametrize("body", [b"null", b"  null\n", b"null\n{}\n"])
def test_an_ndjson_body_starting_with_null_is_a_400_not_a_crash(writer, dataset, body):
    """Arrow's JSON reader crashes the process (SIGSEGV) when the first value is null (found by the
    write-API fuzz): parsers.read_batches refuses it before Arrow reads it."""
    response = writer.generic("POST", f"/api/v1/ingest/{dataset}/", body, content_type="application/x-ndjson")
    assert response.status_code == 400 and "the first line is null" in body_of(response)
    assert nothing_stored()


@pytest.mark.parametrize("depth", [2000, 100_000])
def test_deeply_nested_asof_points_are_a_400(reader, depth):
    response = reader.generic("POST", ASOF, "[" * depth + "]" * depth, content_type="application/json")
    assert response.status_code == 400, body_of(response)[:300]
    assert "nests too deeply" in response.json()["detail"]
