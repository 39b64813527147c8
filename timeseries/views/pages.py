"""The timeline views: parse parameters, call one builder, render. See the package docstring."""

from __future__ import annotations

from datetime import datetime
from functools import wraps
from pathlib import Path
from urllib.parse import urlencode

import plotly
from django.contrib.auth.views import redirect_to_login
from django.http import FileResponse, Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

from timeseries.rules import is_symbol
from timeseries.views import params as p
from timeseries.views import tables
from timeseries.views import timeline as tl

VIEW_PERMISSION = "timeseries.view_marketdata"
ASSETS = {
    "plotly.min.js": Path(plotly.__file__).parent / "package_data" / "plotly.min.js",
    "timeline.js": Path(__file__).parent / "assets" / "timeline.js",
}
ASSET_VERSION = plotly.__version__


def timeline_access(view):
    """Logged in (else: login page), and staff or ``timeseries.view_marketdata`` (else: 403)."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("login"))
        if not (user.is_active and (user.is_staff or user.has_perm(VIEW_PERMISSION))):
            return render(
                request,
                "timeseries/error.html",
                {
                    "status": 403,
                    "message": f"You need staff status or the {VIEW_PERMISSION} permission to see the timeline.",
                },
                status=403,
            )
        return view(request, *args, **kwargs)

    return wrapper


def _bad_request(request, exc: Exception):
    return render(request, "timeseries/error.html", {"status": 400, "message": str(exc)}, status=400)


def _unknown_symbol(request, q: p.SymbolQuery):
    """404: nothing of this symbol is known at T (rows known only later are not mentioned)."""
    recorded = f" as recorded by {tl.iso(q.recorded_by)}" if q.recorded_by else ""
    return render(
        request,
        "timeseries/error.html",
        {
            "status": 404,
            "message": f"No data for symbol {q.symbol} is known at {tl.iso(q.at)}{recorded}.",
            "overview_url": reverse("timeline-overview") + _query(at=q.at, recorded_by=q.recorded_by),
        },
        status=404,
    )


def _query(**values) -> str:
    return "?" + urlencode(
        {k: (tl.iso(v) if isinstance(v, datetime) else v) for k, v in values.items() if v is not None}
    )


def _redirect_with_at(request, at: datetime):
    query = request.GET.copy()
    query["at"] = tl.iso(at)
    return HttpResponseRedirect(request.path + "?" + query.urlencode())


@timeline_access
def timeline_overview(request):
    if p.needs_at(request.GET):
        return _redirect_with_at(request, tl.default_at())
    try:
        q = p.overview_query_parse(params=request.GET)
    except ValueError as exc:
        return _bad_request(request, exc)
    data = tl.timeline_overview_build(at=q.at, recorded_by=q.recorded_by, sort=q.sort, descending=q.descending)
    base = {"at": q.at, "recorded_by": q.recorded_by}
    columns = [
        (name, label, _query(**base, sort=("-" if q.sort == name and not q.descending else "") + name))
        for name, label in (
            ("symbol", "Symbol"),
            ("time", "Last bar (UTC)"),
            ("close", "Close"),
            ("volume", "Volume"),
            ("sentiment", "Sentiment"),
            ("mentions", "Mentions"),
        )
    ]
    for row in data["rows"]:
        # a stored symbol the rule does not admit (stored before the rule) is shown as text, unlinked
        row["url"] = (
            reverse("timeline-symbol", args=[row["symbol"]]) + _query(**base) if is_symbol(row["symbol"]) else None
        )
    steps = [
        (label, _query(at=q.at + delta, recorded_by=q.recorded_by, sort=request.GET.get("sort")))
        for label, delta in tl.STEPS
    ]
    return render(
        request,
        "timeseries/overview.html",
        {
            **data,
            "columns": columns,
            "steps": steps,
            "replay_url": _query(at=q.at, recorded_by=data["max_recorded_at"], sort=request.GET.get("sort"))
            if data["max_recorded_at"]
            else None,
            "at_iso": tl.iso(q.at),
            "recorded_by_iso": tl.iso(q.recorded_by),
            "max_recorded_at_iso": tl.iso(data["max_recorded_at"]),
        },
    )


@timeline_access
def timeline_symbol(request, symbol: str):
    try:
        p.symbol_check(symbol)
        if p.needs_at(request.GET):
            return _redirect_with_at(request, tl.default_at(symbol=symbol))
        q = p.symbol_query_parse(symbol=symbol, params=request.GET)
        if not tl.symbol_known(symbol=q.symbol, at=q.at, recorded_by=q.recorded_by):
            return _unknown_symbol(request, q)
        data = tl.timeline_symbol_build(
            symbol=q.symbol, at=q.at, start=q.start, end=q.end, since=q.since, recorded_by=q.recorded_by
        )
    except ValueError as exc:
        return _bad_request(request, exc)
    window = {"from": q.start, "to": q.end} if q.explicit_range else {}
    steps = []
    for label, delta in tl.STEPS:
        new_at = q.at + delta
        since = q.at if delta.total_seconds() > 0 else new_at + delta
        steps.append((label, _query(at=new_at, recorded_by=q.recorded_by, since=since, **window)))
    return render(
        request,
        "timeseries/symbol.html",
        {
            **data,
            "steps": steps,
            "window": window,
            "table_rows": tl.TABLE_ROWS,
            "changes_limit": tl.CHANGES_LIMIT,
            "minute_max_days": tl.MINUTE_BARS_MAX_RANGE.days,
            "overview_url": reverse("timeline-overview") + _query(at=q.at, recorded_by=q.recorded_by),
            "replay_url": _query(
                at=q.at, recorded_by=data["max_recorded_at"], since=q.since if q.explicit_since else None, **window
            )
            if data["max_recorded_at"]
            else None,
            "at_iso": tl.iso(q.at),
            "recorded_by_iso": tl.iso(q.recorded_by),
            "since_iso": tl.iso(q.since),
            "start_iso": tl.iso(q.start),
            "end_iso": tl.iso(q.end),
            "max_recorded_at_iso": tl.iso(data["max_recorded_at"]),
            "explicit_range": q.explicit_range,
            "news_table": tables.news_rows_html(data["news"][: tl.TABLE_ROWS]),
            "filings_table": tables.filings_rows_html(data["filings"][: tl.TABLE_ROWS]),
            "government_table": tables.government_rows_html(data["government"][: tl.TABLE_ROWS]),
            "indicator_rows": sorted((k, v) for k, v in data["state"]["indicators"].items() if k != "bars_used"),
            "asset_version": ASSET_VERSION,
        },
    )


def asset(request, name: str):
    """plotly.min.js and the page script, from this site (long-cached; URLs carry the version)."""
    path = ASSETS.get(name)
    if path is None:
        raise Http404(f"no asset {name!r}")
    response = FileResponse(path.open("rb"), content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "public, max-age=86400"
    return response
