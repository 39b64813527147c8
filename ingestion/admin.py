"""Upload form, live job progress, and the quarantine viewer. Thin: every action calls a service."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from ingestion import admin_versions, quarantine, tasks, uploads
from ingestion.models import Load, RejectedRow, ResentRow, Upload
from timeseries.datasets import DATASETS
from timeseries.rules import FEED_RULE_TEXT, feed_problem
from timeseries.timeparse import parse_interval


class UploadForm(forms.ModelForm):
    dataset = forms.ChoiceField(choices=[(d, d) for d in DATASETS])
    bar_interval_text = forms.CharField(
        label="Bar interval", initial="1min", required=False, help_text="market data only: 1min, 5min, 1h, 1d …"
    )
    on_error = forms.ChoiceField(
        choices=[("reject", "reject the whole file if any row is bad"), ("skip", "load good rows, quarantine bad ones")]
    )
    feed = forms.CharField(
        label="Feed",
        required=False,  # its length too is checked by clean_feed (one rule, one message)
        help_text="where the rows come from, e.g. vendor_x or curation (ranked by TSM_FEED_PRECEDENCE); "
        f"blank: unnamed. {FEED_RULE_TEXT}.",
    )
    reassert = forms.BooleanField(
        label="Re-assert",
        required=False,
        help_text="rows equal to an older version of their key that was since fixed become current again, "
        "undoing the fix. Leave it off for re-deliveries: re-sent old values are then skipped and counted "
        "as re-sends.",
    )

    class Meta:
        model = Upload
        fields = ("dataset", "file", "on_error", "feed", "reassert")

    def clean_bar_interval_text(self):
        text = self.cleaned_data.get("bar_interval_text") or "1min"
        try:
            return parse_interval("bar interval", text)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_feed(self):
        feed = self.cleaned_data.get("feed") or ""
        problem = feed_problem(feed)
        if problem:
            raise forms.ValidationError(problem)
        return feed

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
    list_display = (
        "created_at",
        "original_name",
        "dataset",
        "status",
        "percent_done",
        "feed",
        "inserted",
        "revised",
        "duplicates",
        "resent",
        "outranked",
        "rejected",
        "uploaded_by",
    )
    list_filter = ("dataset", "status")
    list_select_related = ("uploaded_by",)
    readonly_fields = (
        "dataset",
        "original_name",
        "size",
        "bar_interval",
        "on_error",
        "feed",
        "reassert",
        "uploaded_by",
        "status",
        "percent",
        "rows_read",
        "rows_total",
        "bytes_read",
        "inserted",
        "revised",
        "duplicates",
        "resent_keys",
        "outranked",
        "rejected",
        "error",
        "quarantine",
        "replay",
        "attempts",
        "worker",
        "created_at",
        "heartbeat_at",
        "finished_at",
    )

    @admin.display(description="progress")
    def percent_done(self, obj: Upload) -> str:
        return uploads.upload_progress_text(obj)

    @admin.display(description="quarantined rows")
    def quarantine(self, obj: Upload) -> str:
        if not obj.load_id or not obj.rejected:
            return "none"
        listing = reverse("admin:ingestion_rejectedrow_changelist") + f"?load__id__exact={obj.load_id}"
        download = reverse("admin:ingestion_upload_rejected_csv", args=[obj.pk])
        return format_html('<a href="{}">{} rows</a> · <a href="{}">download CSV</a>', listing, obj.rejected, download)

    def _may_read_quarantine(self, request, obj: Upload | None) -> bool:
        """The quarantined raw rows: view on the upload and on the rejected-row model."""
        return self.has_view_permission(request, obj) and self.admin_site._registry[RejectedRow].has_view_permission(
            request
        )

    @admin.display(description="quarantined rows")
    def quarantine_count(self, obj: Upload) -> str:
        """Shown instead of ``quarantine`` to staff who may not read the quarantined raw rows."""
        if not obj.load_id or not obj.rejected:
            return "none"
        return f"{obj.rejected} rows (reading them needs the permission ingestion.view_rejectedrow)"

    @admin.display(description="re-sends of superseded versions")
    def resent_keys(self, obj: Upload) -> str:
        """Rows equal to a version since fixed (or outranked): not stored; the load lists their keys."""
        if not obj.load_id or not obj.resent:
            return str(obj.resent)
        listing = reverse("admin:ingestion_resentrow_changelist") + "?" + urlencode({"load__id__exact": obj.load_id})
        return format_html('{} rows, not stored · <a href="{}">their keys</a>', obj.resent, listing)

    @admin.display(description="re-sends of superseded versions")
    def resent_count(self, obj: Upload) -> str:
        """Shown instead of ``resent_keys`` to staff who may not read the re-sent rows."""
        if not obj.resent:
            return str(obj.resent)
        return f"{obj.resent} rows, not stored (their keys need the permission ingestion.view_resentrow)"

    def _shown_fields(self, request, obj: Upload) -> tuple[str, ...]:
        swaps = {}
        if not self._may_read_quarantine(request, obj):
            swaps["quarantine"] = "quarantine_count"
        if not self.admin_site._registry[ResentRow].has_view_permission(request):
            swaps["resent_keys"] = "resent_count"
        return tuple(swaps.get(f, f) for f in self.readonly_fields)

    @admin.display(description="replay shortcut")
    def replay(self, obj: Upload) -> str:
        return (obj.load.replay_note or "—") if obj.load_id else "—"  # ingestion/replay.py: taken or why not

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("dataset", "file", "bar_interval_text", "on_error", "feed", "reassert")
        return self._shown_fields(request, obj)

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self._shown_fields(request, obj)

    def has_change_permission(self, request, obj=None):
        """An upload is never edited: its page is read-only for everyone (no Save buttons, a POST is
        refused). Seeing it needs ingestion.view_upload (or change_upload); uploading add_upload."""
        return False if obj is not None else super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change):
        if change:
            return
        created = uploads.upload_create(
            dataset=form.cleaned_data["dataset"],
            file=form.cleaned_data["file"],
            bar_interval=form.cleaned_data["bar_interval_text"],
            on_error=form.cleaned_data["on_error"],
            user=request.user,
            feed=form.cleaned_data["feed"],
            reassert=form.cleaned_data["reassert"],
        )
        tasks.upload_enqueue(upload_id=created.pk)
        obj.pk = created.pk
        messages.info(request, "Upload queued: a worker is loading it; this page shows its progress.")

    def response_add(self, request, obj, post_url_continue=None):
        """After an upload, show its page: that is where its progress appears."""
        return HttpResponseRedirect(reverse("admin:ingestion_upload_change", args=[obj.pk]))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The upload page: progress in rows, and a note when no worker is on the upload."""
        upload = Upload.objects.filter(pk=object_id).first() if str(object_id).isdigit() else None
        if upload is not None:
            extra_context = {
                **(extra_context or {}),
                "progress_text": uploads.upload_progress_text(upload),
                "worker_note": uploads.upload_worker_note(upload),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        return [
            path(
                "<int:pk>/progress/", self.admin_site.admin_view(self.progress_view), name="ingestion_upload_progress"
            ),
            path(
                "<int:pk>/rejected.csv",
                self.admin_site.admin_view(self.rejected_csv_view),
                name="ingestion_upload_rejected_csv",
            ),
        ] + super().get_urls()

    def progress_view(self, request, pk: int):
        if not self.has_view_permission(request):  # checked before the lookup: no 404/403 oracle of ids
            raise PermissionDenied
        upload = get_object_or_404(Upload, pk=pk)
        fields = (
            "status",
            "percent",
            "rows_read",
            "rows_total",
            "bytes_read",
            "size",
            "inserted",
            "revised",
            "duplicates",
            "resent",
            "outranked",
            "rejected",
            "error",
            "attempts",
            "feed",
            "reassert",
        )
        return JsonResponse(
            {f: getattr(upload, f) for f in fields}
            | {
                "finished": upload.status in ("done", "failed"),
                "progress": uploads.upload_progress_text(upload),
                "worker_note": uploads.upload_worker_note(upload),
            }
        )

    def rejected_csv_view(self, request, pk: int):
        if not self._may_read_quarantine(request, None):
            raise PermissionDenied
        upload = get_object_or_404(Upload, pk=pk)
        return rejected_rows_csv(
            RejectedRow.objects.filter(load_id=upload.load_id), f"upload-{pk}-rejected.csv", dataset=upload.dataset
        )


def rejected_rows_csv(rows, filename: str, *, dataset: str | None = None) -> HttpResponse:
    """Quarantined rows as a tsm rejected-rows file (ingestion/quarantine.py): one line per input row,
    the dataset's input columns plus the reasons; safe to open in a spreadsheet; re-uploadable once fixed."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    quarantine.rejected_rows_write(
        rows.select_related("load").order_by("load_id", "row_number", "id"), response, dataset=dataset
    )
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
    """Loads are written by the loader: read-only here (view_load).

    The quarantined rows inline needs view_rejectedrow; the link to the re-sent rows view_resentrow.
    Its URLs also hold a key's version history (ingestion/admin_versions.py).
    """

    list_display = (
        "started_at",
        "dataset",
        "source",
        "feed",
        "status",
        "rows_read",
        "inserted",
        "revised",
        "duplicates",
        "resent",
        "outranked",
        "rejected",
    )
    list_filter = ("dataset", "status", "reassert")
    readonly_fields = [
        name for f in Load._meta.fields for name in ((f.name, "resent_rows") if f.name == "resent" else (f.name,))
    ]
    inlines = [RejectedRowInline]

    @admin.display(description="re-sent rows")
    def resent_rows(self, obj: Load) -> str:
        if not obj.resent:
            return "none"
        url = reverse("admin:ingestion_resentrow_changelist") + "?" + urlencode({"load__id__exact": str(obj.pk)})
        return format_html('<a href="{}">{} row(s): their keys and the versions they equal</a>', url, obj.resent)

    @admin.display(description="re-sent rows")
    def resent_rows_count(self, obj: Load) -> str:
        """Shown instead of ``resent_rows`` to staff who may not read the re-sent rows."""
        return f"{obj.resent} (their keys need the permission ingestion.view_resentrow)" if obj.resent else "none"

    def get_readonly_fields(self, request, obj=None):
        if self.admin_site._registry[ResentRow].has_view_permission(request):
            return self.readonly_fields
        return ["resent_rows_count" if f == "resent_rows" else f for f in self.readonly_fields]

    def get_urls(self):
        return admin_versions.history_urls(self.admin_site) + super().get_urls()

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(RejectedRow)
class RejectedRowAdmin(admin.ModelAdmin):
    list_display = ("load", "row_number", "column", "reason", "raw")
    list_filter = ("column",)
    list_select_related = ("load",)
    raw_id_fields = ("load",)
    readonly_fields = ("load", "row_number", "column", "reason", "raw", "created_at")
    actions = ["download_csv"]

    @admin.action(description="Download selected rows as CSV", permissions=["view"])
    def download_csv(self, request, queryset):
        datasets = set(queryset.values_list("load__dataset", flat=True).distinct()[:2])
        if len(datasets) > 1:
            self.message_user(
                request, "Select rows of one dataset: the file's columns are that dataset's.", messages.ERROR
            )
            return None
        return rejected_rows_csv(queryset, "rejected-rows.csv")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # quarantined rows are evidence: fix the file and upload it again


from ingestion import admin_influx  # noqa: E402,F401  (InfluxDB backup status page; see that module)
