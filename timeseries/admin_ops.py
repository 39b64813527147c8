"""Admin for operators: the consumers' failures, the version removals, and the audited removal action.

Hooked into the admin by one import at the end of ``timeseries/admin.py`` (after the dataset admins
are registered):

* Consumer failures — read-only list, open ones first (``ConsumerFailure``: a change-log span the
  rollups, quality or InfluxDB consumer could not process and passed). View permission:
  ``timeseries.view_consumerfailure``; the action "Retry at the next consumer run" needs
  ``timeseries.change_consumerfailure``.
* Version removals — read-only audit of removed versions (``VersionRemoval``), view permission
  ``timeseries.view_versionremoval``.
* On every dataset changelist, the action "Remove selected versions (audited)": shown only to users
  with the dataset model's *delete* permission (e.g. ``timeseries.delete_marketdata``); it asks for a
  reason on a confirmation page and calls ``timeseries.removal.versions_remove``.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import F, TextField
from django.db.models.functions import Cast
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from timeseries import models
from timeseries.admin_base import ReadOnlyModelAdmin
from timeseries.admin_storage import dataset_permission
from timeseries.datasets import dataset_of_model
from timeseries.removal import RemovalError, versions_remove

MAX_SELECTED = 1000  # rows one admin removal may take (the command takes more)


class OpenFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("open", "open"), ("resolved", "resolved"))

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(models.ConsumerFailure)
class ConsumerFailureAdmin(ReadOnlyModelAdmin):
    list_display = (
        "state",
        "consumer",
        "dataset",
        "symbol",
        "span",
        "attempts",
        "first_attempt_at",
        "last_attempt_at",
        "next_attempt_at",
        "error_short",
    )
    list_filter = (OpenFilter, "consumer", "dataset")
    search_fields = ("symbol",)
    search_help_text = "Exact symbol."
    actions = ("retry_next_run",)

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm("timeseries.change_consumerfailure")

    @admin.action(description="Retry at the next consumer run", permissions=["retry"])
    def retry_next_run(self, request, queryset):
        """Make the selected open failures due now: the consumer's next run (every few seconds under
        beat) retries them; ``manage.py consumers --retry`` retries them at once."""
        due = queryset.filter(resolved_at__isnull=True).update(next_attempt_at=timezone.now())
        self.message_user(
            request, f"{due} open failure(s) will be retried at their consumer's next run.", messages.SUCCESS
        )

    def get_queryset(self, request):
        return (
            super().get_queryset(request).order_by(F("resolved_at").desc(nulls_first=True), "-last_attempt_at", "-id")
        )

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        return (queryset.filter(symbol=term) if term else queryset), False

    @admin.display(description="state")
    def state(self, obj):
        if obj.resolved_at:
            return format_html('<span style="color:#2a7">resolved {}</span>', f"{obj.resolved_at:%Y-%m-%d %H:%M:%S}")
        return mark_safe('<strong style="color:#b00">open</strong>')

    @admin.display(description="error")
    def error_short(self, obj):
        return obj.error if len(obj.error) <= 200 else obj.error[:200] + " …"


@admin.register(models.VersionRemoval)
class VersionRemovalAdmin(ReadOnlyModelAdmin):
    list_display = ("removed_at", "dataset", "row_id", "symbol", "actor", "reason", "change_id")
    list_filter = ("dataset",)
    ordering = ("-removed_at", "-id")
    readonly_fields = ("dataset", "row_id", "symbol", "row", "reason", "user", "actor", "removed_at", "change_id")


# --- the removal action on the dataset changelists ---------------------------------------------------


@admin.action(description="Remove selected versions (audited)", permissions=["remove_versions"])
def remove_versions(modeladmin, request, queryset):
    """Confirmation page with a reason; on confirm, ``versions_remove`` (all or nothing)."""
    spec = dataset_of_model(modeladmin.model)
    if not request.user.has_perm(dataset_permission(spec.name, "delete")):
        raise PermissionDenied
    ids = list(queryset.order_by("id").values_list("id", flat=True)[: MAX_SELECTED + 1])
    if len(ids) > MAX_SELECTED:
        modeladmin.message_user(
            request,
            f"Select at most {MAX_SELECTED} versions to remove here (manage.py remove_versions takes more).",
            messages.ERROR,
        )
        return None
    reason = request.POST.get("reason", "").strip()
    if request.POST.get("confirm") == "yes":
        try:
            result = versions_remove(dataset=spec.name, ids=ids, reason=reason, user=request.user)
        except RemovalError as exc:
            modeladmin.message_user(request, str(exc), messages.ERROR)
        else:
            modeladmin.message_user(
                request,
                f"Removed {len(result.removed)} version(s) of {spec.name} ({', '.join(result.symbols)}),"
                f" audited; the consumers follow (change-log entries {', '.join(map(str, result.change_ids))}).",
                messages.SUCCESS,
            )
            return None
        if reason:
            return None
    # instants as text: a poisoned row's known_at may lie past what Python can hold
    rows = (
        modeladmin.model.objects.filter(id__in=ids)
        .order_by("id")
        .annotate(time_text=Cast("time", TextField()), known_text=Cast("known_at", TextField()))
        .values_list("id", spec.symbol_column, "time_text", "known_text")
    )
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Remove versions (audited)",
        "opts": modeladmin.model._meta,
        "rows": list(rows),
        "ids": ids,
        "reason": reason,
        "missing_reason": request.POST.get("confirm") == "yes" and not reason,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "dataset": spec.name,
    }
    return TemplateResponse(request, "admin/timeseries/remove_versions.html", context)
