from django.contrib import admin

from ingestion.models import Load, RejectedRow


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
    list_display = ("load", "row_number", "column", "reason")
    list_select_related = ("load",)
    raw_id_fields = ("load",)
    readonly_fields = ("load", "row_number", "column", "reason", "raw", "created_at")
