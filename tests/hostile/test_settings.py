"""DEBUG off unless asked for, a development SECRET_KEY kept in var/ (0600), connection URLs masked
in error reports."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.test import RequestFactory
from django.views.debug import ExceptionReporter

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps([s.DEBUG, s.SECRET_KEY, s.SECRET_KEY_FROM_FILE]))"
)


def settings_in_a_fresh_shell(tmp_path, **env) -> list:
    clean = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY")}
    clean.update(
        DJANGO_SETTINGS_MODULE="tsm_site.settings", TSM_SECRET_KEY_FILE=str(tmp_path / "var" / "secret_key"), **env
    )
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=clean, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_debug_is_off_unless_asked_for_and_a_private_development_key_is_generated_once(tmp_path):
    debug, key, from_file = settings_in_a_fresh_shell(tmp_path)
    assert debug is False
    path = tmp_path / "var" / "secret_key"
    assert from_file is True and len(key) >= 50
    assert path.read_text().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert settings_in_a_fresh_shell(tmp_path, DEBUG="true")[:2] == [True, key]  # the next shell: the same key
    assert settings_in_a_fresh_shell(tmp_path, SECRET_KEY="from-the-environment")[1:] == ["from-the-environment", False]


def test_the_development_key_is_never_committed():
    ignored = subprocess.run(["git", "check-ignore", "-q", "var/secret_key"], cwd=ROOT)
    assert ignored.returncode == 0


def _explode():
    raise RuntimeError("boom")


def _report(request) -> ExceptionReporter:
    try:
        _explode()
    except RuntimeError:
        return ExceptionReporter(request, *sys.exc_info())


@pytest.mark.parametrize("debug", [True, False])
def test_error_reports_mask_connection_urls(settings, debug):
    settings.DEBUG = debug
    secret = f"pw-{uuid.uuid4().hex}"  # not in this file's source, which the report quotes
    settings.DATABASE_URL = f"postgres://tsm:{secret}@db.example:5432/tsm"
    settings.REDIS_URL = f"redis://:{secret}@cache.example:6379/0"
    settings.CELERY_BROKER_URL = settings.REDIS_URL
    settings.TSM_INFLUX_URL = f"http://u:{secret}@influx.example:8086"
    request = RequestFactory().get(
        "/api/v1/state/", REDIS_URL=settings.REDIS_URL, HTTP_AUTHORIZATION=f"Bearer {secret}"
    )
    reporter = _report(request)
    for text in (reporter.get_traceback_html(), reporter.get_traceback_text()):
        assert "boom" in text and "DATABASE_URL" in text
        assert secret not in text
        assert "db.example" not in text and "cache.example" not in text
