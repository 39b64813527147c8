import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tsm_site.settings")
application = get_asgi_application()

from tsm_site.preflight import require_ready  # noqa: E402  (needs the app registry)

require_ready()
