"""Celery application: Redis broker, configuration from Django settings (CELERY_*)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tsm_site.settings")

app = Celery("tsm")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
