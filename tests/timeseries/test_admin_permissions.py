"""Django model permissions on every admin view, download, report and action (issue #14 item 4).

Three staff users: one without permissions, one with only view permissions, one with change
permissions. Each custom URL (progress, rejected.csv, quality report, storage report), each change
page and each action is tried by each of them.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from ingestion import uploads
from ingestion.loader import ingest_table
from ingestion.models import Load, RejectedRow, Upload
from tests.helpers import T0, bar
from timeseries import quality
from timeseries.models import ApiToken, MarketData, QualityFlag
from timeseries.tokens import token_create

pytestmark = pytest.mark.django_db

VIEW = [
    "ingestion.view_upload",
    "ingestion.view_rejectedrow",
    "ingestion.view_load",
    "ingestion.view_influxbackupstate",
    "timeseries.view_marketdata",
    "timeseries.view_newsevent",
    "timeseries.view_qualityflag",
    "timeseries.view_qualityaudit",
    "timeseries.view_apitoken",
]
CHANGE = [p.replace(".view_", ".change_") for p in VIEW] + ["ingestion.add_upload"]


def staff(client, name: str, perms: list[str]):
    user = User.objects.create_user(name, password="pw-for-tests", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    client.force_login(user)
    return client


@pytest.fixture
def nobody(client):
    return staff(client, "nobody", [])


@pytest.fixture
def viewer(client):
    return staff(client, "viewer", VIEW)


@pytest.fixture
def changer(client):
    return staff(client, "changer", CHANGE)


@pytest.fixture
def upload(tmp_path, settings):
    """A finished upload with one quarantined row (skip mode)."""
    settings.MEDIA_ROOT = tmp_path / "media"
    rows = [bar("AAPL", 0), bar("AAPL", 1, high="1"), bar("AAPL", 2)]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    made = Upload.objects.create(
        dataset="market_data", on_error="skip", file=SimpleUploadedFile("bars.csv", text.getvalue().encode())
    )
    done = uploads.upload_process(upload_id=made.pk)
    assert (done.status, done.rejected) == ("done", 1)
    return done


@pytest.fixture
def flagged():
    """Six equal AAPL bars: the stale check flags (proposes, does not apply) the last ones."""
    ingest_table(dataset="market_data", data=[bar("AAPL", m, close="10") for m in range(6)])
    quality.quality_checks_range(dataset="market_data", symbols=["AAPL"], start=T0, end=T0 + timedelta(hours=1))
    flag = QualityFlag.objects.filter(proposed_score__isnull=False).order_by("time").first()
    assert flag is not None and not flag.applied
    return flag


def action(client, url: str, name: str, ids: list[int], **extra):
    return client.post(url, {"action": name, "index": "0", "_selected_action": [str(i) for i in ids], **extra})


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


# --- uploads ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("who", "status"), [("nobody", 403), ("viewer", 200), ("changer", 200)])
def test_the_upload_list_page_and_progress_need_the_view_permission(request, upload, who, status):
    client = request.getfixturevalue(who)
    assert client.get(reverse("admin:ingestion_upload_changelist")).status_code == status
    page = client.get(reverse("admin:ingestion_upload_change", args=[upload.pk]))
    assert page.status_code == status
    progress = client.get(reverse("admin:ingestion_upload_progress", args=[upload.pk]))
    assert progress.status_code == status
    if status == 200:
        assert progress.json()["status"] == "done"
        body = page.content.decode()
        assert 'name="_save"' not in body and 'name="_continue"' not in body  # read-only: no Save buttons


def test_a_missing_upload_answers_403_not_404_without_the_permission(nobody):
    assert nobody.get(reverse("admin:ingestion_upload_progress", args=[999999])).status_code == 403
    assert nobody.get(reverse("admin:ingestion_upload_rejected_csv", args=[999999])).status_code == 403


@pytest.mark.parametrize("who", ["nobody", "viewer", "changer"])
def test_nobody_can_post_an_upload_page_or_write_an_admin_log_entry(request, upload, who):
    client = request.getfixturevalue(who)
    response = client.post(
        reverse("admin:ingestion_upload_change", args=[upload.pk]), {"dataset": "news_events", "_save": "Save"}
    )
    assert response.status_code == 403
    assert LogEntry.objects.count() == 0
    assert Upload.objects.get(pk=upload.pk).dataset == "market_data"


def test_uploading_needs_the_add_permission(upload):
    assert staff(Client(), "viewer", VIEW).get(reverse("admin:ingestion_upload_add")).status_code == 403
    assert staff(Client(), "changer", CHANGE).get(reverse("admin:ingestion_upload_add")).status_code == 200


@pytest.mark.parametrize(
    ("perms", "status"),
    [
        ([], 403),
        (["ingestion.view_upload"], 403),  # the upload but not the quarantined rows
        (["ingestion.view_rejectedrow"], 403),  # the rows but not the upload
        (["ingestion.view_upload", "ingestion.view_rejectedrow"], 200),
        (["ingestion.change_upload", "ingestion.change_rejectedrow"], 200),
    ],
)
def test_the_quarantine_download_needs_view_on_the_upload_and_the_rejected_rows(client, upload, perms, status):
    staff(client, "someone", perms)
    response = client.get(reverse("admin:ingestion_upload_rejected_csv", args=[upload.pk]))
    assert response.status_code == status
    if status == 200:
        assert b"high is below low" in response.content
    if "ingestion.view_upload" in perms:
        page = client.get(reverse("admin:ingestion_upload_change", args=[upload.pk])).content.decode()
        assert ("download CSV" in page) == (status == 200)
        assert ("needs the permission ingestion.view_rejectedrow" in page) == (status != 200)


@pytest.mark.parametrize(("who", "status"), [("nobody", 403), ("viewer", 200), ("changer", 200)])
def test_the_rejected_rows_list_and_its_download_action_need_view(request, upload, who, status):
    client = request.getfixturevalue(who)
    url = reverse("admin:ingestion_rejectedrow_changelist")
    assert client.get(url).status_code == status
    ids = list(RejectedRow.objects.values_list("id", flat=True))
    response = action(client, url, "download_csv", ids)
    assert response.status_code == status
    if status == 200:
        assert response["Content-Type"].startswith("text/csv") and b"high is below low" in response.content


@pytest.mark.parametrize("who", ["viewer", "changer"])
def test_quarantined_rows_and_loads_are_read_only_for_everyone(request, upload, who):
    client = request.getfixturevalue(who)
    row = RejectedRow.objects.first()
    load = Load.objects.get(pk=upload.load_id)
    for url in (
        reverse("admin:ingestion_rejectedrow_change", args=[row.pk]),
        reverse("admin:ingestion_load_change", args=[load.pk]),
    ):
        page = client.get(url)
        assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
        assert client.post(url, {"reason": "edited"}).status_code == 403
    assert RejectedRow.objects.get(pk=row.pk).reason == row.reason
    assert client.get(reverse("admin:ingestion_load_add")).status_code == 403


@pytest.mark.parametrize(("who", "status"), [("nobody", 403), ("viewer", 200)])
def test_the_influx_backup_page_needs_view(request, who, status):
    client = request.getfixturevalue(who)
    response = client.get(reverse("admin:ingestion_influxbackupstate_changelist"))
    assert response.status_code == status
    if status == 403:  # and no status message waits for the next page
        assert not [m for m in messages_of(client.get(reverse("admin:index"))) if "InfluxDB" in m]


# --- datasets and curation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status", "may_curate"), [("nobody", 403, False), ("viewer", 200, False), ("changer", 200, True)]
)
def test_curation_actions_and_inline_edits_need_change(request, who, status, may_curate):
    ingest_table(dataset="market_data", data=[bar("AAPL", m) for m in range(3)])
    client = request.getfixturevalue(who)
    url = reverse("admin:timeseries_marketdata_changelist")
    listing = client.get(url)
    assert listing.status_code == status
    if status == 200:
        form = listing.context["action_form"]
        names = [name for name, _ in form.fields["action"].choices if name] if form else []
        assert ("mark_suspect" in names) == may_curate and ("run_quality_checks" in names) == may_curate
        assert ('name="form-0-quality_score"' in listing.content.decode()) == may_curate  # inline edit box
    row = MarketData.objects.order_by("time").first()
    for name in ("mark_suspect", "set_score"):
        action(client, url, name, [row.pk], score="0.2", reason="test")
    expected = 0.2 if may_curate else 1.0
    assert MarketData.objects.get(pk=row.pk).quality_score == expected
    page = client.get(reverse("admin:timeseries_marketdata_change", args=[row.pk]))
    assert page.status_code == status
    edit = client.post(
        reverse("admin:timeseries_marketdata_change", args=[row.pk]), {"quality_score": "0.7", "reason": "r"}
    )
    assert edit.status_code == (302 if may_curate else 403)


@pytest.mark.parametrize(
    ("who", "status", "may_accept"), [("nobody", 403, False), ("viewer", 200, False), ("changer", 200, True)]
)
def test_accepting_proposed_scores_needs_change_on_the_dataset(request, flagged, who, status, may_accept):
    client = request.getfixturevalue(who)
    url = reverse("admin:timeseries_qualityflag_changelist")
    assert client.get(url).status_code == status
    before = MarketData.objects.get(pk=flagged.row_id).quality_score
    response = action(client, url, "accept_proposals", [flagged.pk])
    assert response.status_code in ((200, 302) if status == 200 else (403,))  # 200: "no action selected"
    after = MarketData.objects.get(pk=flagged.row_id).quality_score
    assert (after == flagged.proposed_score != before) == may_accept
    page = client.get(reverse("admin:timeseries_qualityflag_change", args=[flagged.pk]))
    assert page.status_code == status
    if status == 200:
        assert 'name="_save"' not in page.content.decode()


def test_accepting_flags_of_a_dataset_one_may_not_change_changes_nothing(client, flagged):
    staff(client, "marketonly", ["timeseries.view_qualityflag", "timeseries.change_newsevent"])
    response = client.post(
        reverse("admin:timeseries_qualityflag_changelist"),
        {"action": "accept_proposals", "index": "0", "_selected_action": [str(flagged.pk)]},
        follow=True,
    )
    assert any("timeseries.change_marketdata" in m for m in messages_of(response))
    assert MarketData.objects.get(pk=flagged.row_id).quality_score == 1.0


@pytest.mark.parametrize(
    ("perms", "status"),
    [
        ([], 403),
        (["timeseries.view_qualityflag"], 403),
        (["timeseries.view_qualityaudit"], 403),
        (["timeseries.view_qualityflag", "timeseries.view_qualityaudit"], 200),
        (["timeseries.change_qualityflag", "timeseries.change_qualityaudit"], 200),
    ],
)
def test_the_quality_report_needs_view_on_flags_and_audit(client, flagged, perms, status):
    staff(client, "someone", perms)
    response = client.get(
        reverse("admin:timeseries_qualityflag_report"),
        {"dataset": "market_data", "symbol": "AAPL", "day": "2024-03-01"},
    )
    assert response.status_code == status
    if status == 200:
        assert "stale" in response.content.decode()


@pytest.mark.parametrize(
    ("perms", "status", "datasets"),
    [
        ([], 403, set()),
        (["timeseries.view_qualityflag"], 403, set()),
        (["timeseries.view_marketdata"], 200, {"market_data"}),
        (["timeseries.view_marketdata", "timeseries.change_newsevent"], 200, {"market_data", "news_events"}),
    ],
)
def test_the_storage_report_shows_the_datasets_one_may_view(client, perms, status, datasets):
    staff(client, "someone", perms)
    response = client.get(reverse("admin:timeseries_storage"))
    assert response.status_code == status
    index = client.get(reverse("admin:index")).content.decode()
    assert ("Storage report" in index) == bool(datasets)
    if status == 200:
        assert {line["dataset"] for line in response.context["lines"]} == datasets


# --- API tokens -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status", "may_revoke"), [("nobody", 403, False), ("viewer", 200, False), ("changer", 200, True)]
)
def test_listing_and_revoking_tokens_need_view_and_change(request, who, status, may_revoke):
    owner = User.objects.create_user("owner")
    token, _ = token_create(user=owner, scope="write", name="ci")
    client = request.getfixturevalue(who)
    url = reverse("admin:timeseries_apitoken_changelist")
    listing = client.get(url)
    assert listing.status_code == status
    if status == 200:
        assert token.prefix in listing.content.decode() and "ci" in listing.content.decode()
    action(client, url, "revoke_tokens", [token.pk])
    assert ApiToken.objects.get(pk=token.pk).revoked == may_revoke
    assert client.get(reverse("admin:timeseries_apitoken_add")).status_code == 403  # nobody here has add_apitoken


@pytest.mark.parametrize(
    ("perms", "linked"),
    [
        (["timeseries.view_marketdata"], False),
        (["timeseries.view_marketdata", "timeseries.view_qualityflag", "timeseries.view_qualityaudit"], True),
    ],
)
def test_the_market_data_list_links_the_quality_report_only_for_those_who_may_open_it(client, perms, linked):
    ingest_table(dataset="market_data", data=[bar("AAPL", 0)])
    staff(client, "someone", perms)
    listing = client.get(reverse("admin:timeseries_marketdata_changelist"))
    assert listing.status_code == 200
    assert (reverse("admin:timeseries_qualityflag_report") in listing.content.decode()) == linked


def test_a_revocation_from_the_admin_is_in_the_tokens_history(admin_client):
    owner = User.objects.create_user("owner")
    token, _ = token_create(user=owner)
    action(admin_client, reverse("admin:timeseries_apitoken_changelist"), "revoke_tokens", [token.pk])
    entry = LogEntry.objects.get(object_id=str(token.pk))
    assert entry.get_change_message() == "Revoked." and entry.user.is_superuser


def test_the_admin_passes_django_system_checks():
    from django.core.management import call_command

    call_command("check", "--fail-level", "WARNING", stdout=io.StringIO())
