"""Admin: the InfluxDB backup's status (read-only). Hooked in by one import in ``ingestion/admin.py``.

The Ingestion section of the admin index (and the sidebar) names the entry "InfluxDB backup (off)",
"(on)" or "(failing)"; its page says in a message whether the backup is off, how many changes are
pending, the last success and the last error (``ingestion.influx.backup_status``).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied

from ingestion import influx
from ingestion.models import InfluxBackupState


@admin.register(InfluxBackupState)
class InfluxBackupStateAdmin(admin.ModelAdmin):
    list_display = (
        "dataset",
        "last_run_at",
        "last_success_at",
        "last_error_at",
        "last_error",
        "points_sent",
        "changes_done",
    )
    readonly_fields = list_display

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):  # before the status message (it would show on a later page)
            raise PermissionDenied
        status = influx.backup_status()
        failing = status["enabled"] and bool(status["last_error"])
        level = messages.WARNING if (not status["enabled"] or failing) else messages.INFO
        self.message_user(request, influx.backup_status_text(status), level=level)
        return super().changelist_view(request, extra_context)


def _short_state() -> str:
    """off / on / failing, from settings and one row (the sidebar calls this on every admin page)."""
    if not influx.influx_config().enabled:
        return "off"
    state = InfluxBackupState.objects.filter(dataset=influx.DATASET).values("last_error").first()
    return "failing" if state and state["last_error"] else "on"


def _install(site: admin.AdminSite) -> None:
    if getattr(site, "_tsm_influx_installed", False):
        return
    site._tsm_influx_installed = True
    get_app_list = site.get_app_list

    def app_list(request, app_label=None):
        apps = get_app_list(request, app_label)
        for app in apps:
            for model in app["models"]:
                if model.get("model") is InfluxBackupState:
                    model["name"] = f"InfluxDB backup ({_short_state()})"
        return apps

    site.get_app_list = app_list


_install(admin.site)
