"""The buffered write API: durable 202s, every bad row named, backpressure, auth, concurrency, fuzzing."""

from __future__ import annotations

import json
import re
import threading
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import override_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from ingestion import buffer
from ingestion.checks import prepare_batch
from ingestion.models import IngestBatch, Load, RejectedRow, ResentRow
from ingestion.parsers import rows_to_table
from tests.helpers import T0, bar
from tests.helpers import write_api_post as post
from tests.ingestion.workers import merge_blocked_then_killed, private_queue, start_worker, worker_env
from timeseries import pit
from timeseries.datasets import CheckContext, get_dataset
from timeseries.models import MarketData
from timeseries.tokens import token_create
from tsm_site.celery import app as celery_app


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["json", "ndjson", "csv"])
def test_it_accepts_a_batch_durably_and_merges_it_on_flush(writer, fmt, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as scheduled:
        response = post(writer, [bar("AAPL", m) for m in range(5)], fmt=fmt)
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["accepted"], body["rejected"], body["status"]) == (5, 0, "pending")
    assert len(scheduled) == 1  # a flush is scheduled once the batch is committed
    assert IngestBatch.objects.get(id=body["batch_id"]).rows == 5  # durable in PostgreSQL before the answer
    assert MarketData.objects.count() == 0
    status = writer.get(body["status_url"]).json()
    assert status["queryable"] is False
    assert buffer.buffer_flush(dataset="market_data").rows == 5
    status = writer.get(body["status_url"]).json()
    assert status["queryable"] is True and status["load"]["inserted"] == 5
    assert len(pit.market_state(at=T0 + timedelta(hours=1))) == 1


@pytest.mark.django_db
def test_a_batch_committed_as_the_flusher_stops_is_merged_by_it(
    writer, monkeypatch, django_capture_on_commit_callbacks
):
    """The batch arrives just after the flusher's last look, while a flush sent within the last second
    keeps it from sending its own: the flusher, letting go, looks once more and merges it, instead
    of leaving it for the next flush a second (or beat's 5 s) later."""
    from django.core.cache import cache

    with django_capture_on_commit_callbacks(execute=False):
        assert post(writer, [bar("AAPL", m) for m in range(5)]).status_code == 202
    drain, late = buffer._flush_drain, []

    def drain_then_a_batch_arrives(*args):
        took = drain(*args)
        if not late:
            cache.set("tsm:flush:now:market_data", 1, timeout=5)  # a flush was sent less than a second ago
            with django_capture_on_commit_callbacks(execute=True):  # its flush is not sent: the key is set
                late.append(post(writer, [bar("MSFT", m) for m in range(3)]).json()["batch_id"])
        return took

    monkeypatch.setattr(buffer, "_flush_drain", drain_then_a_batch_arrives)
    result = buffer.buffer_flush(dataset="market_data")
    assert (result.batches, result.rows) == (2, 8)
    assert IngestBatch.objects.get(id=late[0]).status == IngestBatch.Status.MERGED
    assert cache.get("tsm:flush:now:market_data") is None  # the next batch sends a flush of its own


@pytest.mark.django_db
def test_it_answers_400_with_every_bad_row_and_stores_nothing(writer):
    rows = [bar("AAPL", 0), bar("AAPL", 1, high="1"), bar("AAPL", 2, time="2024-03-01T15:00:00")]
    response = post(writer, rows)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert {"row": 2, "column": "high", "message": "high is below low"} in errors
    assert any(e["row"] == 3 and e["column"] == "time" and "no UTC offset" in e["message"] for e in errors)
    assert response.json()["rejected"] == 2
    assert IngestBatch.objects.count() == 0


@pytest.mark.django_db
def test_it_answers_400_for_a_value_longer_than_its_column(writer):
    """An over-long symbol used to get a 202, then failed every flush with a database error (and held
    the batches behind it)."""
    response = post(writer, [bar("AAPL", 0), bar("A" * 40, 1)])
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"row": 2, "column": "symbol", "message": "symbol is longer than 32 characters (40)"}
    ]
    assert IngestBatch.objects.count() == 0


