"""Fixtures of the hostile-input suite: clients holding a read token, a write token and a staff
session, a cache namespace per test, and no rate limit (the suite sends many requests)."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from timeseries.tokens import token_create


@pytest.fixture(autouse=True)
def private_cache(settings):
    caches = {name: dict(conf) for name, conf in settings.CACHES.items()}
    caches["default"]["KEY_PREFIX"] = f"tsm-hostile-{uuid.uuid4().hex}"
    caches["default"]["TIMEOUT"] = 120
    settings.CACHES = caches
    settings.TSM_API_RATE = None
    settings.TSM_INGEST_RATE = "1000000/min"
    return caches["default"]["KEY_PREFIX"]


@pytest.fixture
def read_key(db) -> str:
    return token_create(user=User.objects.create_user("hostile-reader"), scope="read", name="hostile")[1]


@pytest.fixture
def write_key(db) -> str:
    return token_create(user=User.objects.create_user("hostile-writer"), scope="write", name="hostile")[1]


@pytest.fixture
def reader(read_key) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {read_key}")
    return client


@pytest.fixture
def writer(write_key) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {write_key}")
    return client


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient(raise_request_exception=False)


@pytest.fixture
def staff_user(db) -> User:
    return User.objects.create_superuser("hostile-staff", password=None)  # no hashing: force_login


@pytest.fixture
def staff(staff_user) -> Client:
    """A browser-like staff session: CSRF checks on, as in a real browser."""
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    client.force_login(staff_user)
    return client
