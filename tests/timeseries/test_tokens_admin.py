"""API tokens: the admin page (list, create with the key shown once, revoke) and list_tokens / revoke_token."""

from __future__ import annotations

import io

import pytest
from django.contrib.admin.models import LogEntry
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from timeseries import tokens
from timeseries.models import ApiToken

pytestmark = pytest.mark.django_db
API = "/api/v1/state/?at=2024-03-01T15:30:00Z"


def bearer(key: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def test_the_admin_creates_a_token_and_shows_its_key_once(admin_client, django_user_model):
    alice = django_user_model.objects.create_user("alice")
    response = admin_client.post(
        reverse("admin:timeseries_apitoken_add"), {"user": alice.pk, "name": "ci job", "scope": "write"}
    )
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    key = response.context["key"]
    token = ApiToken.objects.get()
    assert (
        key.startswith("tsm_")
        and key in response.content.decode()
        and "shown only this once" in response.content.decode()
    )
    assert (token.user, token.name, token.scope, token.prefix) == (alice, "ci job", "write", key[:8])
    assert token.digest == tokens.token_digest(key) and key not in str(
        ApiToken.objects.values().get()
    )  # only the digest
    assert LogEntry.objects.filter(object_id=str(token.pk)).exists()
    page = admin_client.get(reverse("admin:timeseries_apitoken_change", args=[token.pk])).content.decode()
    listing = admin_client.get(reverse("admin:timeseries_apitoken_changelist")).content.decode()
    assert key not in page and key not in listing and f"{token.prefix}…" in listing and "ci job" in listing
    assert tokens.token_authenticate(key=key) == token


def test_the_admin_refuses_a_token_for_an_inactive_user(admin_client, django_user_model):
    gone = django_user_model.objects.create_user("gone", is_active=False)
    response = admin_client.post(
        reverse("admin:timeseries_apitoken_add"), {"user": gone.pk, "name": "", "scope": "read"}
    )
    assert response.status_code == 200 and "inactive" in response.content.decode()
    assert ApiToken.objects.count() == 0


def test_revoking_from_the_list_or_the_page_refuses_the_token(admin_client, django_user_model, client, settings):
    settings.TSM_API_ANONYMOUS_READ = False
    alice = django_user_model.objects.create_user("alice")
    first, first_key = tokens.token_create(user=alice, name="a")
    second, second_key = tokens.token_create(user=alice, name="b")
    assert client.get(API, **bearer(first_key)).status_code == 200  # and now cached in this process
    admin_client.post(
        reverse("admin:timeseries_apitoken_changelist"),
        {"action": "revoke_tokens", "index": "0", "_selected_action": [str(first.pk)]},
    )
    assert client.get(API, **bearer(first_key)).status_code == 401
    url = reverse("admin:timeseries_apitoken_change", args=[second.pk])
    assert admin_client.post(url, {"name": "b renamed", "revoked": "on"}).status_code == 302
    second.refresh_from_db()
    assert second.revoked and second.name == "b renamed"
    assert client.get(API, **bearer(second_key)).status_code == 401
    # a revoked token stays revoked; tokens are not deleted
    page = admin_client.get(url).content.decode()
    assert 'name="revoked"' not in page
    admin_client.post(url, {"name": "b", "revoked": ""})
    assert ApiToken.objects.get(pk=second.pk).revoked
    assert (
        admin_client.post(reverse("admin:timeseries_apitoken_delete", args=[second.pk]), {"post": "yes"}).status_code
        == 403
    )


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_list_tokens_and_revoke_token(django_user_model):
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    a, a_key = tokens.token_create(user=alice, scope="write", name="nightly")
    b, _ = tokens.token_create(user=bob, name="laptop")
    out, _ = run("list_tokens")
    lines = out.splitlines()
    assert lines[0].split() == ["id", "key", "user", "scope", "created", "last", "used", "state", "name"]
    assert any(
        f"{a.prefix}…" in line and "alice" in line and "write" in line and "nightly" in line and "never" in line
        for line in lines
    )
    assert a_key not in out
    assert "bob" not in run("list_tokens", "--user", "alice")[0]
    with pytest.raises(CommandError, match="no user 'carol'"):
        run("list_tokens", "--user", "carol")

    assert tokens.token_authenticate(key=a_key) == a
    out, _ = run("revoke_token", a.prefix)
    assert f"revoked write token {a.prefix}… (id {a.pk}) of 'alice'" in out
    assert tokens.token_authenticate(key=a_key) is None
    assert f"{a.prefix}…" not in run("list_tokens")[0]
    assert "revoked" in run("list_tokens", "--revoked")[0] and "laptop" in run("list_tokens", "--all")[0]
    assert "already revoked" in run("revoke_token", str(a.pk))[1]
    run("revoke_token", str(b.pk), "--user", "bob")
    assert ApiToken.objects.filter(revoked=False).count() == 0


def test_revoke_token_refuses_what_it_cannot_name_exactly(django_user_model):
    alice = django_user_model.objects.create_user("alice")
    one, one_key = tokens.token_create(user=alice)
    two, _ = tokens.token_create(user=alice)
    ApiToken.objects.filter(pk=two.pk).update(prefix=one.prefix)  # two tokens sharing a prefix (possible, if rare)
    with pytest.raises(CommandError, match="matches 2 active tokens"):
        run("revoke_token", one.prefix)
    with pytest.raises(CommandError, match="no token"):
        run("revoke_token", "tsm_zzzz")
    with pytest.raises(CommandError, match="at least 4 characters"):
        run("revoke_token", "ts")
    with pytest.raises(CommandError, match="no token"):
        run("revoke_token", str(one.pk), "--user", "bob")
    run("revoke_token", one_key)  # the whole key: found by its digest
    assert list(ApiToken.objects.filter(revoked=True)) == [one]


# --- a write token bound to a feed (issue #16) ------------------------------------------------------


def test_the_admin_binds_a_new_write_token_to_a_feed_fixed_from_then_on(admin_client, django_user_model):
    bot = django_user_model.objects.create_user("vendor-bot")
    form = admin_client.get(reverse("admin:timeseries_apitoken_add")).content.decode()
    assert 'name="feed"' in form and "write tokens only" in form
    response = admin_client.post(
        reverse("admin:timeseries_apitoken_add"),
        {"user": bot.pk, "name": "vendor", "scope": "write", "feed": "vendor_x"},
    )
    assert response.status_code == 200 and "bound to feed <strong>vendor_x</strong>" in response.content.decode()
    token = ApiToken.objects.get()
    assert token.feed == "vendor_x"
    assert tokens.token_authenticate(key=response.context["key"]).feed == "vendor_x"
    listing = admin_client.get(reverse("admin:timeseries_apitoken_changelist")).content.decode()
    assert "vendor_x" in listing
    url = reverse("admin:timeseries_apitoken_change", args=[token.pk])
    page = admin_client.get(url).content.decode()
    assert "vendor_x" in page and 'name="feed"' not in page  # read-only once created
    admin_client.post(url, {"name": "renamed", "feed": "curation"})
    token.refresh_from_db()
    assert (token.name, token.feed) == ("renamed", "vendor_x")


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"scope": "write", "feed": "vendor x"}, "&#x27;vendor x&#x27; is not a feed name"),
        ({"scope": "write", "feed": "<i>x</i>"}, "&#x27;&lt;i&gt;x&lt;/i&gt;&#x27; is not a feed name"),
        ({"scope": "read", "feed": "vendor_x"}, "only a write token can be bound to a feed"),
    ],
)
def test_the_admin_refuses_a_bad_feed_or_a_feed_on_a_read_token(admin_client, django_user_model, fields, message):
    bot = django_user_model.objects.create_user("vendor-bot")
    response = admin_client.post(reverse("admin:timeseries_apitoken_add"), {"user": bot.pk, "name": "", **fields})
    assert response.status_code == 200 and message in response.content.decode()
    assert ApiToken.objects.count() == 0


def test_token_create_and_create_token_bind_a_feed_and_refuse_a_bad_one(django_user_model):
    bot = django_user_model.objects.create_user("vendor-bot")
    with pytest.raises(ValueError, match="feed: 'a b' is not a feed name"):
        tokens.token_create(user=bot, scope="write", feed="a b")
    with pytest.raises(ValueError, match="only a write token can be bound to a feed"):
        tokens.token_create(user=bot, scope="read", feed="vendor_x")
    out, err = run("create_token", "vendor-bot", "--scope", "write", "--feed", "vendor_x")
    assert "bound to feed 'vendor_x'" in err
    assert tokens.token_authenticate(key=out.strip()).feed == "vendor_x"
    with pytest.raises(CommandError, match="--feed 'a b' is not a feed name"):
        run("create_token", "vendor-bot", "--scope", "write", "--feed", "a b")
    with pytest.raises(CommandError, match="add --scope write"):
        run("create_token", "vendor-bot", "--feed", "vendor_x")
    assert ApiToken.objects.count() == 1
