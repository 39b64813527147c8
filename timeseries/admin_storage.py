"""Admin page "Storage": the storage report (``timeseries.lifecycle.storage_report``) for staff.

Hooked into the admin by one import in ``timeseries/admin.py``: adds the URL
``admin/timeseries/storage/`` to the default admin site and a "Storage report" entry to the
Timeseries section of the admin index and sidebar. Read-only; no full COUNT (row estimates).

Permissions: the report shows the datasets whose model the user may view (``timeseries.view_marketdata``,
``view_newsevent`` …); staff who may view none get 403 and no index entry.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path, reverse

from timeseries.datasets import DATASETS
from timeseries.lifecycle import storage_report, storage_report_lines

URL_NAME = "timeseries_storage"


def dataset_permission(name: str, action: str) -> str:
    """Django's model permission of a dataset: ``"timeseries.change_marketdata"`` for ``("market_data", "change")``."""
    opts = DATASETS[name].model._meta
    return f"{opts.app_label}.{get_permission_codename(action, opts)}"


def viewable_datasets(user) -> list[str]:
    """The datasets whose model ``user`` may view (view permission, or change, as the admin counts it)."""
    return [
        n
        for n in DATASETS
        if user.has_perm(dataset_permission(n, "view")) or user.has_perm(dataset_permission(n, "change"))
    ]


def storage_view(request):
    datasets = viewable_datasets(request.user)
    if not datasets:
        raise PermissionDenied
    report = storage_report(datasets=datasets)
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
        if request.user.is_staff and viewable_datasets(request.user):
            for app in apps:
                if app["app_label"] == "timeseries":
                    app["models"].append(
                        {
                            "name": "Storage report",
                            "object_name": "StorageReport",
                            "perms": {"view": True},
                            "admin_url": reverse(f"{site.name}:{URL_NAME}"),
                            "add_url": None,
                            "view_only": True,
                        }
                    )
        return apps

    site.get_urls, site.get_app_list = urls, app_list


_install(admin.site)