@pytest.mark.django_db
def test_it_reads_json_numbers_as_the_columns_types(writer):
    """Integer prices (10), float prices, numbers as strings, and keys that only some rows carry."""
    rows = [
        {**bar("AAPL", 0), "open": 10, "high": 11, "low": 9, "close": 10, "volume": 100, "vwap": 10.5},
        {**bar("AAPL", 1), "open": 10.25, "high": 11, "low": 9.5, "close": "10.75", "volume": "200"},
    ]
    response = post(writer, rows)
    assert response.status_code == 202, response.content
    buffer.buffer_flush(dataset="market_data")
    stored = list(MarketData.objects.order_by("time").values_list("open", "close", "volume", "vwap"))
    assert stored == [
        (Decimal("10"), Decimal("10"), 100, Decimal("10.5")),
        (Decimal("10.25"), Decimal("10.75"), 200, None),
    ]


@pytest.mark.django_db
def test_it_names_the_row_and_column_of_a_nan_literal_or_an_integer_beyond_64_bits(writer):
    body = (
        b'[{"time": "2024-03-01T14:30:00+00:00", "symbol": "A", "open": 10, "high": 11, "low": 9, "close": NaN,'
        b' "volume": 1},'
        b' {"time": "2024-03-01T14:31:00+00:00", "symbol": "A", "open": 10, "high": 11, "low": 9, "close": 10,'
        b' "volume": 123456789012345678901234}]'
    )
    response = writer.generic("POST", "/api/v1/ingest/market_data/", body, content_type="application/json")
    assert response.status_code == 400, response.content
    errors = {(e["row"], e["column"]): e["message"] for e in response.json()["errors"]}
    assert set(errors) == {(1, "close"), (2, "volume")}
    assert "not a finite number" in errors[1, "close"] and "out of range" in errors[2, "volume"]
    assert IngestBatch.objects.count() == 0


@pytest.mark.django_db
def test_it_quarantines_bad_rows_with_on_error_skip(writer):
    response = post(writer, [bar("AAPL", 0), bar("AAPL", 1, volume="-1")], on_error="skip")
    assert response.status_code == 202
    assert (response.json()["accepted"], response.json()["rejected"]) == (1, 1)
    batch = IngestBatch.objects.get()
    assert RejectedRow.objects.get(load=batch.quarantine).reason == "volume must not be negative"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body, ctype, code, message",
    [
        (b"{not json", "application/json", 400, "the body is not valid JSON"),
        (b'"a string"', "application/json", 400, "expected a JSON array of row objects"),
        (b"[1, 2]", "application/json", 400, "row 1: expected an object"),
        (b'time,symbol\n"2024-03-01T00:00:00Z,AAPL\n', "text/csv", 400, "cannot read the CSV input"),
        (b"", "application/json", 400, "the body is empty"),
        (b"hello", "text/plain", 415, "Content-Type 'text/plain' is not supported"),
        (b"time\rsymbol,open\n1,2\n", "text/csv", 400, "cannot read the CSV header"),  # found by the fuzz test
        (
            b'[{"time": "2024-03-01T00:00:00Z", "symbol": "A", "colour": "red"}]',
            "application/json",
            400,
            "unknown column(s) 'colour'",
        ),
    ],
)
def test_it_rejects_a_malformed_body_with_a_clear_4xx(writer, body, ctype, code, message):
    response = writer.generic("POST", "/api/v1/ingest/market_data/", body, content_type=ctype)
    assert response.status_code == code, response.content
    assert message in response.json()["detail"]
    assert IngestBatch.objects.count() == 0


@pytest.mark.django_db
def test_it_answers_404_for_an_unknown_dataset(writer):
    assert post(writer, [bar("AAPL", 0)], dataset="prices").status_code == 404


@pytest.mark.django_db
def test_it_answers_413_for_an_oversized_body(writer, settings):
    settings.TSM_INGEST_MAX_BODY_BYTES = 100
    response = post(writer, [bar("AAPL", m) for m in range(10)])
    assert response.status_code == 413 and "the limit is 100" in response.json()["detail"]


