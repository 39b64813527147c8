"""Fixtures shared by the ingestion tests."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from tests.ingestion.influx_server import influx_server
from timeseries.tokens import token_create


@pytest.fixture
def media(tmp_path, settings):
    """Uploaded files go to the test's own folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def staff_client(client, db):
    """A Django test client logged in as a superuser on the staff."""
    user = User.objects.create_user("staff", password="pw-for-tests", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


@pytest.fixture
def writer(db) -> APIClient:
    """An API client holding a write token (user "feed")."""
    user = User.objects.create_user("feed")
    _, key = token_create(user=user, scope="write")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture(scope="session")
def influxd():
    with influx_server() as server:
        yield server


@pytest.fixture
def backup(influxd, settings):
    """The backup pointed at the test server, with a database of its own."""
    settings.TSM_INFLUX_URL = influxd.url
    settings.TSM_INFLUX_DB = f"tsm_test_{uuid.uuid4().hex[:10]}"
    settings.TSM_INFLUX_BACKUP = "subminute"
    yield settings
    influxd.drop_database(settings.TSM_INFLUX_DB)
