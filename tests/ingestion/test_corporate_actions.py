"""Corporate actions (dataset ``corporate_actions``): loading by ``ex_date``, the row checks per
action_type, the resolution of ``symbol`` (the ticker just before ex_date) to ``security_id`` and
back against the security master, unresolvable rows rejected or quarantined, versions, the
selector ``pit.corporate_actions``, the ``ingest`` command's JSON and the admin (upload, browse,
version history). Runs on both lanes (DATABASE_URL pointing at the TimescaleDB cluster for the other)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from ingestion import buffer, uploads
from ingestion.checks import InputError
from ingestion.loader import LoadRejected, ingest_table
from ingestion.models import Upload
from tests.helpers import csv_bytes, last_json, manage, post_upload, write_csv
from tests.helpers import write_api_post as post
from timeseries import pit
from timeseries.models import CorporateAction, Security

pytestmark = pytest.mark.django_db

LISTED = datetime(2012, 5, 18, 13, 30, tzinfo=UTC)
RENAMED = datetime(2022, 6, 9, 13, 30, tzinfo=UTC)  # FB -> META: the first session as META
SPLIT = datetime(2022, 7, 18, 13, 30, tzinfo=UTC)


def iso(d: datetime) -> str:
    return d.isoformat()


def action(action_type: str, ex_date: datetime, **more) -> dict:
    row = {"action_type": action_type, "ex_date": iso(ex_date)}
    return {**row, **{k: iso(v) if isinstance(v, datetime) else v for k, v in more.items()}}


@pytest.fixture
def master():
    """S1 listed as FB, renamed META at RENAMED (a stored symbol_change); S2 listed as XYZ, delisted
    in 2015; S3 listed as XYZ later (a reused ticker)."""
    ingest_table(
        dataset="securities",
        data=[
            {"security_id": "S1", "symbol": "FB", "exchange": "XNAS", "listed_at": iso(LISTED)},
            {
                "security_id": "S2",
                "symbol": "XYZ",
                "exchange": "XNYS",
                "listed_at": "2001-01-02T14:30:00Z",
                "delisted_at": "2015-01-02T14:30:00Z",
            },
            {"security_id": "S3", "symbol": "XYZ", "exchange": "XNYS", "listed_at": "2018-03-01T14:30:00Z"},
        ],
    )
    ingest_table(
        dataset="corporate_actions",
        data=[
            action("symbol_change", RENAMED, security_id="S1", new_symbol="META", known_at=RENAMED - timedelta(days=60))
        ],
    )


def rejected(rows, **kwargs) -> list[str]:
    before = CorporateAction.objects.count()
    with pytest.raises(LoadRejected) as info:
        ingest_table(dataset="corporate_actions", data=rows, **kwargs)
    assert CorporateAction.objects.count() == before
    return [str(e) for e in info.value.result.errors]


# --- loading and resolution ----------------------------------------------------------------------


def test_the_symbol_change_is_stored_with_the_ticker_before_it(master):
    change = CorporateAction.objects.get()
    assert (change.security_id, change.symbol, change.new_symbol, change.time) == ("S1", "FB", "META", RENAMED)
    assert change.currency == "USD" and change.ratio is None


def test_an_action_given_by_the_new_ticker_resolves_to_the_same_security(master):
    result = ingest_table(dataset="corporate_actions", data=[action("split", SPLIT, symbol="META", ratio="4")])
    assert result.inserted == 1
    split = CorporateAction.objects.get(action_type="split")
    assert (split.security_id, split.symbol, split.ratio) == ("S1", "META", Decimal("4"))
    # by the old ticker before the change: the same security
    ingest_table(
        dataset="corporate_actions",
        data=[action("cash_dividend", RENAMED - timedelta(days=7), symbol="FB", amount="0.5")],
    )
    assert CorporateAction.objects.get(action_type="cash_dividend").security_id == "S1"


def test_the_ticker_is_the_one_just_before_ex_date(master):
    # on the ex_date of the change itself, the ticker before it is still FB
    errors = rejected([action("cash_dividend", RENAMED, symbol="META", amount="0.1")])
    assert errors == [
        f"row 1, column 'symbol': symbol 'META' names no security trading just before ex_date {RENAMED.isoformat()}"
        " (as the security master is known now); load it in securities first"
    ]
    assert ingest_table(dataset="corporate_actions", data=[action("cash_dividend", RENAMED, symbol="FB", amount="0.1")])


def test_a_reused_ticker_resolves_by_date_to_the_right_security(master):
    ingest_table(
        dataset="corporate_actions",
        data=[
            action("cash_dividend", datetime(2010, 3, 1, 14, 30, tzinfo=UTC), symbol="XYZ", amount="0.2"),
            action("cash_dividend", datetime(2020, 3, 2, 14, 30, tzinfo=UTC), symbol="XYZ", amount="0.3"),
        ],
    )
    got = {a.amount: a.security_id for a in CorporateAction.objects.filter(action_type="cash_dividend")}
    assert got == {Decimal("0.2"): "S2", Decimal("0.3"): "S3"}


def test_only_security_id_fills_the_ticker_and_a_disagreeing_pair_is_refused(master):
    ingest_table(dataset="corporate_actions", data=[action("split", SPLIT, security_id="S1", ratio="4")])
    assert CorporateAction.objects.get(action_type="split").symbol == "META"
    errors = rejected([action("split", SPLIT + timedelta(days=1), security_id="S1", symbol="FB", ratio="2")])
    assert errors == [
        f"row 1, column 'symbol': symbol 'FB' and security_id 'S1' disagree: S1 traded as 'META'"
        f" just before ex_date {(SPLIT + timedelta(days=1)).isoformat()}"
    ]


def test_an_unknown_or_unlisted_security_is_a_bad_row(master):
    errors = rejected(
        [action("split", SPLIT, symbol="NOPE", ratio="2"), action("split", SPLIT, security_id="S9", ratio="2")]
    )
    assert errors[0].startswith("row 1, column 'symbol': symbol 'NOPE' names no security trading just before ex_date")
    assert errors[1].startswith("row 2, column 'security_id': security_id 'S9' names no security trading")
    # S2 was delisted in 2015: no action of it after that
    late = rejected([action("cash_dividend", datetime(2016, 1, 4, tzinfo=UTC), security_id="S2", amount="1")])
    assert late[0].startswith("row 1, column 'security_id': security_id 'S2' names no security")


def test_unresolvable_rows_are_quarantined_with_on_error_skip(master):
    result = ingest_table(
        dataset="corporate_actions",
        data=[action("split", SPLIT, symbol="META", ratio="4"), action("split", SPLIT, symbol="NOPE", ratio="2")],
        on_error="skip",
    )
    assert (result.inserted, result.rejected) == (1, 1)
    assert [(e.row, e.column) for e in result.errors] == [(2, "symbol")]
    assert "load it in securities first" in result.errors[0].message


def test_a_file_naming_neither_security_id_nor_symbol_is_refused(master):
    with pytest.raises(InputError, match="missing column 'security_id' or 'symbol'"):
        ingest_table(dataset="corporate_actions", data=[action("split", SPLIT, ratio="2")])
    errors = rejected([action("split", SPLIT, symbol="", security_id="", ratio="2")])
    assert errors == ["row 1, column 'security_id': security_id or symbol is required (the ticker just before ex_date)"]


# --- row checks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"action_type": "merger"},
            "column 'action_type': action_type must be one of split, cash_dividend, symbol_change, delisting",
        ),
        ({"action_type": "split"}, "column 'ratio': ratio is required for a split and must be above 0"),
        ({"action_type": "split", "ratio": "0"}, "column 'ratio': ratio is required for a split and must be above 0"),
        ({"action_type": "split", "ratio": "-2"}, "column 'ratio': ratio is required for a split and must be above 0"),
        ({"action_type": "delisting", "ratio": "2"}, "column 'ratio': ratio must be empty unless action_type is split"),
        (
            {"action_type": "cash_dividend"},
            "column 'amount': amount is required for a cash_dividend and must not be negative",
        ),
        (
            {"action_type": "cash_dividend", "amount": "-0.1"},
            "column 'amount': amount is required for a cash_dividend and must not be negative",
        ),
        (
            {"action_type": "split", "ratio": "2", "amount": "1"},
            "column 'amount': amount must be empty unless action_type is cash_dividend",
        ),
        ({"action_type": "symbol_change"}, "column 'new_symbol': new_symbol is required for a symbol_change"),
        (
            {"action_type": "split", "ratio": "2", "new_symbol": "META"},
            "column 'new_symbol': new_symbol must be empty unless action_type is symbol_change",
        ),
        ({"action_type": "symbol_change", "new_symbol": "A B"}, "column 'new_symbol': 'A B'"),
        (
            {"action_type": "cash_dividend", "amount": "1", "currency": "usd"},
            "column 'currency': currency must be an ISO 4217 code: 3 letters A-Z",
        ),
        (
            {"action_type": "cash_dividend", "amount": "1", "currency": ""},
            "column 'currency': currency must be an ISO 4217 code: 3 letters A-Z (e.g. USD); empty only unless",
        ),
        (
            {"action_type": "split", "ratio": "2", "currency": "EURO"},
            "column 'currency': currency is longer than 3 characters (4)",
        ),
        (
            {"action_type": "split", "ratio": "2", "ex_date": "tomorrow"},
            "column 'ex_date': 'tomorrow' is not an ISO 8601",
        ),
        ({"action_type": "split", "ratio": "2", "ex_date": ""}, "column 'ex_date': ex_date is required"),
        ({"action_type": "split", "ratio": "2", "source": "x" * 65}, "column 'source': source is longer than 64"),
    ],
)
def test_every_row_check_names_its_column_and_stores_nothing(master, row, message):
    errors = rejected([{"ex_date": iso(SPLIT), "symbol": "META", **row}])
    assert any(e.startswith("row 1, " + message) for e in errors), errors


def test_a_reverse_split_and_a_zero_dividend_and_a_delisting_are_valid(master):
    result = ingest_table(
        dataset="corporate_actions",
        data=[
            action("split", SPLIT, symbol="META", ratio="0.1"),
            action("cash_dividend", SPLIT, symbol="META", amount="0", currency="EUR", source="vendor"),
            action("delisting", SPLIT + timedelta(days=30), symbol="META", known_at=SPLIT),
        ],
    )
    assert result.inserted == 3


# --- versions and the selector ----------------------------------------------------------------------


def test_a_split_announced_before_ex_date_is_known_from_its_announcement_and_corrections_are_versions(master):
    announced = SPLIT - timedelta(days=30)
    ingest_table(
        dataset="corporate_actions", data=[action("split", SPLIT, symbol="META", ratio="4", known_at=announced)]
    )
    fixed = ingest_table(
        dataset="corporate_actions",
        data=[action("split", SPLIT, symbol="META", ratio="5", known_at=announced + timedelta(days=1))],
    )
    assert fixed.revised == 1
    assert [a["action_type"] for a in pit.corporate_actions(at=announced - timedelta(seconds=1))] == ["symbol_change"]
    at_announcement = pit.corporate_actions(at=announced, symbols=["S1"])
    assert [(a["action_type"], a["ratio"]) for a in at_announcement][0] == ("split", Decimal("4"))
    later = pit.state_as_of(dataset="corporate_actions", at=SPLIT, symbols=["META"])  # the registry's selector
    assert [(a["action_type"], a["ratio"]) for a in later] == [("split", Decimal("5"))]  # by the ticker then
    assert [a["action_type"] for a in pit.corporate_actions(at=SPLIT, limit=1)] == ["split"]  # newest ex_date first


# --- the command, the admin ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_ingest_command_loads_both_datasets_and_prints_json(tmp_path):
    securities_csv = write_csv(
        tmp_path / "securities.csv",
        [
            {
                "security_id": "S1",
                "symbol": "FB",
                "name": "Meta",
                "exchange": "XNAS",
                "listed_at": iso(LISTED),
                "delisted_at": "",
                "known_at": "",
            }
        ],
    )
    run = manage("ingest", "securities", str(securities_csv), "--format", "json")
    assert run.returncode == 0, run.stderr
    assert last_json(run.stdout)["inserted"] == 1
    actions_csv = write_csv(
        tmp_path / "actions.csv",
        [
            {
                "symbol": "FB",
                "security_id": "",
                "action_type": "symbol_change",
                "ex_date": iso(RENAMED),
                "ratio": "",
                "amount": "",
                "currency": "",
                "new_symbol": "META",
                "known_at": "",
                "source": "x",
            },
            {
                "symbol": "ZZZ",
                "security_id": "",
                "action_type": "split",
                "ex_date": iso(SPLIT),
                "ratio": "2",
                "amount": "",
                "currency": "",
                "new_symbol": "",
                "known_at": "",
                "source": "x",
            },
        ],
    )
    refused = manage("ingest", "corporate_actions", str(actions_csv), "--format", "json")
    assert refused.returncode != 0
    out = last_json(refused.stdout)
    assert out["inserted"] == 0 and out["rejected"] == 1
    assert "row 2, column 'symbol': symbol 'ZZZ' names no security" in out["errors"][0]
    skipped = manage("ingest", "corporate_actions", str(actions_csv), "--on-error", "skip", "--format", "json")
    assert skipped.returncode == 0, skipped.stderr
    counts = last_json(skipped.stdout)
    assert (counts["inserted"], counts["rejected"]) == (1, 1)
    assert CorporateAction.objects.get().security_id == "S1"
    asof = manage("asof", "corporate_actions", "--at", iso(RENAMED), "--format", "json")
    assert asof.returncode == 0, asof.stderr
    assert [r["new_symbol"] for r in json.loads(asof.stdout)] == ["META"]


def viewer(client, name: str, *models: str):
    user = User.objects.create_user(name, password="pw-for-tests", is_staff=True)
    for model in models:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="timeseries", codename=f"view_{model}")
        )
    client.force_login(user)
    return client


def test_staff_with_view_permission_browse_search_and_filter_both_tables(client, master):
    ingest_table(dataset="corporate_actions", data=[action("split", SPLIT, symbol="META", ratio="4")])
    staff = viewer(client, "viewer", "security", "corporateaction")
    securities_url = reverse("admin:timeseries_security_changelist")
    page = staff.get(securities_url)
    assert page.status_code == 200 and "listed_at" in page.content.decode().lower()
    assert staff.get(securities_url, {"q": "FB"}).context["cl"].result_count == 1  # by ticker
    assert staff.get(securities_url, {"q": "S2,S3"}).context["cl"].result_count == 2  # by security_id
    assert staff.get(securities_url, {"exchange__exact": "XNYS"}).context["cl"].result_count == 2
    actions_url = reverse("admin:timeseries_corporateaction_changelist")
    page = staff.get(actions_url)
    assert page.status_code == 200 and "ex_date" in page.content.decode().lower()
    assert staff.get(actions_url, {"action_type__exact": "split"}).context["cl"].result_count == 1
    assert staff.get(actions_url, {"q": "META"}).context["cl"].result_count == 2  # ticker or new ticker
    split = CorporateAction.objects.get(action_type="split")
    change = staff.get(reverse("admin:timeseries_corporateaction_change", args=[split.pk]))
    assert change.status_code == 200
    # no view permission on the other table: no page
    assert viewer(client.__class__(), "other", "security").get(actions_url).status_code == 403


def test_the_version_history_page_shows_the_versions_of_a_security(client, master):
    ingest_table(
        dataset="securities",
        data=[
            {
                "security_id": "S1",
                "symbol": "FB",
                "exchange": "XNAS",
                "listed_at": iso(LISTED + timedelta(hours=1)),
                "known_at": iso(LISTED),
            }
        ],
    )
    user = User.objects.create_superuser("root", password="pw-root-1")
    client.force_login(user)
    page = client.get(reverse("admin:ingestion_load_versions", args=["securities"]), {"security_id": "S1"})
    assert page.status_code == 200
    assert page.content.decode().count("XNAS") >= 2  # both versions listed


def test_an_admin_upload_loads_corporate_actions(
    client, master, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = tmp_path / "media"
    user = User.objects.create_superuser("root", password="pw-root-1")
    client.force_login(user)
    content = csv_bytes(
        [action("split", SPLIT, symbol="META", ratio="4"), action("split", SPLIT, symbol="NOPE", ratio="4")]
    )
    with django_capture_on_commit_callbacks(execute=False):
        response = post_upload(client, content, name="actions.csv", dataset="corporate_actions", on_error="skip")
    assert response.status_code == 302
    upload = Upload.objects.get()
    processed = uploads.upload_process(upload_id=upload.pk)
    assert (processed.status, processed.inserted, processed.rejected) == ("done", 1, 1)
    assert CorporateAction.objects.filter(action_type="split").get().security_id == "S1"
    assert Security.objects.count() == 3


@pytest.mark.parametrize("fmt", ["json", "ndjson", "csv"])
def test_the_write_api_takes_both_datasets_by_their_input_names(
    writer, master, fmt, django_capture_on_commit_callbacks
):
    listing = {"security_id": "S4", "symbol": "NEWCO", "exchange": "XNYS", "listed_at": "2023-01-03T14:30:00Z"}
    with django_capture_on_commit_callbacks(execute=False):
        accepted = post(writer, [listing], dataset="securities", fmt=fmt)
    assert accepted.status_code == 202, accepted.content
    assert buffer.buffer_flush(dataset="securities").rows == 1
    rows = [
        action("split", SPLIT, symbol="META", ratio="4"),
        action("split", SPLIT, symbol="NOPE", ratio="4"),  # no such security: refused at the door
    ]
    with django_capture_on_commit_callbacks(execute=False):
        response = post(writer, rows, dataset="corporate_actions", fmt=fmt, on_error="skip")
    assert response.status_code == 202, response.content
    assert (response.json()["accepted"], response.json()["rejected"]) == (1, 1)
    assert buffer.buffer_flush(dataset="corporate_actions").rows == 1
    assert CorporateAction.objects.get(action_type="split").security_id == "S1"
    assert Security.objects.get(security_id="S4").symbol == "NEWCO"
