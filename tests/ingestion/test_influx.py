"""InfluxDB backup and restore (ingestion/influx.py) against a real influxd started by the tests."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from django.core.management import CommandError, call_command

from ingestion import influx
from ingestion.loader import ingest_table
from ingestion.models import InfluxBackupState, Load
from ingestion.tasks import influx_backup
from tests.helpers import FAST, SECOND, SLOW, T0, restore, tick, versions, wipe_market_data
from tests.ingestion.influx_server import free_port
from tests.ingestion.workers import private_queue, start_worker, stop_worker, wait_for, worker_env
from timeseries import pit
from timeseries.changes import changes_lag
from timeseries.models import ChangeCursor

AWKWARD = [  # (open, high, low, close, vwap, market_cap, source)
    ("0.000001", "0.000003", "0.000001", "0.000002", None, None, ""),
    (
        "123456789012.345678",
        "999999999999.999999",
        "123456789012.345677",
        "123456789012.345679",
        "123456789012.345678",
        "9999999999999999999999.99",
        'he said "hi" \\ ok, a=b',
    ),
    ("0.1", "0.3", "0.1", "0.2", "0.123457", "0.01", "ünïcode src"),
]


def load_history() -> dict[str, int]:
    """Three loads of one-second bars with corrections, and a load of minute bars."""
    rows = []
    for symbol in FAST:
        for s in range(30):
            o, h, lo, c, vwap, cap, src = AWKWARD[s % len(AWKWARD)]
            rows.append(
                tick(
                    symbol,
                    s,
                    close=c,
                    open=o,
                    high=h,
                    low=lo,
                    vwap=vwap,
                    market_cap=cap,
                    source=src,
                    trades=None if s % 4 else "7",
                    quality_score=str(0.1 * (s % 7)),
                )
            )
    first = ingest_table(dataset="market_data", data=rows, bar_interval=SECOND)
    # an exchange correction known an hour later, for 5 bars of each symbol
    corr = [
        tick(sym, s, close="10.25", known_at=(T0 + timedelta(hours=1)).isoformat()) for sym in FAST for s in range(5)
    ]
    second = ingest_table(dataset="market_data", data=corr, bar_interval=SECOND)
    # our own fix of 3 bars with the same known_at as the original (time + 1 s): same known_at, new values
    fix = [tick(sym, s, close="10.75") for sym in FAST for s in range(3)]
    third = ingest_table(dataset="market_data", data=fix, bar_interval=SECOND)
    minutes = [tick(SLOW, 60 * m) for m in range(10)]
    ingest_table(dataset="market_data", data=minutes)
    assert (first.inserted, second.revised, third.revised) == (60, 10, 6)
    return {"fast_versions": 60 + 10 + 6, "slow": 10}


def as_of_answers(symbols=FAST) -> dict:
    times = [T0 + SECOND, T0 + 2 * SECOND, T0 + 40 * SECOND, T0 + timedelta(hours=1), T0 + timedelta(days=1)]
    return {
        at: [
            {k: v for k, v in row.items() if k != "recorded_at"}
            for row in pit.history(dataset="market_data", at=at, symbols=list(symbols))
        ]
        for at in times
    }


# --- round trip ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_round_trips_subminute_bars_and_corrections_exactly(backup, influxd):
    counts = load_history()
    before_versions, before_answers = versions(), as_of_answers()

    sent = influx.influx_backup_run()

    assert sent.points == counts["fast_versions"]  # minute bars are not sub-minute
    assert influxd.count(db=backup.TSM_INFLUX_DB) == counts["fast_versions"]
    assert changes_lag(consumer="influx", dataset="market_data")["pending"] == 0
    wipe_market_data()
    assert versions() == []

    result = restore()

    assert (result.points, result.inserted + result.revised, result.already_present) == (76, 76, 0)
    assert versions() == before_versions  # every version, its known_at and exact decimals
    assert as_of_answers() == before_answers
    assert any(Decimal("9999999999999999999999.99") == row[10] for row in versions())
    assert versions([SLOW]) == []


@pytest.mark.django_db
def test_it_restores_in_small_windows_without_splitting_a_bar(backup):
    load_history()
    influx.influx_backup_run()
    before_versions, before_answers = versions(), as_of_answers()
    wipe_market_data()

    result = influx.influx_restore(dataset="market_data", start=T0, end=T0 + timedelta(minutes=1), window_points=7)

    assert result.loads > 10 and result.points == 76
    assert versions() == before_versions and as_of_answers() == before_answers


@pytest.mark.django_db
def test_it_backs_up_every_bar_in_all_mode(backup, influxd):
    backup.TSM_INFLUX_BACKUP = "all"
    counts = load_history()
    before = versions([*FAST, SLOW])

    assert influx.influx_backup_run().points == counts["fast_versions"] + counts["slow"]
    wipe_market_data()
    restore()

    assert versions([*FAST, SLOW]) == before


@pytest.mark.django_db
def test_it_sends_only_the_new_versions_of_a_later_load(backup, influxd):
    load_history()
    influx.influx_backup_run()
    more = [tick("TICK", 100 + s) for s in range(4)]
    ingest_table(dataset="market_data", data=more, bar_interval=SECOND)

    again = influx.influx_backup_run()

    assert (again.changes, again.points) == (1, 4)
    assert influxd.count(db=backup.TSM_INFLUX_DB) == 76 + 4


@pytest.mark.django_db
def test_it_backs_up_the_earlier_versions_of_a_bar_that_turns_out_sub_minute(backup, influxd):
    # a minute-aligned bar first stored as a late, one-minute-looking version; then a version known 1 s after it
    ingest_table(dataset="market_data", data=[tick("LATE", 0, known_at=(T0 + timedelta(minutes=5)).isoformat())])
    influx.influx_backup_run()
    assert influxd.count(db=backup.TSM_INFLUX_DB) == 0
    ingest_table(dataset="market_data", data=[tick("LATE", 0, close="10.1")], bar_interval=SECOND)

    assert influx.influx_backup_run().points == 2
    before = versions(["LATE"])
    wipe_market_data()
    restore()
    assert versions(["LATE"]) == before


# --- idempotence --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_stores_nothing_when_restoring_twice(backup):
    load_history()
    influx.influx_backup_run()
    wipe_market_data()
    restore()
    stored = versions()

    again = restore()

    assert (again.points, again.already_present, again.inserted, again.revised, again.loads) == (76, 76, 0, 0, 0)
    assert versions() == stored


@pytest.mark.django_db
def test_it_stores_nothing_when_restoring_over_the_original_data(backup):
    load_history()
    influx.influx_backup_run()
    stored = versions()

    assert restore().already_present == 76
    assert versions() == stored


@pytest.mark.django_db
def test_it_resends_a_slice_without_duplicating_points(backup, influxd):
    load_history()
    influx.influx_backup_run()
    ChangeCursor.objects.filter(consumer="influx").update(last_id=0)  # forget the cursor: send everything again

    assert influx.influx_backup_run().points == 76
    assert influxd.count(db=backup.TSM_INFLUX_DB) == 76


# --- failures and resume ------------------------------------------------------------------------


class DyingProxy:
    """A real HTTP hop in front of influxd that forwards ``writes`` POST /write requests, then dies
    (closes its port) — InfluxDB going away in the middle of a run. With ``overloaded`` set it answers
    /write with 503 instead, until the test clears it."""

    def __init__(self, target: str, writes: int = 1 << 30, overloaded: bool = False):
        self.target, self.writes_left, self.overloaded = target, writes, overloaded
        self.port = free_port()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/write"):
                    if proxy.overloaded:
                        self.send_response(503)
                        self.send_header("Content-Length", "10")
                        self.end_headers()
                        self.wfile.write(b"overloaded")
                        return
                    if proxy.writes_left <= 0:
                        threading.Thread(target=proxy.server.shutdown).start()
                        self.close_connection = True
                        return  # drop the request without an answer
                    proxy.writes_left -= 1
                upstream = requests.post(proxy.target + self.path, data=body, timeout=30)
                self.send_response(upstream.status_code)
                self.send_header("Content-Length", str(len(upstream.content)))
                self.end_headers()
                self.wfile.write(upstream.content)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.django_db
def test_it_keeps_the_cursor_and_records_the_error_when_influxdb_dies_mid_run_then_resumes(backup, influxd):
    load_history()
    before = versions()
    pending = changes_lag(consumer="influx", dataset="market_data")
    backup.TSM_INFLUX_BATCH_LINES = 10  # 76 points: 8 POSTs in one slice
    influxd.query(f'CREATE DATABASE "{backup.TSM_INFLUX_DB}"')
    proxy = DyingProxy(influxd.url, writes=3)
    backup.TSM_INFLUX_URL = proxy.url
    try:
        with pytest.raises(influx.InfluxUnavailable, match="unreachable"):
            influx.influx_backup_run()
    finally:
        proxy.close()

    assert influxd.count(db=backup.TSM_INFLUX_DB) == 30  # three batches arrived...
    assert changes_lag(consumer="influx", dataset="market_data") == pending  # ...but the cursor did not move
    status = influx.backup_status()
    assert status["enabled"] and status["pending_changes"] == pending["pending"]
    assert "unreachable" in status["last_error"] and status["last_success_at"] is None

    backup.TSM_INFLUX_URL = influxd.url
    resumed = influx.influx_backup_run()

    assert resumed.points == 76  # the whole slice again (the first 30 points are overwritten, not doubled)
    assert influxd.count(db=backup.TSM_INFLUX_DB) == 76
    status = influx.backup_status()
    assert (status["pending_changes"], status["last_error"]) == (0, "")
    assert status["last_success_at"] is not None
    wipe_market_data()
    restore()
    assert versions() == before  # no gaps, no duplicates


@pytest.mark.django_db
def test_it_resumes_after_influxd_is_stopped_and_started_again(backup, influxd):
    load_history()
    influx.influx_backup_run()
    more = [tick("TICK", 200 + s, close="10.000001") for s in range(12)]
    ingest_table(dataset="market_data", data=more, bar_interval=SECOND)
    pending = changes_lag(consumer="influx", dataset="market_data")
    influxd.stop()
    try:
        with pytest.raises(influx.InfluxUnavailable):
            influx.influx_backup_run()
        assert changes_lag(consumer="influx", dataset="market_data") == pending
        assert influx.backup_status()["last_error"].startswith(f"InfluxDB at {influxd.url} unreachable")
    finally:
        influxd.start()  # same port, same data directory

    assert influx.influx_backup_run().points == 12
    assert influxd.count(db=backup.TSM_INFLUX_DB) == 76 + 12
    before = versions()
    wipe_market_data()
    restore()
    assert versions() == before


@pytest.mark.django_db
def test_it_fails_without_moving_the_cursor_when_influxdb_is_not_listening(backup):
    load_history()
    pending = changes_lag(consumer="influx", dataset="market_data")
    backup.TSM_INFLUX_URL = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(influx.InfluxUnavailable):
        influx.influx_backup_run()

    assert changes_lag(consumer="influx", dataset="market_data") == pending
    assert InfluxBackupState.objects.get(dataset="market_data").last_error.startswith("InfluxDB at http://127.0.0.1:")


@pytest.mark.django_db
def test_it_records_a_refused_write_as_a_permanent_error(backup, influxd):
    load_history()
    # a field of another type already in the measurement: InfluxDB answers 400 (not worth a retry)
    influxd.query(f'CREATE DATABASE "{backup.TSM_INFLUX_DB}"')
    stamp = int(T0.timestamp() * 1_000_000)  # the same shard as the bars
    r = requests.post(
        f"{influxd.url}/write",
        params={"db": backup.TSM_INFLUX_DB, "precision": "u"},
        data=f'market_data,symbol=X,v=0 open="text" {stamp}'.encode(),
        timeout=10,
    )
    assert r.status_code == 204

    with pytest.raises(influx.InfluxError, match="400") as caught:
        influx.influx_backup_run()

    assert not isinstance(caught.value, influx.InfluxUnavailable)
    assert changes_lag(consumer="influx", dataset="market_data")["pending"] > 0


@pytest.mark.django_db(transaction=True)
def test_it_backs_up_in_a_real_worker_retrying_while_influxdb_answers_503(influxd, settings):
    database = f"tsm_test_{uuid.uuid4().hex[:10]}"
    settings.TSM_INFLUX_URL, settings.TSM_INFLUX_DB = influxd.url, database  # for backup_status() here
    proxy = DyingProxy(influxd.url, overloaded=True)
    queue = private_queue()
    worker = start_worker(worker_env(TSM_INFLUX_URL=proxy.url, TSM_INFLUX_DB=database), queue)
    try:
        load_history()
        influx_backup.apply_async(queue=queue)
        wait_for(
            lambda: InfluxBackupState.objects.filter(last_error__contains="503").exists(), what="the 503 to be recorded"
        )
        assert changes_lag(consumer="influx", dataset="market_data")["pending"] > 0
        proxy.overloaded = False  # the retry (after a few seconds of backoff) gets through
        wait_for(lambda: influx.backup_status()["pending_changes"] == 0, timeout=90, what="the retried backup")
    finally:
        stop_worker(worker)
        proxy.close()
    try:
        assert influxd.count(db=database) == 76
        status = influx.backup_status()
        assert status["last_error"] == "" and status["last_success_at"] is not None
    finally:
        influxd.drop_database(database)


# --- off ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_does_nothing_and_says_so_when_influxdb_is_not_configured(settings):
    settings.TSM_INFLUX_URL = ""
    load_history()
    pending = changes_lag(consumer="influx", dataset="market_data")

    assert influx_backup.apply().get() == {
        "enabled": False,
        "changes": 0,
        "points": 0,
        "posts": 0,
        "failed": 0,
        "retried": 0,
        "resolved": 0,
    }
    assert changes_lag(consumer="influx", dataset="market_data") == pending
    status = influx.backup_status()
    assert (status["enabled"], status["why_off"], status["mode"]) == (False, "TSM_INFLUX_URL is not set", "off")
    assert influx.backup_status_text(status) == "InfluxDB backup is off (TSM_INFLUX_URL is not set)."


@pytest.mark.django_db
def test_it_is_off_when_the_mode_is_off_even_with_a_url(backup):
    backup.TSM_INFLUX_BACKUP = "off"
    load_history()
    assert influx.influx_backup_run().enabled is False
    assert influx.backup_status()["why_off"] == "TSM_INFLUX_BACKUP=off"


@pytest.mark.django_db
def test_it_shows_the_backup_status_in_the_admin(admin_client, settings):
    settings.TSM_INFLUX_URL = ""
    page = admin_client.get("/admin/ingestion/influxbackupstate/")
    assert page.status_code == 200
    assert "InfluxDB backup is off (TSM_INFLUX_URL is not set)." in page.content.decode()
    index = admin_client.get("/admin/")
    assert "InfluxDB backup (off)" in index.content.decode()


@pytest.mark.django_db
def test_it_shows_the_last_error_in_the_admin(admin_client, backup):
    InfluxBackupState.objects.create(
        dataset="market_data", last_error="InfluxDB /write answered 400: boom", last_error_at=T0
    )
    page = admin_client.get("/admin/ingestion/influxbackupstate/").content.decode()
    assert "InfluxDB backup (subminute)" in page and "InfluxDB /write answered 400: boom" in page


# --- the command --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_restores_through_the_command(backup, capsys):
    load_history()
    influx.influx_backup_run()
    before = versions()
    wipe_market_data()

    call_command(
        "restore_from_influx",
        "market_data",
        "--start",
        "2024-03-01T00:00:00Z",
        "--end",
        "2024-03-02T00:00:00+00:00",
        "--format",
        "json",
    )

    assert '"inserted": 60' in capsys.readouterr().out
    assert versions() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args, message",
    [
        (["news_events", "--start", "2024-03-01T00:00:00Z", "--end", "2024-03-02T00:00:00Z"], "DATASET 'news_events'"),
        (
            ["market_data", "--start", "yesterday", "--end", "2024-03-02T00:00:00Z"],
            "--start='yesterday' is not an ISO 8601",
        ),
        (
            ["market_data", "--start", "2024-03-01T00:00:00Z", "--end", "2024-03-02T00:00:00"],
            "--end='2024-03-02T00:00:00' has no UTC offset",
        ),
        (
            ["market_data", "--start", "2024-03-02T00:00:00Z", "--end", "2024-03-01T00:00:00Z"],
            "--end='2024-03-01T00:00:00Z' must be after --start",
        ),
        (["market_data", "--end", "2024-03-01T00:00:00Z"], "the following arguments are required: --start"),
    ],
)
def test_it_refuses_bad_arguments_naming_the_parameter(backup, args, message):
    loads = Load.objects.count()
    with pytest.raises(CommandError) as caught:
        call_command("restore_from_influx", *args)
    assert message in str(caught.value)
    assert Load.objects.count() == loads and versions() == []


@pytest.mark.django_db
def test_it_refuses_to_restore_when_influxdb_is_not_configured(settings):
    settings.TSM_INFLUX_URL = ""
    with pytest.raises(CommandError, match="TSM_INFLUX_URL"):
        call_command(
            "restore_from_influx", "market_data", "--start", "2024-03-01T00:00:00Z", "--end", "2024-03-02T00:00:00Z"
        )


@pytest.mark.django_db
def test_it_says_when_the_backup_database_does_not_exist(backup):
    with pytest.raises(CommandError, match="does not exist: nothing was backed up"):
        call_command(
            "restore_from_influx", "market_data", "--start", "2024-03-01T00:00:00Z", "--end", "2024-03-02T00:00:00Z"
        )


def test_it_keeps_credentials_in_the_url_out_of_what_it_shows(settings):
    settings.TSM_INFLUX_URL, settings.TSM_INFLUX_USER, settings.TSM_INFLUX_PASSWORD = (
        "http://bk:s%40cret@127.0.0.1:8086",
        "",
        "",
    )
    config = influx.influx_config()
    assert (config.url, config.user, config.password) == ("http://127.0.0.1:8086", "bk", "s@cret")
