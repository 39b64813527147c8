"""Admin page of a key's version history (sources, status, why) with "make this version current again",
and the list of re-sent rows. Thin: ``ingestion.versions`` does the work.

* ``/admin/ingestion/load/versions/<dataset>/?symbol=…&time=…`` (every key column of the dataset):
  needs the view permission of the dataset's model; the button "make this version current again"
  (a POST to ``…/versions/<dataset>/reassert/``, CSRF-protected) needs its change permission.
* The re-sent rows of the loads (``ResentRow``): a read-only list (``ingestion.view_resentrow``),
  each row linking to its key's history.

The URLs are the Load admin's (``LoadAdmin.get_urls`` in ingestion/admin.py adds ``history_urls``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST

from ingestion.checks import InputError
from ingestion.loader import LoadRejected
from ingestion.models import ResentRow
from ingestion.versions import (
    VersionError,
    VersionInfo,
    key_text,
    version_find,
    version_history,
    version_key_params,
    version_key_parse,
    version_reassert,
)
from timeseries import params
from timeseries.admin_base import ReadOnlyModelAdmin
from timeseries.admin_storage import dataset_permission
from timeseries.datasets import DATASETS, Dataset
from timeseries.formats import decimal_text
from timeseries.rules import format_instant

URL_NAME = "ingestion_load_versions"
REASSERT_URL_NAME = "ingestion_load_versions_reassert"
TEMPLATE = "admin/ingestion/load/versions.html"


def history_urls(site: admin.AdminSite) -> list:
    """The history page and its POST action, for ``LoadAdmin.get_urls``."""
    return [
        path("versions/<str:dataset>/", site.admin_view(history_view), name=URL_NAME),
        path("versions/<str:dataset>/reassert/", site.admin_view(reassert_view), name=REASSERT_URL_NAME),
    ]


def history_url(dataset: str, key: dict) -> str:
    return reverse(f"admin:{URL_NAME}", args=[dataset]) + "?" + urlencode(version_key_params(dataset, key))


def _dataset(name: str) -> Dataset:
    spec = DATASETS.get(name)
    if spec is None:
        raise Http404(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}")
    return spec


def may_view(user, spec: Dataset) -> bool:
    return user.has_perm(dataset_permission(spec.name, "view")) or may_change(user, spec)


def may_change(user, spec: Dataset) -> bool:
    return user.has_perm(dataset_permission(spec.name, "change"))


# --- the page -----------------------------------------------------------------------------------------


def value_text(value: object) -> str:
    """A stored or sent value as the page shows it (exact decimals, UTC instants, lists comma-separated)."""
    if value is None:
        return "—"
    if value == "":
        return '""'
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, datetime):
        return format_instant(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ", ".join(value_text(v) for v in value) or "(none)"
    return str(value)


def _line(request, spec: Dataset, version: VersionInfo) -> dict:
    load = version.load
    may_open_load = load is not None and request.user.has_perm("ingestion.view_load")
    known_at, recorded_at = format_instant(version.known_at), format_instant(version.recorded_at)
    return {
        "version": version,
        "known_at": known_at,  # exact (the form's hidden fields); shown as day and time on two lines
        "known_at_day": known_at[:10],
        "known_at_time": known_at[11:],
        "recorded_at": recorded_at,
        "recorded_at_day": recorded_at[:10],
        "recorded_at_time": recorded_at[11:],
        "feed": version.feed or "(unnamed)",
        "load": load,
        "load_url": reverse("admin:ingestion_load_change", args=[load.pk]) if may_open_load else "",
        "values": [(name, value_text(value)) for name, value in version.values.items()],
    }


def _render(request, spec: Dataset, *, key=None, history=None, error: str = "", status: int = 200):
    given = {name: request.GET.get(name, "") for name in spec.key}
    if key is not None:
        given = version_key_params(spec.name, key)
    context = {
        **admin.site.each_context(request),
        "title": f"Version history: {spec.name}" + (f" {key_text(spec, key)}" if key is not None else ""),
        "dataset": spec,
        "key_fields": [(name, given.get(name, ""), spec.column(name).kind) for name in spec.key],
        "key": key,
        "lines": [_line(request, spec, v) for v in history] if history is not None else None,
        "may_reassert": may_change(request.user, spec),
        "error": error,
        "changelist_url": reverse(f"admin:{spec.model._meta.app_label}_{spec.model._meta.model_name}_changelist"),
    }
    return TemplateResponse(request, TEMPLATE, context, status=status)


@require_GET
def history_view(request, dataset: str):
    spec = _dataset(dataset)
    if not may_view(request.user, spec):
        raise PermissionDenied
    if not any(name in request.GET for name in spec.key):
        return _render(request, spec)  # the empty form is not an error
    try:
        key = version_key_parse(spec.name, request.GET)
    except params.ParameterError as exc:
        return _render(request, spec, error=str(exc), status=400)
    return _render(request, spec, key=key, history=version_history(spec.name, key))


@require_POST
def reassert_view(request, dataset: str):
    spec = _dataset(dataset)
    if not may_change(request.user, spec):
        raise PermissionDenied
    try:
        key = version_key_parse(spec.name, request.POST)
        known_at = params.instant("known_at", (request.POST.get("known_at") or "").strip())
        recorded_at = params.instant("recorded_at", (request.POST.get("recorded_at") or "").strip())
    except params.ParameterError as exc:
        return _render(request, spec, error=str(exc), status=400)
    history = version_history(spec.name, key)
    version = version_find(history, known_at=known_at, recorded_at=recorded_at)
    if version is None:
        error = (
            f"no version of {key_text(spec, key)} known at {format_instant(known_at)} and recorded at"
            f" {format_instant(recorded_at)}: nothing stored"
        )
        return _render(request, spec, key=key, history=history, error=error, status=400)
    try:
        result = version_reassert(spec.name, version, request.user)
    except VersionError as exc:
        messages.error(request, str(exc))
    except (LoadRejected, InputError) as exc:
        messages.error(request, f"Nothing stored: the loader refused the version ({exc}).")
    else:
        if result.inserted or result.revised:
            messages.success(
                request,
                format_html(
                    "Made current again for known_at {}: the version recorded at {} ({}), stored anew at {} by "
                    '<a href="{}">load {}</a>.',
                    format_instant(version.known_at),
                    format_instant(version.recorded_at),
                    version.feed or "unnamed feed",
                    format_instant(result.recorded_at),
                    reverse("admin:ingestion_load_change", args=[result.load_id]),
                    result.load_id,
                ),
            )
        else:
            messages.warning(request, f"Nothing stored: the loader found the version a duplicate ({result.counts()}).")
    return HttpResponseRedirect(history_url(spec.name, key))


# --- re-sent rows ---------------------------------------------------------------------------------------


def _resent_key(obj: ResentRow) -> dict:
    return obj.key if isinstance(obj.key, dict) else {}


@admin.register(ResentRow)
class ResentRowAdmin(ReadOnlyModelAdmin):
    """Input rows a load did not store because they equal a superseded or outranked version. Read-only."""

    list_display = ("load", "kind", "key_shown", "known_at", "current_recorded_at", "history")
    list_filter = ("kind",)
    list_select_related = ("load",)
    show_full_result_count = False
    readonly_fields = ("load", "kind", "key_shown", "known_at", "current_recorded_at", "history")
    fields = readonly_fields

    @admin.display(description="key")
    def key_shown(self, obj: ResentRow) -> str:
        return ", ".join(f"{name} {value}" for name, value in _resent_key(obj).items())

    @admin.display(description="version history")
    def history(self, obj: ResentRow) -> str:
        spec = DATASETS.get(obj.load.dataset)
        key = _resent_key(obj)
        if spec is None or any(name not in key for name in spec.key):
            return "—"
        url = reverse(f"admin:{URL_NAME}", args=[spec.name]) + "?" + urlencode({n: key[n] for n in spec.key})
        return format_html('<a href="{}">versions</a>', url)
