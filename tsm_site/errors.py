"""What Django's error reports may show (the debug page, and the e-mails/logs of 500s).

Django masks settings and request headers whose names look secret (KEY, TOKEN, PASS...). A connection
URL carries its password inside it, so every setting (and WSGI environ entry) whose name contains URL,
DATABASE, REDIS or BROKER is masked too: ``DATABASE_URL``, ``DATABASES``, ``REDIS_URL``,
X
"""

from __future__ import annotations

import re

from django.views.debug import SafeExceptionReporterFilter

HIDDEN = re.compile(
    "API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|AUTHORIZATION|CSRF|URL|DATABASE|REDIS|BROKER|INFLUX|CACHES", re.I
)


class MaskingExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter, also masking connection URLs (settings.DEFAULT_EXCEPTION_REPORTER_FILTER)."""

    hidden_settings = HIDDEN
