"""manage.py list_tokens [--user USERNAME] [--revoked | --all]

One line per API token: id, key prefix, user, scope, created, last used, state, name. Keys are never
shown (only their SHA-256 digest is stored); the prefix recognises a token (``revoke_token PREFIX``).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from timeseries.models import ApiToken


def _when(value) -> str:
    return value.strftime("%Y-%m-%dT%H:%MZ") if value else "never"


class Command(BaseCommand):
    help = "List API tokens (active ones by default)."

    def add_arguments(self, parser):
        parser.add_argument("--user", help="only this user's tokens")
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--revoked", action="store_true", help="only revoked tokens")
        which.add_argument("--all", action="store_true", help="active and revoked tokens")

    def handle(self, *args, user, revoked, all, **options):  # noqa: A002 - the option's name
        tokens = ApiToken.objects.select_related("user").order_by("created_at", "id")
        if user is not None:
            if not get_user_model().objects.filter(username=user).exists():
                raise CommandError(f"no user {user!r}")
            tokens = tokens.filter(user__username=user)
        if not all:
            tokens = tokens.filter(revoked=revoked)
        header = ("id", "key", "user", "scope", "created", "last used", "state", "name")
        lines = [
            (
                str(t.pk),
                f"{t.prefix}…",
                t.user.username,
                t.scope,
                _when(t.created_at),
                _when(t.last_used_at),
                "revoked" if t.revoked else "active",
                t.name,
            )
            for t in tokens
        ]
        if not lines:
            self.stderr.write("no tokens")
            return
        widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
        for row in [header, *lines]:
            self.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
