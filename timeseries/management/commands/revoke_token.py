"""manage.py revoke_token ID_OR_PREFIX [--user USERNAME]

Revokes one API token, named by its id or its key prefix (``list_tokens`` shows both; a prefix is
the key's first 8 characters, e.g. ``tsm_AbCd``; a whole key is found by its digest). A prefix that
matches several active tokens is refused (name the id). The token is refused at once by this process
and by the others within TSM_TOKEN_CACHE_SECONDS.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from timeseries.models import ApiToken
from timeseries.tokens import token_digest, token_revoke


class Command(BaseCommand):
    help = "Revoke an API token by id or key prefix."

    def add_arguments(self, parser):
        parser.add_argument("token", help="the token's id or key prefix (see list_tokens)")
        parser.add_argument("--user", help="only among this user's tokens")

    def handle(self, *args, token, user, **options):
        wanted = token.strip().rstrip("…")
        tokens = ApiToken.objects.select_related("user")
        if user is not None:
            tokens = tokens.filter(user__username=user)
        if wanted.isdigit():
            matches = list(tokens.filter(pk=int(wanted)))
        elif len(wanted) > 8:  # the whole key (e.g. a leaked one): found by its digest
            matches = list(tokens.filter(digest=token_digest(wanted)))
        elif len(wanted) >= 4:
            matches = list(tokens.filter(prefix__startswith=wanted))
        else:
            raise CommandError(f"token={token!r}: give the token's id or at least 4 characters of its key prefix")
        if not matches:
            raise CommandError(
                f"no token {token!r}" + (f" of user {user!r}" if user else "") + " (see manage.py list_tokens --all)"
            )
        active = [t for t in matches if not t.revoked]
        if len(active) > 1:
            ids = ", ".join(str(t.pk) for t in active)
            raise CommandError(f"token={token!r} matches {len(active)} active tokens (ids {ids}): name one by its id")
        if not active:
            self.stderr.write(f"token {matches[0].prefix}… (id {matches[0].pk}) is already revoked")
            return
        found = active[0]
        token_revoke(token=found)
        ttl = settings.TSM_TOKEN_CACHE_SECONDS
        self.stdout.write(
            f"revoked {found.scope} token {found.prefix}… (id {found.pk}) of {found.user.username!r}; "
            f"other processes refuse it within {ttl} s"
        )
