"""Fixtures of the read API tests: a client with a read token, and a cache namespace per test.

The API caches in the real Redis. Each test gets its own KEY_PREFIX so that answers cached by one test
(whose rolled-back transaction resets the dataset generations) can never be served to another, and
so that nothing here ever clears keys other people use.
"""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from timeseries.tokens import token_create


@pytest.fixture(autouse=True)
def private_cache(settings):
    caches = {name: dict(conf) for name, conf in settings.CACHES.items()}
    caches["default"]["KEY_PREFIX"] = f"tsm-apitest-{uuid.uuid4().hex}"
    caches["default"]["TIMEOUT"] = 120
    settings.CACHES = caches  # django's setting_changed handler rebuilds the cache connections
    settings.TSM_API_RATE = "100000/min"
    return caches["default"]["KEY_PREFIX"]


@pytest.fixture
def user(db):
    return User.objects.create_user("reader", password="x")


@pytest.fixture
def read_key(user) -> str:
    return token_create(user=user, scope="read", name="tests")[1]


@pytest.fixture
def api(read_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {read_key}")
    return client


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()
