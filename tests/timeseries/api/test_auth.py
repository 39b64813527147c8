"""Token and session authentication, scopes, anonymous access, rate limiting, create_token."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory
from rest_framework.views import APIView

from timeseries import tokens
from timeseries.api.auth import WriteScope
from timeseries.models import ApiToken
from timeseries.tokens import token_create, token_revoke

pytestmark = pytest.mark.django_db

URL = "/api/v1/state/"
QUERY = {"at": "2024-03-01T15:30:00Z"}


def test_it_refuses_anonymous_callers_by_default_with_a_401(anonymous):
    response = anonymous.get(URL, QUERY)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="tsm"'


def test_it_lets_anonymous_callers_read_when_configured(anonymous, settings):
    settings.TSM_API_ANONYMOUS_READ = True
    assert anonymous.get(URL, QUERY).status_code == 200
    assert anonymous.post("/api/v1/asof-join/", [], format="json").status_code == 200


def test_it_accepts_bearer_and_token_headers(read_key):
    for keyword in ("Bearer", "Token", "bearer"):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"{keyword} {read_key}")
        assert client.get(URL, QUERY).status_code == 200, keyword


@pytest.mark.parametrize("header", ["Bearer nope", "Bearer", "Bearer a b", "Token tsm_\u00e9"])
def test_it_refuses_a_bad_token_with_a_401(header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get(URL, QUERY).status_code == 401


def test_it_refuses_a_revoked_token_and_a_token_of_an_inactive_user(user, read_key, settings):
    settings.TSM_TOKEN_CACHE_SECONDS = 0  # as another server process sees it once its cache expired
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {read_key}")
    assert client.get(URL, QUERY).status_code == 200
    ApiToken.objects.update(revoked=True)
    assert client.get(URL, QUERY).status_code == 401
    ApiToken.objects.update(revoked=False)
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert client.get(URL, QUERY).status_code == 401


def test_it_lets_staff_read_with_a_browser_session_but_not_other_users():
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    client = APIClient()
    client.force_login(staff)
    assert client.get(URL, QUERY).status_code == 200
    html = client.get(URL, QUERY, HTTP_ACCEPT="text/html")
    assert html.status_code == 200 and b"<h1>State</h1>" in html.content  # DRF's browsable API

    plain = User.objects.create_user("plain", password="pw")
    client = APIClient()
    client.force_login(plain)
    response = client.get(URL, QUERY)
    assert response.status_code == 403
    assert "Session access is for staff accounts" in response.json()["detail"]


def test_it_requires_a_write_token_or_staff_for_write_scope(user):
    class Ingest(APIView):
        permission_classes = [WriteScope]

        def post(self, request):
            return Response({"ok": True})

    factory = APIRequestFactory()
    read_key = token_create(user=user, scope="read")[1]
    write_key = token_create(user=user, scope="write")[1]
    denied = Ingest.as_view()(factory.post("/x", HTTP_AUTHORIZATION=f"Bearer {read_key}"))
    assert denied.status_code == 403
    assert "this endpoint needs 'write'" in str(denied.data["detail"])
    assert Ingest.as_view()(factory.post("/x", HTTP_AUTHORIZATION=f"Bearer {write_key}")).status_code == 200


def test_it_lets_a_write_token_read():
    user = User.objects.create_user("writer")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_create(user=user, scope='write')[1]}")
    assert client.get(URL, QUERY).status_code == 200


def test_it_rate_limits_each_token_separately(settings, user):
    settings.TSM_API_RATE = "3/min"
    first, second = APIClient(), APIClient()
    first.credentials(HTTP_AUTHORIZATION=f"Bearer {token_create(user=user)[1]}")
    second.credentials(HTTP_AUTHORIZATION=f"Bearer {token_create(user=user)[1]}")
    assert [first.get(URL, QUERY).status_code for _ in range(4)] == [200, 200, 200, 429]
    throttled = first.get(URL, QUERY)
    assert throttled.status_code == 429 and int(throttled["Retry-After"]) > 0
    assert second.get(URL, QUERY).status_code == 200


def test_it_creates_a_token_and_prints_its_key_once(user):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_token", "reader", "--scope", "read", "--name", "notebook", stdout=out, stderr=err)
    key = out.getvalue().strip()
    assert key.startswith("tsm_") and "\n" not in key
    token = ApiToken.objects.get(name="notebook")
    assert token.scope == "read" and token.user == user and key not in token.digest
    assert "shown only once" in err.getvalue()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get(URL, QUERY).status_code == 200


def test_it_refuses_to_create_a_token_for_an_unknown_user_unless_asked_to_create_it():
    with pytest.raises(CommandError, match="no user 'ghost'"):
        call_command("create_token", "ghost", "--scope", "write", stdout=io.StringIO(), stderr=io.StringIO())
    out = io.StringIO()
    call_command("create_token", "ghost", "--scope", "write", "--create-user", stdout=out, stderr=io.StringIO())
    assert User.objects.get(username="ghost").api_tokens.get().scope == "write"
    assert not User.objects.get(username="ghost").has_usable_password()


def test_it_refuses_a_token_revoked_in_this_process_at_once(user, read_key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {read_key}")
    assert client.get(URL, QUERY).status_code == 200  # now remembered as valid
    token_revoke(token=ApiToken.objects.get())
    assert client.get(URL, QUERY).status_code == 401


def test_it_refuses_a_revoked_token_in_other_processes_once_the_cache_expires(user, read_key, settings, monkeypatch):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {read_key}")
    assert client.get(URL, QUERY).status_code == 200
    ApiToken.objects.update(revoked=True)  # e.g. revoked by another process
    later = tokens.time.monotonic() + settings.TSM_TOKEN_CACHE_SECONDS + 1
    monkeypatch.setattr(tokens.time, "monotonic", lambda: later)
    assert client.get(URL, QUERY).status_code == 401