@pytest.mark.django_db
def test_it_answers_429_with_retry_after_when_the_buffer_is_full(writer, settings):
    settings.TSM_INGEST_BUFFER_MAX_ROWS = 5
    assert post(writer, [bar("AAPL", m) for m in range(6)]).status_code == 202
    refused = post(writer, [bar("AAPL", 10)])
    assert refused.status_code == 429 and refused["Retry-After"] == "1"
    buffer.buffer_flush(dataset="market_data")
    assert post(writer, [bar("AAPL", 10)]).status_code == 202


@pytest.mark.django_db
def test_it_needs_a_write_token(db):
    anonymous = APIClient()
    assert post(anonymous, [bar("AAPL", 0)]).status_code == 401
    reader = APIClient()
    _, key = token_create(user=User.objects.create_user("reader"), scope="read")
    reader.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    response = post(reader, [bar("AAPL", 0)])
    assert response.status_code == 403 and "needs 'write'" in response.json()["detail"]
    assert IngestBatch.objects.count() == 0


@pytest.mark.django_db
def test_it_merges_batches_with_the_same_key_and_known_at_in_arrival_order(writer):
    post(writer, [bar("AAPL", 0, close="10.1")])
    post(writer, [bar("AAPL", 0, close="10.2")])
    post(writer, [bar("AAPL", 1)])
    result = buffer.buffer_flush(dataset="market_data")
    assert (result.batches, result.loads) == (3, 3)  # a (key, known_at) repeats: one load per batch
    assert pit.market_state(at=T0 + timedelta(seconds=90))[0]["close"] == Decimal("10.2")
    assert MarketData.objects.count() == 3


@pytest.mark.django_db
def test_it_merges_subminute_bars_known_when_they_close(writer):
    """bar_interval is the batch's: a 10-second bar is known 10 s after it opens, at accept time and
    again when the flush merges it (the flush once re-checked it as a 1-minute bar and refused it)."""
    rows = [bar("AAPL", 0, time=(T0 + timedelta(seconds=10 * i)).isoformat()) for i in range(6)]
    response = post(writer, rows, bar_interval="10s")
    assert response.status_code == 202, response.content
    result = buffer.buffer_flush(dataset="market_data")
    assert (result.batches, result.rows) == (1, 6)
    assert IngestBatch.objects.get(id=response.json()["batch_id"]).status == IngestBatch.Status.MERGED
    state = pit.market_state(at=T0 + timedelta(seconds=25))[0]
    assert (state["time"], state["known_at"]) == (T0 + timedelta(seconds=10), T0 + timedelta(seconds=20))


@pytest.mark.django_db
def test_it_refuses_rows_of_one_batch_giving_one_key_two_values(writer):
    """The same bar twice with different closes in one body: 400 naming both rows (it used to be
    accepted, then refused by every flush, holding the batches behind it); the same bar twice with the
    same values is a duplicate; with on_error=skip both conflicting rows are quarantined."""
    rows = [bar("AAPL", 0, close="10.1"), bar("AAPL", 1), bar("AAPL", 0, close="10.2"), bar("AAPL", 1)]
    response = post(writer, rows)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [(e["row"], e["column"]) for e in errors] == [(1, "known_at"), (3, "known_at")]
    assert "conflicts with row(s) 3" in errors[0]["message"] and "different values" in errors[0]["message"]
    assert IngestBatch.objects.count() == 0
    response = post(writer, rows, on_error="skip")
    assert response.status_code == 202 and (response.json()["accepted"], response.json()["rejected"]) == (2, 2)
    batch = IngestBatch.objects.get(id=response.json()["batch_id"])
    assert sorted(RejectedRow.objects.filter(load=batch.quarantine).values_list("row_number", flat=True)) == [1, 3]
    result = buffer.buffer_flush(dataset="market_data")
    assert result.rows == 2 and MarketData.objects.count() == 1  # bar 1 once; bar 0 quarantined


