"""Property-based hostile input (Hypothesis): whatever is thrown at the write API, the read API, the
timeline pages, the admin upload form or any URL's headers, no answer is a server error (>= 500).

Deterministic (derandomize) and modest in size so that it runs in CI within a minute or two."""

from __future__ import annotations

import io
from urllib.parse import quote, urlencode

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ingestion.loader import ingest_table
from tests.helpers import bar
from tests.hostile import strategies as s
from timeseries.datasets import DATASETS

pytestmark = pytest.mark.django_db

FUZZ = hsettings(
    max_examples=80, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


def no_server_error(response, what) -> None:
    assert response.status_code < 500, f"{what} -> {response.status_code}: {response.content[:400]!r}"


@pytest.fixture
def some_data(db):
    ingest_table(dataset="market_data", data=[bar(sym, m) for sym in ("AAPL", "BRK/B") for m in range(5)])


# --- write API ---------------------------------------------------------------------------------------


@st.composite
def write_requests(draw):
    dataset = draw(
        st.one_of(
            st.sampled_from(list(DATASETS)), st.sampled_from(list(DATASETS)), st.sampled_from(["nope", "..", "x\x00"])
        )
    )
    fmt = draw(st.sampled_from(list(s.ENCODERS)))
    encode, content_type = s.ENCODERS[fmt]
    rows = draw(s.dataset_rows(dataset if dataset in DATASETS else "market_data"))
    body = (
        draw(st.one_of(st.just(None), st.binary(max_size=200), s.json_values.map(s.to_json)))
        if draw(st.integers(0, 5)) == 0
        else None
    )
    good = st.fixed_dictionaries(
        {},
        optional={
            "on_error": st.sampled_from(["reject", "skip"]),
            "bar_interval": st.sampled_from(["1min", "5min", "1h", "1d", "366d"]),
            "feed": st.sampled_from(["vendor_x", "curation", "NYSE:feed.2-b"]),
            "reassert": st.sampled_from(["true", "false"]),
        },
    )
    bad = st.fixed_dictionaries(
        {},
        optional={
            "on_error": st.sampled_from(["SKIP", "", "\x00"]),
            "bar_interval": s.intervals,
            "feed": s.hostile_text,
            "reassert": st.one_of(st.sampled_from(["TRUE", "1", "", "\x00"]), s.hostile_text),
            "x": s.hostile_text,
        },
    )
    params = draw(st.one_of(good, good, good, bad))
    return dataset, content_type, body if body is not None else encode(rows), params


@FUZZ
@given(request=write_requests())
def _write(client, request):
    dataset, content_type, body, params = request
    url = f"/api/v1/ingest/{quote(dataset, safe='')}/?{urlencode(params, encoding='utf-8', errors='surrogatepass')}"
    no_server_error(client.generic("POST", url, body, content_type=content_type), (url, content_type, body[:200]))


def test_the_write_api_never_answers_a_server_error(writer):
    _write(writer)


def test_a_staff_session_writing_never_gets_a_server_error(staff):
    staff.get("/admin/login/", follow=True)
    staff.defaults["HTTP_X_CSRFTOKEN"] = staff.cookies["csrftoken"].value
    _write(staff)


# --- read API ---------------------------------------------------------------------------------------

READ_PATHS = [
    "/api/v1/state/",
    "/api/v1/market-data/",
    "/api/v1/news/",
    "/api/v1/insider-trades/",
    "/api/v1/sentiment/",
    "/api/v1/government-events/",
    "/api/v1/news/before/",
    "/api/v1/sentiment/before/",
    "/api/v1/insider-trades/before/",
    "/api/v1/government-events/before/",
]
READ_PARAMS = [
    "at",
    "recorded_by",
    "as_of",
    "symbols",
    "symbol",
    "limit",
    "bars",
    "min_quality",
    "quality_min",
    "cursor",
    "ordering",
    "page_size",
    "time_after",
    "time_before",
    "known_after",
    "known_before",
    "format",
    "platforms",
    "sectors",
    "dataset",
]
param_values = st.one_of(
    s.instants,
    s.symbols,
    s.numbers.map(str),
    s.hostile_text,
    st.sampled_from(["csv", "json", "parquet", "arrow", "api", "xml"]),
)


@FUZZ
@given(
    path=st.one_of(
        st.sampled_from(READ_PATHS),
        s.symbols.map(lambda x: f"/api/v1/reconstruct/{quote(x, safe='/', errors='surrogatepass')}/"),
    ),
    params=st.dictionaries(st.one_of(st.sampled_from(READ_PARAMS), s.hostile_text), param_values, max_size=5),
    accept=st.sampled_from(
        ["*/*", "text/csv", "application/vnd.apache.parquet", "application/vnd.apache.arrow.stream", "text/html", "x/y"]
    ),
)
def _read(client, path, params, accept):
    url = f"{path}?{urlencode(params, encoding='utf-8', errors='surrogatepass')}"
    no_server_error(client.get(url, HTTP_ACCEPT=accept), (url, accept))


def test_the_read_api_never_answers_a_server_error(reader, some_data):
    _read(reader)


def test_the_read_api_never_answers_a_staff_browser_a_server_error(staff, some_data):
    _read(staff)  # a session: DRF's browsable API renders the answers and the errors as HTML


@FUZZ
@given(
    dataset=st.sampled_from([*DATASETS, "nope", ""]),
    points=st.one_of(
        st.lists(
            st.fixed_dictionaries(
                {"symbol": s.symbols, "time": s.instants}, optional={"platform": s.hostile_text, "x": s.json_values}
            ),
            max_size=4,
        ),
        s.json_values,
    ),
    fmt=st.sampled_from(["json", "csv", "parquet", "arrow", "arrow-file"]),
    junk=st.binary(max_size=200),
)
def _asof(client, dataset, points, fmt, junk):
    binary = {
        "parquet": "application/vnd.apache.parquet",
        "arrow": "application/vnd.apache.arrow.stream",
        "arrow-file": "application/vnd.apache.arrow.file",
    }
    if fmt in binary:
        body, content_type = junk, binary[fmt]
    else:
        body = s.to_json(points) if fmt == "json" or not isinstance(points, list) or not points else s.to_csv(points)
        content_type = "application/json" if body.startswith((b"[", b"{")) or fmt == "json" else "text/csv"
    url = f"/api/v1/asof-join/?dataset={quote(dataset)}"
    no_server_error(client.generic("POST", url, body, content_type=content_type), (url, body[:300]))


def test_the_asof_join_never_answers_a_server_error(reader, some_data):
    _asof(reader)


# --- timeline pages ---------------------------------------------------------------------------------


@FUZZ
@given(
    path=st.one_of(
        st.just("/timeline/"),
        s.symbols.map(lambda x: f"/timeline/{quote(x, safe='/', errors='surrogatepass')}/"),
        s.hostile_text.map(lambda x: f"/timeline/assets/{quote(x, safe='/', errors='surrogatepass')}"),
    ),
    params=st.dictionaries(
        st.one_of(st.sampled_from(["at", "recorded_by", "from", "to", "since", "sort"]), s.hostile_text),
        st.one_of(s.instants, s.hostile_text, st.sampled_from(["symbol", "close", "-volume"])),
        max_size=4,
    ),
)
def _pages(client, path, params):
    url = f"{path}?{urlencode(params, encoding='utf-8', errors='surrogatepass')}"
    no_server_error(client.get(url), url)


def test_the_timeline_pages_never_answer_a_server_error(staff, some_data):
    _pages(staff)


# --- admin upload form ------------------------------------------------------------------------------


@FUZZ
@given(
    fields=st.fixed_dictionaries(
        {},
        optional={
            "dataset": st.sampled_from([*DATASETS, "nope", ""]),
            "on_error": st.sampled_from(["reject", "skip", "x"]),
            "bar_interval_text": s.intervals,
            "feed": st.one_of(st.sampled_from(["vendor_x", ""]), s.hostile_text),
            "reassert": st.sampled_from(["on", "", "\x00"]),
        },
    ),
    name=st.one_of(
        st.sampled_from(["bars.csv", "bars.parquet", "bars.ndjson", "x.exe", "", ".csv", "../../etc/passwd.csv"]),
        s.hostile_text.map(lambda x: x + ".csv"),
    ),
    content=st.one_of(
        s.dataset_rows("market_data").map(s.to_csv),
        s.dataset_rows("market_data").map(s.to_ndjson),
        st.binary(max_size=300),
    ),
)
def _upload(client, fields, name, content):
    data = {k: v.encode("utf-8", "surrogatepass").decode("utf-8", "replace") for k, v in fields.items()}
    safe_name = name.encode("utf-8", "surrogatepass").decode("utf-8", "replace").replace("\x00", "")
    data["file"] = SimpleUploadedFile(safe_name or "upload", content)
    no_server_error(client.post("/admin/ingestion/upload/add/", data), (fields, name, content[:200]))


def test_the_upload_form_never_answers_a_server_error(settings, tmp_path, staff_user):
    settings.MEDIA_ROOT = str(tmp_path)
    client = Client(raise_request_exception=False)
    client.force_login(staff_user)
    _upload(client)


# --- headers on any URL -----------------------------------------------------------------------------

ANY_PATHS = [
    "/api/v1/state/?at=2024-03-01T15:00:00Z",
    "/api/v1/market-data/",
    "/api/v1/ingest/market_data/",
    "/api/v1/asof-join/?dataset=market_data",
    "/api/v1/schema/",
    "/api/v1/reconstruct/AAPL/?at=2024-03-01T15:00:00Z",
    "/timeline/",
    "/timeline/AAPL/",
    "/admin/",
    "/admin/login/",
    "/admin/ingestion/upload/add/",
    "/accounts/login/",
    "/",
]


@FUZZ
@given(
    path=st.sampled_from(ANY_PATHS),
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]),
    headers=s.headers,
    body=st.one_of(st.binary(max_size=100), s.dataset_rows("market_data").map(s.to_json)),
)
def _headers(client, path, method, headers, body):
    content_type = headers.pop("CONTENT_TYPE", "application/json")
    no_server_error(client.generic(method, path, body, content_type=content_type, **headers), (method, path, headers))


