"""manage.py remove_versions — remove bad version rows, audited (timeseries/removal.py).

    python manage.py remove_versions market_data --id 123 --id 124 --reason "bar at 9999-12-31 from an old feed"

All or nothing: every id must be a row of the dataset. Each removed row is kept in the audit
(Admin › Timeseries › Version removals) with the reason and who ran it (--user, else the login of
the shell). Appends a change-log entry so rollups, quality checks, the InfluxDB backup and cached
answers follow, recomputes the series registry and lets the consumers' open failures on those
symbols be retried at once. Prints one JSON object.
"""

from __future__ import annotations

import getpass
import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from timeseries.datasets import DATASETS
from timeseries.removal import RemovalError, versions_remove


class Command(BaseCommand):
    help = "Remove version rows of a dataset by id, audited (who, when, why, the removed values)."

    def add_arguments(self, parser):
        parser.add_argument("dataset", choices=list(DATASETS))
        parser.add_argument(
            "--id",
            dest="ids",
            action="append",
            required=True,
            metavar="ROW_ID",
            help="id of a version row (admin list, first column); repeat for several",
        )
        parser.add_argument("--reason", required=True, help="why (kept in the audit)")
        parser.add_argument("--user", help="the tsm user doing it (recorded in the audit)")

    def handle(self, *args, dataset, ids, reason, user, **options):
        account = None
        if user:
            account = get_user_model().objects.filter(username=user).first()
            if account is None:
                raise CommandError(f"--user: no user named {user!r}")
        try:
            actor = account.get_username() if account else f"manage.py ({getpass.getuser()})"
        except Exception:  # no login name (a container): the command is still named
            actor = "manage.py"
        try:
            result = versions_remove(dataset=dataset, ids=ids, reason=reason, user=account, actor=actor)
        except RemovalError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps(result.as_dict(), sort_keys=True))