@pytest.mark.django_db
def test_it_tells_a_repeated_story_from_a_conflicting_one(writer):
    """News rows carry lists (categories): the same story twice is a duplicate, two versions of one
    story with one known_at are refused."""
    story = {
        "time": "2024-03-01T14:30:00Z",
        "symbol": "AAPL",
        "id": "n1",
        "title": "Apple",
        "categories": ["tech", "earnings"],
    }
    response = post(writer, [story, dict(story)], dataset="news_events")
    assert response.status_code == 202 and response.json()["accepted"] == 2
    response = post(writer, [story, {**story, "categories": ["tech"]}], dataset="news_events")
    assert response.status_code == 400
    assert [e["row"] for e in response.json()["errors"]] == [1, 2]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "rows, reason",
    [
        ([bar("AAPL", 0, close="10.1"), bar("AAPL", 0, close="10.2")], "different values"),  # the loader refuses it
        ([bar("AAPL", 0, source="a\x00b")], "0x00"),  # PostgreSQL refuses it
    ],
    ids=["two values for one bar", "a NUL in a text"],
)
def test_a_batch_that_cannot_be_merged_is_marked_failed_and_the_rest_merge(writer, rows, reason):
    """A batch stored by an older version that no longer merges is failed with its reason instead
    of holding every later batch pending; the batch arriving after it merges."""
    import pyarrow as pa

    clean = [{**r, "source": "feed"} for r in rows]  # what accept would let through, then the stored payload
    prepared = prepare_batch(
        rows_to_table(clean),
        dataset=get_dataset("market_data"),
        ctx=CheckContext(bar_interval=timedelta(minutes=1)),
        row_offset=0,
    )
    table = prepared.table.drop_columns(["row_no"])
    table = table.set_column(
        table.schema.get_field_index("source"), "source", pa.array([r.get("source", "") for r in rows])
    )
    poison = buffer._batch_insert(
        IngestBatch(dataset="market_data", rows=len(rows), rejected=0, payload=buffer._ipc(table))
    )
    good = post(writer, [bar("MSFT", m) for m in range(3)]).json()["batch_id"]
    result = buffer.buffer_flush(dataset="market_data")
    assert (result.batches, result.rows) == (1, 3)
    assert IngestBatch.objects.get(id=good).status == IngestBatch.Status.MERGED
    poison.refresh_from_db()
    assert poison.status == IngestBatch.Status.FAILED and reason in poison.error
    status = writer.get(f"/api/v1/ingest/batches/{poison.id}/").json()
    assert status["status"] == "failed" and status["queryable"] is False and reason in status["error"]


@pytest.mark.django_db
def test_it_combines_independent_batches_into_one_load(writer):
    for s in ("AAPL", "MSFT", "IBM"):
        post(writer, [bar(s, m) for m in range(3)])
    result = buffer.buffer_flush(dataset="market_data")
    assert (result.batches, result.loads, result.rows) == (3, 1, 9)


@pytest.mark.django_db(transaction=True)
def test_it_gives_concurrent_writers_the_state_of_their_arrival_order_without_duplicate_versions():
    writers = 10
    rows_by_writer = [
        [bar(sym, m, close=f"{10 + w / 100 + m / 10000:.4f}") for sym in ("AAPL", "MSFT") for m in range(w % 3, 30, 2)]
        for w in range(writers)
    ]
    errors: list[BaseException] = []
    barrier = threading.Barrier(writers + 1)

    def send(rows):
        try:
            barrier.wait()
            for start in range(0, len(rows), 10):
                buffer.batch_accept(
                    dataset="market_data",
                    body=json.dumps(rows[start : start + 10]).encode(),
                    content_type="application/json",
                )
        except BaseException as exc:  # noqa: BLE001 — surfaced below
            errors.append(exc)
        finally:
            connection.close()

    def flush():
        try:
            barrier.wait()
            for _ in range(30):
                buffer.buffer_flush(dataset="market_data", max_rows=50)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(rows,)) for rows in rows_by_writer] + [
        threading.Thread(target=flush)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    buffer.buffer_flush(dataset="market_data")
    assert IngestBatch.objects.filter(status="pending").count() == 0
    # the expected state: apply the batches serially in arrival (seq) order
    expected: dict[tuple, str] = {}
    versions: dict[tuple, list[str]] = defaultdict(list)
    for batch in IngestBatch.objects.order_by("seq"):
        for row in buffer._table(batch.payload).to_pylist():
            key = (row["symbol"], row["time"])
            value = f"{row['close']:.4f}"
            if not versions[key] or versions[key][-1] != value:
                versions[key].append(value)
            expected[key] = value
    state = pit.history(dataset="market_data", at=T0 + timedelta(days=1))
    assert {(r["symbol"], r["time"]): f"{r['close']:.4f}" for r in state} == expected
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM market_data")
        assert cur.fetchone()[0] == sum(len(v) for v in versions.values())
        cur.execute(
            "SELECT count(*) FROM (SELECT 1 FROM market_data"
            " GROUP BY symbol, time, known_at, close HAVING count(*) > 1) d"
        )
        assert cur.fetchone()[0] == 0  # no duplicate versions


bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.lists(
        st.dictionaries(
            st.sampled_from(["time", "symbol", "open", "high", "low", "close", "volume", "x"]),
            st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20), st.booleans()),
            max_size=8,
        ),
        max_size=5,
    ).map(lambda rows: json.dumps(rows).encode()),
    st.lists(
        st.lists(st.text(alphabet=',"\n\rabc0123456789-:TZ.', max_size=12), min_size=1, max_size=7), max_size=6
    ).map(lambda rows: ("time,symbol,open,high,low,close,volume\n" + "\n".join(",".join(r) for r in rows)).encode()),
)


