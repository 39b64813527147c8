"""The database "engine" settings name for TSM_TIMESCALEDB=auto (``tsm_site.lanes``).

Django imports ``<ENGINE>.base`` and builds its ``DatabaseWrapper`` while loading the models (it asks
the backend for the longest table name), long before anything talks to the server. This wrapper is
plain PostgreSQL's until its first ``connect()`` (or ``prepare_database()`` / ``schema_editor()``,
which differ between the lanes): then it asks the server once per process which lane
to use (``choose_engine(..., "auto")``), writes the chosen engine into the settings dict (the same dict
as ``settings.DATABASES[alias]``, so later readers and other threads' connections see the real
engine) and becomes that engine's wrapper. django-timescaledb's wrapper is a subclass of plain
PostgreSQL's that adds only its schema editor and ``CREATE EXTENSION`` on ``prepare_database``, so the
switch keeps every attribute the wrapper built so far.
"""

from __future__ import annotations

import threading

from django.db.backends.postgresql.base import DatabaseWrapper as PostgresDatabaseWrapper
from django.db.utils import load_backend
from django.utils.asyncio import async_unsafe

from tsm_site.lanes import AUTO_ENGINE, choose_engine

_lock = threading.Lock()
_chosen: dict[tuple, str] = {}  # (host, port, user) -> engine: one probe per server and process


def resolve(settings_dict: dict) -> str:
    """The engine for this database, probing the server the first time; stored in ``settings_dict``."""
    with _lock:
        if settings_dict.get("ENGINE") == AUTO_ENGINE:
            key = (settings_dict.get("HOST"), settings_dict.get("PORT"), settings_dict.get("USER"))
            if key not in _chosen:
                _chosen[key] = choose_engine(settings_dict, "auto")
            settings_dict["ENGINE"] = _chosen[key]
        return settings_dict["ENGINE"]


class DatabaseWrapper(PostgresDatabaseWrapper):
    """Plain PostgreSQL's wrapper until the first use that depends on the lane — connecting, preparing
    the database (``migrate``: TimescaleDB's ``CREATE EXTENSION``) or opening a schema editor
    (TimescaleDB's makes the hypertables) — then the chosen engine's."""

    def become_chosen_engine(self) -> None:
        wrapper = load_backend(resolve(self.settings_dict)).DatabaseWrapper
        if not issubclass(wrapper, PostgresDatabaseWrapper):  # never: both lanes are PostgreSQL
            raise TypeError(f"{wrapper!r} is not a PostgreSQL backend")
        self.__class__ = wrapper

    @async_unsafe
    def connect(self):
        self.become_chosen_engine()
        return self.connect()

    def prepare_database(self):
        self.become_chosen_engine()
        return self.prepare_database()

    def schema_editor(self, *args, **kwargs):
        self.become_chosen_engine()
        return self.schema_editor(*args, **kwargs)
