"""Admin building blocks shared by the admin modules (a leaf: Django only)."""

from __future__ import annotations

from django.contrib import admin


class ReadOnlyModelAdmin(admin.ModelAdmin):
    """A record nobody edits through the admin (audits, failures, removals): viewing needs the model's
    view permission; adding, changing and deleting are refused to everyone."""

    list_per_page = 100
    show_facets = admin.ShowFacets.NEVER  # facet counts would COUNT the whole table per option

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
