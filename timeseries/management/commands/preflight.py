from django.core.management.base import BaseCommand, CommandError

from tsm_site.preflight import problems


class Command(BaseCommand):
    help = "Check that PostgreSQL and Redis are reachable and every migration is applied."

    def handle(self, *args, **options):
        found = problems()
        if found:
            raise CommandError("tsm cannot start:\n  - " + "\n  - ".join(found))
        self.stdout.write("ready: PostgreSQL reachable, migrations applied, Redis reachable")
