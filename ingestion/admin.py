"""Upload form, live job progress, and the quarantine viewer. Thin: every action calls a service."""
from __future__ import annotations

import csv
import json

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from ingestion import uploads
from ingestion.models import Load, RejectedRow, Upload
from timeseries.datasets import DATASETS
from timeseries.timeparse import parse_interval


class UploadForm(forms.ModelForm):
    dataset = forms.ChoiceField(choices=[(d, d) for d in DATASETS])
    bar_interval_text = forms.CharField(
        label="Bar interval", initial="1min", required=False, help_text="market data only: 1min, 5min, 1h, 1d …"
    )
    on_error = forms.ChoiceField(
        choices=[("reject", "reject the whole file if any row is bad"), ("skip", "load good rows, quarantine bad ones")]
    )

    class Meta:
        model = Upload
        fields = ("dataset", "file", "on_error")

    def clean_bar_interval_text(self):
        text = self.cleaned_data.get("bar_interval_text") or "1min"
        try:
            return parse_interval("bar interval", text)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_file(self):
        file = self.cleaned_data["file"]
        try:
            uploads.upload_check_file(file=file)
        except uploads.UploadError as exc:
            raise forms.ValidationError(str(exc)) from None
        return file


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    form = UploadForm
    change_form_template = "admin/ingestion/upload/change_form.html"
    list_display = ("created_at", "original_name", "dataset", "status", "percent_done", "inserted", "revised", "duplicates", "rejected", "uploaded_by")
    list_filter = ("dataset", "status")
    list_select_related = ("uploaded_by",)
    readonly_fields = (
        "dataset", "original_name", "size", "bar_interval", "on_error", "uploaded_by", "status", "percent", "rows_read",
        "inserted", "revised", "duplicates", "rejected", "error", "quarantine", "replay", "attempts", "created_at", "heartbeat_at", "finished_at",
    )

    @admin.display(description="progress")
    def percent_done(self, obj: Upload) -> str:
        return f"{obj.percent:.0f}%"

    @admin.display(description="quarantined rows")
    def quarantine(self, obj: Upload) -> str:
        if not obj.load_id or not obj.rejected:
            return "none"
        listing = reverse("admin:ingestion_rejectedrow_changelist") + f"?load__id__exact={obj.load_id}"
        download = reverse("admin:ingestion_upload_rejected_csv", args=[obj.pk])
        return format_html('<a href="{}">{} rows</a> · <a href="{}">download CSV</a>', listing, obj.rejected, download)

    @admin.display(description="replay shortcut")
    def replay(self, obj: Upload) -> str:
        return (obj.load.replay_note or "—") if obj.load_id else "—"  # ingestion/replay.py: taken or why not

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("dataset", "file", "bar_interval_text", "on_error")
        return self.readonly_fields

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) if obj is None else request.user.is_staff

    def save_model(self, request, obj, form, change):
        if change:
            return
        created = uploads.upload_create(
            dataset=form.cleaned_data["dataset"], file=form.cleaned_data["file"],
            bar_interval=form.cleaned_data["bar_interval_text"], on_error=form.cleaned_data["on_error"], user=request.user,
        )
        obj.pk = created.pk
        messages.info(request, "Upload queued: a worker is loading it; this page shows its progress.")

    def response_add(self, request, obj, post_url_continue=None):
        """After an upload, show its page: that is where its progress appears."""
        return HttpResponseRedirect(reverse("admin:ingestion_upload_change", args=[obj.pk]))

    def get_urls(self):
        return [
            path("<int:pk>/progress/", self.admin_site.admin_view(self.progress_view), name="ingestion_upload_progress"),
            path("<int:pk>/rejected.csv", self.admin_site.admin_view(self.rejected_csv_view), name="ingestion_upload_rejected_csv"),
        ] + super().get_urls()

    def progress_view(self, request, pk: int):
        upload = get_object_or_404(Upload, pk=pk)
        fields = ("status", "percent", "rows_read", "inserted", "revised", "duplicates", "rejected", "error")
        return JsonResponse({f: getattr(upload, f) for f in fields} | {"finished": upload.status in ("done", "failed")})

    def rejected_csv_view(self, request, pk: int):
        upload = get_object_or_404(Upload, pk=pk)
        return rejected_rows_csv(RejectedRow.objects.filter(load_id=upload.load_id), f"upload-{pk}-rejected.csv")


def rejected_rows_csv(rows, filename: str) -> HttpResponse:
    """Quarantined rows as CSV: row, column, reason, then the raw values, so they can be fixed and re-sent."""
    rows = list(rows.select_related("load").order_by("row_number", "id"))
    seen = {k for r in rows for k in r.raw}
    spec = DATASETS.get(rows[0].load.dataset) if rows else None
    declared = [*(spec.column_names if spec else ()), "known_at"]
    raw_columns = [c for c in declared if c in seen] + sorted(seen.difference(declared))  # the file's usual order
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(["row_number", "column", "reason", *raw_columns])
    for r in rows:
        values = [json.dumps(v) if isinstance(v, (list, dict)) else ("" if v is None else v) for v in (r.raw.get(c) for c in raw_columns)]
        writer.writerow([r.row_number, r.column, r.reason, *values])
    return response


class RejectedRowInline(admin.TabularInline):
    model = RejectedRow
    extra = 0
    can_delete = False
    fields = ("row_number", "column", "reason", "raw")
    readonly_fields = fields
    max_num = 0


@admin.register(Load)
class LoadAdmin(admin.ModelAdmin):
    list_display = ("started_at", "dataset", "source", "status", "rows_read", "inserted", "revised", "duplicates", "rejected")
    list_filter = ("dataset", "status")
    readonly_fields = [f.name for f in Load._meta.fields]
    inlines = [RejectedRowInline]


@admin.register(RejectedRow)
class RejectedRowAdmin(admin.ModelAdmin):
    list_display = ("load", "row_number", "column", "reason", "raw")
    list_filter = ("column",)
    list_select_related = ("load",)
    raw_id_fields = ("load",)
    readonly_fields = ("load", "row_number", "column", "reason", "raw", "created_at")
    actions = ["download_csv"]

    @admin.action(description="Download selected rows as CSV")
    def download_csv(self, request, queryset):
        return rejected_rows_csv(queryset, "rejected-rows.csv")

    def has_add_permission(self, request):
        return False

from ingestion import admin_influx  # noqa: E402,F401  (InfluxDB backup status page; see that module)