@pytest.mark.django_db
@hsettings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(body=bodies, ctype=st.sampled_from(["application/json", "application/x-ndjson", "text/csv"]))
def test_it_never_fails_with_a_server_error_on_any_body(writer, body, ctype):
    response = writer.generic("POST", "/api/v1/ingest/market_data/", body, content_type=ctype)
    assert response.status_code in (202, 400), (response.status_code, body, response.content[:300])
    if response.status_code == 400:
        assert response.json()["detail"]


@pytest.mark.django_db(transaction=True)
def test_it_keeps_batches_pending_when_a_flushing_worker_is_killed_and_merges_them_once_on_reflush():
    for m in range(0, 40, 10):
        buffer.batch_accept(
            dataset="market_data",
            body=json.dumps([bar("AAPL", i) for i in range(m, m + 10)]).encode(),
            content_type="application/json",
        )
    queue = private_queue()
    worker = start_worker(worker_env(), queue)
    with merge_blocked_then_killed(worker) as merge_blocked:
        celery_app.send_task("ingestion.tasks.flush_buffer", args=["market_data"], queue=queue)
        merge_blocked()
    assert MarketData.objects.count() == 0
    assert IngestBatch.objects.filter(status="pending").count() == 4  # nothing was marked merged
    result = buffer.buffer_flush(dataset="market_data")
    assert (result.batches, result.rows) == (4, 40)
    assert MarketData.objects.count() == 40 and IngestBatch.objects.filter(status="merged").count() == 4


# --- feeds and re-assertion (issue #16) ------------------------------------------------------------


def token_client(username: str, *, feed: str = "") -> tuple[APIClient, str]:
    """A client holding a new write token of a new user (bound to ``feed`` when given), and the token's
    prefix."""
    token, key = token_create(user=User.objects.create_user(username), scope="write", feed=feed)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client, token.prefix


@pytest.mark.django_db
def test_the_feed_and_the_re_assert_option_reach_the_load_with_the_token_as_requester():
    client, prefix = token_client("vendor-bot")
    response = post(client, [bar("AAPL", m) for m in range(3)], feed="vendor_x", reassert="true")
    assert response.status_code == 202, response.content
    assert (response.json()["feed"], response.json()["reassert"]) == ("vendor_x", True)
    batch = IngestBatch.objects.get(id=response.json()["batch_id"])
    assert (batch.feed, batch.reassert, batch.requested_by) == ("vendor_x", True, f"token {prefix}… (vendor-bot)")
    assert buffer.buffer_flush(dataset="market_data").loads == 1
    batch.refresh_from_db()
    assert (batch.load.feed, batch.load.reassert, batch.load.requested_by) == (
        "vendor_x",
        True,
        f"token {prefix}… (vendor-bot)",
    )
    status = client.get(response.json()["status_url"]).json()
    assert (status["feed"], status["reassert"]) == ("vendor_x", True)
    assert (status["load"]["inserted"], status["load"]["resent"], status["load"]["outranked"]) == (3, 0, 0)
    plain = post(client, [bar("MSFT", 0)], reassert="false")
    assert (plain.json()["feed"], plain.json()["reassert"]) == ("", False)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params, message",
    [
        ({"feed": "vendor x"}, "feed: 'vendor x' is not a feed name"),
        ({"feed": "x" * 65}, "is not a feed name (1-64 ASCII characters"),
        ({"feed": "-x"}, "feed: '-x' is not a feed name"),
        ({"reassert": "yes"}, "reassert='yes': expected true or false"),
        ({"reassert": "TRUE"}, "reassert='TRUE': expected true or false"),
        ({"reassert": ""}, "reassert='': expected true or false"),
    ],
)
def test_it_answers_400_naming_a_bad_feed_or_reassert_and_stores_nothing(writer, params, message):
    response = post(writer, [bar("AAPL", 0)], **params)
    assert response.status_code == 400, response.content
    assert message in response.json()["detail"]
    assert IngestBatch.objects.count() == 0


