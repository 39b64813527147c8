"""Settings hygiene: importing the settings (and setting Django up) opens no database connection; the
storage lane of TSM_TIMESCALEDB=auto is resolved once, on the first connection (tsm_site/lanes); the
system check refuses a feed precedence naming something that cannot be a feed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core import checks
from django.db import connections
from django.test import override_settings

from tsm_site.lanes import AUTO_ENGINE, PLAIN_ENGINE, TIMESCALE_ENGINE, engine_setting

ROOT = Path(__file__).resolve().parents[1]

# counts every psycopg connection attempt (the lane probe and Django's own connections use psycopg.connect)
SPY = """
import os, sys, psycopg
attempts = []
real_connect = psycopg.connect
def spy(*args, **kwargs):
    attempts.append(kwargs.get("port"))
    return real_connect(*args, **kwargs)
psycopg.connect = spy
os.environ["DJANGO_SETTINGS_MODULE"] = "tsm_site.settings"
import django
django.setup()
from django.conf import settings
print("after setup", len(attempts), settings.DATABASES["default"]["ENGINE"])
"""


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TSM_TIMESCALEDB", "DATABASE_URL"))}
    environ.update(env, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120
    )


def test_settings_and_django_setup_open_no_database_connection_with_postgresql_unreachable():
    run = run_python(SPY, DATABASE_URL="postgres://postgres@127.0.0.1:1/x", TSM_TIMESCALEDB="auto")
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"after setup 0 {AUTO_ENGINE}" in run.stdout, (run.stdout, run.stderr[-3000:])
    assert "could not probe" not in run.stderr


def test_the_auto_lane_is_resolved_on_the_first_connection_and_written_into_the_settings():
    code = (
        SPY
        + """
from django.db import connection
from django.db.utils import OperationalError
try:
    connection.ensure_connection()
except OperationalError:
    pass  # nothing listens on port 1: the probe fell back to plain PostgreSQL, then the connection failed
print("after first use", len(attempts), settings.DATABASES["default"]["ENGINE"], connection.settings_dict["ENGINE"])
"""
    )
    run = run_python(code, DATABASE_URL="postgres://postgres@127.0.0.1:1/x", TSM_TIMESCALEDB="auto")
    assert run.returncode == 0, run.stderr[-3000:]
    # the probe (one attempt) and Django's own connection (one more): nothing before that
    assert f"after first use 2 {PLAIN_ENGINE} {PLAIN_ENGINE}" in run.stdout, (run.stdout, run.stderr[-3000:])
    assert "could not probe for TimescaleDB" in run.stderr


def test_on_and_off_name_the_engine_in_the_settings_and_auto_defers():
    assert engine_setting("on") == TIMESCALE_ENGINE
    assert engine_setting("off") == PLAIN_ENGINE
    assert engine_setting("auto") == AUTO_ENGINE


@pytest.mark.django_db
def test_the_connection_of_the_test_run_names_its_real_engine():
    connection = connections["default"]
    connection.ensure_connection()
    assert connection.settings_dict["ENGINE"] in {PLAIN_ENGINE, TIMESCALE_ENGINE}
    assert type(connection).__module__ == connection.settings_dict["ENGINE"] + ".base"


def test_a_schema_editor_opened_before_any_connection_is_the_chosen_lanes():
    # migrate asks for a schema editor (TimescaleDB's makes the hypertables): the lane is chosen first.
    # The server's answer is stood in for (this one may not have TimescaleDB): the chosen engine is
    # TimescaleDB's, and the editor must be django-timescaledb's, with no connection opened for it.
    code = (
        SPY
        + """
from django.db import connections
from tsm_site.lanes import TIMESCALE_ENGINE, base
db = connections["default"]
base._chosen[(db.settings_dict["HOST"], db.settings_dict["PORT"], db.settings_dict["USER"])] = TIMESCALE_ENGINE
print("before", type(db).__module__)
editor = db.schema_editor()
print("after", len(attempts), type(db).__module__, type(editor).__name__, settings.DATABASES["default"]["ENGINE"])
"""
    )
    run = run_python(code, DATABASE_URL="postgres://postgres@127.0.0.1:1/x", TSM_TIMESCALEDB="auto")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "before tsm_site.lanes.base" in run.stdout, run.stdout
    assert f"after 0 {TIMESCALE_ENGINE}.base TimescaleSchemaEditor {TIMESCALE_ENGINE}" in run.stdout, run.stdout


# --- TSM_FEED_PRECEDENCE: the system check of its feed names ---------------------------------------


def feed_errors() -> list[str]:
    return [m.msg for m in checks.run_checks() if m.id and m.id.startswith("ingestion.")]


def test_the_system_check_passes_well_formed_feed_ranks():
    with override_settings(TSM_FEED_PRECEDENCE={"market_data": ("curation", "vendor_x", "NYSE:feed.2-b")}):
        assert feed_errors() == []
    with override_settings(TSM_FEED_PRECEDENCE={"market_data": ()}):
        assert feed_errors() == []


@pytest.mark.parametrize(
    "ranks, message",
    [
        ({"market_data": ("curation", "vendor x")}, "TSM_FEED_PRECEDENCE_MARKET_DATA: 'vendor x' is not a feed name"),
        ({"news_events": ("-wire",)}, "TSM_FEED_PRECEDENCE_NEWS_EVENTS: '-wire' is not a feed name"),
        ({"market_data": ("x" * 65,)}, "TSM_FEED_PRECEDENCE_MARKET_DATA: 'xxxxxxxx"),
        ({"market_data": ("a", "b", "a")}, "TSM_FEED_PRECEDENCE_MARKET_DATA names 'a' more than once"),
        ({"prices": ("a",)}, "TSM_FEED_PRECEDENCE ranks feeds for 'prices', which is not a dataset"),
    ],
)
def test_the_system_check_names_the_variable_of_a_bad_feed_rank(ranks, message):
    with override_settings(TSM_FEED_PRECEDENCE=ranks):
        errors = feed_errors()
    assert len(errors) == 1 and errors[0].startswith(message), errors


def test_manage_py_refuses_to_run_with_a_bad_feed_name_in_the_environment():
    def check(ranks: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "TSM_FEED_PRECEDENCE_MARKET_DATA": ranks}
        return subprocess.run(
            [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )

    bad = check("curation, vendor x")
    assert bad.returncode != 0
    assert "TSM_FEED_PRECEDENCE_MARKET_DATA: 'vendor x' is not a feed name" in bad.stderr, bad.stderr[-2000:]
    good = check("curation, vendor_x")
    assert good.returncode == 0, good.stderr[-2000:]
