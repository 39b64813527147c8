"""Refuse to start with a clear message naming what is missing (docs/architecture.md, "Preflight").

Checked before the site or a worker serves anything: PostgreSQL reachable, Redis reachable, every
migration applied. ``manage.py preflight`` prints the same report.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

HOW_TO_START_POSTGRES = "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
HOW_TO_START_REDIS = "start it with: make services (or redis-server --daemonize yes --port 6379 --bind 127.0.0.1)"


def problems() -> list[str]:
    found: list[str] = []
    from django.db import connection
    from django.db.utils import OperationalError

    db = settings.DATABASES["default"]
    try:
        connection.ensure_connection()
    except OperationalError as exc:
        found.append(
            f"PostgreSQL is unreachable at {db.get('HOST')}:{db.get('PORT')}/{db.get('NAME')} "
            f"({str(exc).strip().splitlines()[0]}); {HOW_TO_START_POSTGRES}, then `make migrate`"
        )
    else:
        from django.db.migrations.executor import MigrationExecutor

        plan = MigrationExecutor(connection).migration_plan(MigrationExecutor(connection).loader.graph.leaf_nodes())
        if plan:
            names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in plan[:5])
            found.append(f"{len(plan)} migration(s) not applied ({names}); run: python manage.py migrate")
    try:
        import redis

        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2).ping()
    except Exception as exc:  # any failure to reach Redis is reported, not raised
        found.append(f"Redis is unreachable at {settings.REDIS_URL} ({exc}); {HOW_TO_START_REDIS}")
    return found


def require_ready() -> None:
    found = problems()
    if found:
        raise ImproperlyConfigured("tsm cannot start:\n  - " + "\n  - ".join(found))