@pytest.mark.django_db
def test_it_answers_400_for_a_feed_given_twice(writer):
    body = json.dumps([bar("AAPL", 0)])
    url = "/api/v1/ingest/market_data/?feed=a&feed=b"
    response = writer.generic("POST", url, body, content_type="application/json")
    assert response.status_code == 400 and "feed is given 2 times" in response.json()["detail"]
    assert IngestBatch.objects.count() == 0


@pytest.mark.django_db
def test_a_token_bound_to_a_feed_sends_only_as_that_feed():
    client, _ = token_client("vendor-bot", feed="vendor_x")
    assert post(client, [bar("AAPL", 0)]).json()["feed"] == "vendor_x"  # no feed given: the token's
    assert post(client, [bar("AAPL", 1)], feed="vendor_x").json()["feed"] == "vendor_x"
    for other in ("curation", ""):
        refused = post(client, [bar("AAPL", 2)], feed=other)
        assert refused.status_code == 403, refused.content
        detail = refused.json()["detail"]
        assert "bound to feed 'vendor_x'" in detail and f"cannot send rows as feed {other!r}" in detail
    assert sorted(IngestBatch.objects.values_list("feed", flat=True)) == ["vendor_x", "vendor_x"]
    assert IngestBatch.objects.filter(rows=1).count() == 2  # the refused batches were not stored


@pytest.mark.django_db
def test_a_staff_session_names_the_feed_and_is_recorded_as_the_requester(staff_client):
    staff_client.handler.enforce_csrf_checks = False
    response = post(staff_client, [bar("AAPL", 0)], feed="curation")
    assert response.status_code == 202, response.content
    batch = IngestBatch.objects.get()
    assert (batch.feed, batch.requested_by) == ("curation", "staff session (staff)")


@pytest.mark.django_db
def test_a_flush_merges_only_batches_with_the_same_feed_and_re_assert_option_into_one_load():
    vendor, vendor_prefix = token_client("vendor-bot")
    curator, curator_prefix = token_client("curator")
    post(vendor, [bar("AAPL", m) for m in range(3)], feed="vendor_x")
    post(curator, [bar("MSFT", m) for m in range(2)], feed="curation")
    post(vendor, [bar("IBM", m) for m in range(2)], feed="vendor_x")
    post(curator, [bar("ORCL", 0)], feed="vendor_x")
    post(vendor, [bar("SAP", 0)], feed="vendor_x", reassert="true")
    result = buffer.buffer_flush(dataset="market_data")
    assert (result.batches, result.loads, result.rows) == (5, 3, 9)  # no key in two groups: one load per option
    loads = {}
    for batch in IngestBatch.objects.select_related("load").order_by("seq"):
        loads.setdefault(batch.load_id, []).append(batch.seq)
        assert (batch.load.feed, batch.load.reassert) == (batch.feed, batch.reassert)
    assert sorted(map(len, loads.values())) == [1, 1, 3]
    vendor_load = IngestBatch.objects.filter(feed="vendor_x", reassert=False).first().load
    assert vendor_load.requested_by == f"token {vendor_prefix}… (vendor-bot); token {curator_prefix}… (curator)"
    assert vendor_load.inserted == 6


