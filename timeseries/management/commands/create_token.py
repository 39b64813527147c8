"""manage.py create_token USERNAME --scope read|write [--name N] [--feed F] [--create-user]

Prints the new key once on standard output (only its digest is stored); details go to standard error,
so ``KEY=$(python manage.py create_token alice --scope read)`` captures just the key.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from timeseries.models import ApiToken
from timeseries.rules import feed_problem
from timeseries.tokens import token_create


class Command(BaseCommand):
    help = "Create an API token for USERNAME and print its key (shown once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--scope",
            choices=ApiToken.Scope.values,
            default=ApiToken.Scope.READ,
            help="read (default) or write (write implies read)",
        )
        parser.add_argument("--name", default="", help="a label to recognise the token by")
        parser.add_argument(
            "--feed", default="", help="write tokens: bind the token to this feed (the write API refuses another)"
        )
        parser.add_argument(
            "--create-user",
            action="store_true",
            help="create USERNAME (active, without a password) when it does not exist",
        )

    def handle(self, *args, username, scope, name, feed, create_user, **options):
        problem = feed_problem(feed)
        if problem:
            raise CommandError(f"--feed {problem}")
        if feed and scope != ApiToken.Scope.WRITE:
            raise CommandError("--feed binds what a write token sends: add --scope write")
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            if not create_user:
                raise CommandError(f"no user {username!r}: create it first (createsuperuser) or pass --create-user")
            user = User(username=username)
            user.set_unusable_password()
            user.save()
            self.stderr.write(f"created user {username!r}")
        if not user.is_active:
            raise CommandError(f"user {username!r} is inactive: its tokens would not authenticate")
        token, key = token_create(user=user, scope=scope, name=name, feed=feed)
        bound = f" bound to feed {feed!r}" if feed else ""
        self.stderr.write(
            f"{scope} token {token.prefix}…{bound} for {username!r} (id {token.pk}); the key is shown only once:"
        )
        self.stdout.write(key)