@pytest.mark.parametrize("who", ["anonymous", "reader", "writer", "staff"])
def test_no_header_makes_any_url_answer_a_server_error(request, who, some_data):
    _headers(request.getfixturevalue(who))


BODY_PATHS = [
    "/api/v1/ingest/market_data/",
    "/api/v1/asof-join/?dataset=market_data",
    "/admin/login/",
    "/admin/ingestion/upload/add/",
]
framing = st.fixed_dictionaries(
    {"CONTENT_LENGTH": st.one_of(st.integers(-5, 10**20).map(str), s.latin1_text)},
    optional={
        "CONTENT_TYPE": st.one_of(st.sampled_from(s.CONTENT_TYPES), s.latin1_text),
        "HTTP_TRANSFER_ENCODING": st.one_of(
            st.sampled_from(["chunked", "gzip", "chunked, gzip", "identity"]), s.latin1_text
        ),
    },
)


@FUZZ
@given(
    path=st.sampled_from(BODY_PATHS),
    headers=framing,
    body=st.one_of(st.binary(max_size=100), s.dataset_rows("market_data").map(s.to_json)),
)
def _framing(client, path, headers, body):
    content_type = headers.pop("CONTENT_TYPE", "application/json")
    # the body as a real server hands it over: a read past its end is short, not the test client's AssertionError
    headers["wsgi.input"] = io.BytesIO(body)
    no_server_error(
        client.generic("POST", path, body, content_type=content_type, **headers),
        (path, headers, content_type, body[:200]),
    )