@pytest.mark.django_db
def test_batches_of_different_feeds_sharing_a_key_merge_in_arrival_order():
    """The same bar from two feeds at two known_at: merged run by run in arrival order (one load per run
    of consecutive batches with the same feed), not feed by feed."""
    later = (T0 + timedelta(minutes=5)).isoformat()
    vendor, _ = token_client("vendor-bot")
    post(vendor, [bar("AAPL", 0), bar("MSFT", 0)], feed="vendor_x")
    post(vendor, [bar("AAPL", 0, close="10.75", known_at=later)], feed="curation")
    post(vendor, [bar("IBM", 0)], feed="vendor_x")
    post(vendor, [bar("ORCL", 0)], feed="vendor_x")
    result = buffer.buffer_flush(dataset="market_data")
    assert (result.batches, result.loads) == (4, 3)
    order = [(b.feed, b.load_id) for b in IngestBatch.objects.order_by("seq")]
    assert [feed for feed, _ in order] == ["vendor_x", "curation", "vendor_x", "vendor_x"]
    assert order[2][1] == order[3][1] != order[0][1]  # the last two, consecutive, share a load
    first, fix, rest = (Load.objects.get(pk=order[i][1]) for i in (0, 1, 2))
    assert first.recorded_at < fix.recorded_at < rest.recorded_at
    assert pit.market_state(at=T0 + timedelta(minutes=6))[0]["close"] == Decimal("10.75")


@pytest.mark.django_db
def test_the_schema_documents_the_feed_and_reassert_parameters(writer):
    schema = writer.get("/api/v1/schema/", {"format": "json"}).json()
    parameters = {p["name"]: p for p in schema["paths"]["/api/v1/ingest/{dataset}/"]["post"]["parameters"]}
    assert sorted(parameters["reassert"]["schema"]["enum"]) == ["false", "true"]
    pattern = re.compile(parameters["feed"]["schema"]["pattern"])
    assert pattern.search("vendor_x") and pattern.search("NYSE:ibm.1-a")
    assert not pattern.search("vendor x") and not pattern.search("-x") and not pattern.search("x" * 65)
    assert "403" in schema["paths"]["/api/v1/ingest/{dataset}/"]["post"]["responses"]


@pytest.mark.django_db
def test_a_re_send_of_fixed_rows_is_counted_on_the_batch_status_and_re_assertion_makes_it_current():
    """NEEDS THE LEAD'S MERGE RULE (ingestion/loader/merge.py). A vendor's bars, two closes fixed by a
    curation token, the vendor's bars sent again: nothing stored, the status counts two re-sends; a
    feed ranked below curation sending another value is outranked; reassert=true makes the vendor's
    values current again."""
    vendor, _ = token_client("vendor-bot", feed="vendor_x")
    curator, _ = token_client("curator", feed="curation")
    original = [bar("AAPL", m) for m in range(3)]

    def send(client, rows, **params) -> dict:
        response = post(client, rows, **params)
        assert response.status_code == 202, response.content
        buffer.buffer_flush(dataset="market_data")
        return client.get(response.json()["status_url"]).json()["load"]

    assert send(vendor, original)["inserted"] == 3
    assert send(curator, [bar("AAPL", m, close="10.75") for m in range(2)])["revised"] == 2
    again = send(vendor, original)
    counts = {k: again[k] for k in ("inserted", "revised", "duplicates", "resent", "outranked")}
    assert counts == {"inserted": 0, "revised": 0, "duplicates": 3, "resent": 2, "outranked": 0}
    assert ResentRow.objects.filter(load_id=again["id"], kind="superseded").count() == 2
    with override_settings(TSM_FEED_PRECEDENCE={"market_data": ("curation", "vendor_x")}):
        late = send(vendor, [bar("AAPL", 0, close="10.9")])
    assert (late["outranked"], late["revised"]) == (1, 0)
    reasserted = send(vendor, original, reassert="true")
    assert (reasserted["revised"], reasserted["duplicates"], reasserted["resent"]) == (2, 1, 0)
    state = pit.history(dataset="market_data", at=T0 + timedelta(days=1))
    assert sorted(r["close"] for r in state) == [Decimal("10.5")] * 3
