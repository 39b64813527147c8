"""Admin page "Storage": the storage report (``timeseries.lifecycle.storage_report``) for staff.

Hooked into the admin by one import in ``timeseries/admin.py``: adds the URL
``admin/timeseries/storage/`` to the default admin site and a "Storage report" entry to the
Timeseries section of the admin index and sidebar. Read-only; no full COUNT (row estimates).
"""
from __future__ import annotations

from django.contrib import admin
from django.template.response import TemplateResponse
from django.urls import path, reverse

from timeseries.lifecycle import storage_report, storage_report_lines

URL_NAME = "timeseries_storage"


def storage_view(request):
    report = storage_report()
    context = {
        **admin.site.each_context(request),
        "title": "Storage report",
        "lane": report[0]["lane"] if report else "",
        "lines": storage_report_lines(report=report),
        "report": report,
    }
    return TemplateResponse(request, "admin/timeseries/storage.html", context)


def _install(site: admin.AdminSite) -> None:
    if getattr(site, "_tsm_storage_installed", False):
        return
    site._tsm_storage_installed = True
    get_urls, get_app_list = site.get_urls, site.get_app_list

    def urls():
        return [path("timeseries/storage/", site.admin_view(storage_view), name=URL_NAME)] + get_urls()

    def app_list(request, app_label=None):
        apps = get_app_list(request, app_label)
        if request.user.is_staff:
            for app in apps:
                if app["app_label"] == "timeseries":
                    app["models"].append({
                        "name": "Storage report", "object_name": "StorageReport", "perms": {"view": True},
                        "admin_url": reverse(f"{site.name}:{URL_NAME}"), "add_url": None, "view_only": True,
                    })
        return apps

    site.get_urls, site.get_app_list = urls, app_list


_install(admin.site)
