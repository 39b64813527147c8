import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tsm_site.settings")
application = get_wsgi_application()

from tsm_site.preflight import require_ready  # noqa: E402  (needs the app registry)

require_ready()
