"""Create the configured database when it does not exist yet (used by `make run` / `make test`)."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create the database named in DATABASE_URL if it is missing."

    def handle(self, *args, **options):
        import psycopg
        from psycopg import sql

        db = settings.DATABASES["default"]
        try:
            with psycopg.connect(
                host=db["HOST"] or None,
                port=db["PORT"] or None,
                user=db["USER"] or None,
                password=db["PASSWORD"] or None,
                dbname="postgres",
                autocommit=True,
                connect_timeout=5,
            ) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]).fetchone()
                if not exists:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))
                    self.stdout.write(f"created database {db['NAME']}")
        except psycopg.OperationalError as exc:
            raise CommandError(
                f"PostgreSQL is unreachable at {db['HOST']}:{db['PORT']} ({exc}). Start it (see README) "
                "or set DATABASE_URL."
            ) from None
