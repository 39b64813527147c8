"""Make sure a staff superuser exists for local use; its password comes from the environment or is generated."""

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the local superuser 'admin' (password: $TSM_ADMIN_PASSWORD, else generated into var/)."

    def handle(self, *args, **options):
        User = get_user_model()
        path = Path(settings.BASE_DIR) / "var" / "admin-password"
        password = os.environ.get("TSM_ADMIN_PASSWORD")
        user = User.objects.filter(username="admin").first()
        if user and not password:
            self.stdout.write(f"admin user exists (password in {path} if it was generated)")
            return
        if not password:
            password = secrets.token_urlsafe(12)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(password + "\n")
            path.chmod(0o600)
        if user is None:
            User.objects.create_superuser("admin", "", password)
        else:
            user.set_password(password)
            user.save(update_fields=["password"])
        self.stdout.write(f"log in at /admin/ as admin; password: {password} (also in {path})")