def test_no_body_framing_makes_a_url_reading_the_body_answer_a_server_error(writer, staff):
    _framing(writer)
    staff.get("/admin/login/", follow=True)
    staff.defaults["HTTP_X_CSRFTOKEN"] = staff.cookies["csrftoken"].value
    _framing(staff)


# --- admin lists, pages and logins --------------------------------------------------------------------


def admin_list_urls() -> list[str]:
    from django.contrib import admin
    from django.urls import NoReverseMatch, reverse

    urls = []
    for model in admin.site._registry:
        try:
            urls.append(reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"))
        except NoReverseMatch:
            pass
    return sorted(urls)


ADMIN_PARAMS = [
    "q",
    "o",
    "p",
    "e",
    "symbol",
    "symbol__exact",
    "time__gte",
    "time__lt",
    "known_at__gte",
    "dataset",
    "status",
    "id__exact",
    "load__id__exact",
    "all",
    "_popup",
    "_to_field",
    "page",
    "at",
    "reason",
]


@FUZZ
@given(data=st.data())
def _admin_lists(client, urls, data):
    url = data.draw(st.sampled_from(urls))
    params = data.draw(
        st.dictionaries(
            st.one_of(st.sampled_from(ADMIN_PARAMS), s.hostile_text),
            st.one_of(s.instants, s.symbols, s.numbers.map(str), s.hostile_text),
            max_size=3,
        )
    )
    full = f"{url}?{urlencode(params, encoding='utf-8', errors='surrogatepass')}"
    no_server_error(client.get(full), full)


def test_no_admin_list_answers_a_server_error(staff, some_data):
    urls = admin_list_urls()
    assert len(urls) >= 5
    _admin_lists(staff, urls)


@FUZZ
@given(
    path=st.sampled_from(["/admin/login/", "/accounts/login/"]),
    fields=st.dictionaries(
        st.sampled_from(["username", "password", "next", "csrfmiddlewaretoken"]), s.hostile_text, max_size=4
    ),
)
def _logins(client, path, fields):
    data = {k: v.encode("utf-8", "surrogatepass").decode("utf-8", "replace") for k, v in fields.items()}
    no_server_error(client.post(path, data), (path, fields))


def test_no_login_form_answers_a_server_error(settings, staff_user):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # a fast hasher: 80 logins
    _logins(Client(raise_request_exception=False))


# --- paths ---------------------------------------------------------------------------------------------

PREFIXES = [
    "/api/v1/reconstruct/",
    "/api/v1/ingest/",
    "/api/v1/ingest/batches/",
    "/timeline/",
    "/timeline/assets/",
    "/admin/",
    "/admin/ingestion/upload/",
    "/admin/timeseries/marketdata/",
    "/api/v1/",
    "/",
]
raw_segments = st.one_of(
    st.sampled_from(
        [
            "%ff",
            "%ff%fe/",
            "%00",
            "%2e%2e/",
            "..%2f..%2f",
            "%",
            "%zz",
            "99999999999999999999/change/",
            "99999999999999999999/progress/",
            "-1/rejected.csv",
            "1/history/",
            "add/?_popup=1",
            "00000000-0000-0000-0000-000000000000/",
            "%C0%AF",
            "%E2%80%AE",
            "a" * 3000,
            "x/" * 200,
        ]
    ),
    s.hostile_text.map(lambda x: quote(x, safe="/", errors="surrogatepass")),
)


@FUZZ
@given(prefix=st.sampled_from(PREFIXES), segment=raw_segments, method=st.sampled_from(["GET", "POST", "HEAD"]))
def _paths(client, prefix, segment, method):
    no_server_error(
        client.generic(method, prefix + segment, b"", content_type="application/json"), (method, prefix + segment[:200])
    )


@pytest.mark.parametrize("who", ["anonymous", "writer", "staff"])
def test_no_path_answers_a_server_error(request, who, some_data):
    client = request.getfixturevalue(who)
    if who == "staff":
        client.get("/admin/login/", follow=True)
        client.defaults["HTTP_X_CSRFTOKEN"] = client.cookies["csrftoken"].value
    _paths(client)
