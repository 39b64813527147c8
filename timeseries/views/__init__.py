"""Browser pages (templates/timeseries/...): thin over ``timeseries.views.timeline`` (which reads only
through ``timeseries/pit/``).

* ``/timeline/?at=T``            market overview: every symbol's state at T, sortable, links.
* ``/timeline/<symbol>/?at=T``   chart of what was known at T (bars, news, filings, government events,
                                 sentiment), time control, what changed since ``since``, state at T.
* ``/timeline/assets/<name>``    plotly.min.js (from the installed ``plotly`` package) and the page script,
                                 served by the site itself: the pages load nothing from another host.

Pages need a logged-in user who is staff or has ``timeseries.view_marketdata``; anonymous users are
sent to the login page. A bad parameter answers 400 with a message naming it.
"""

from timeseries.views.pages import asset, timeline_overview, timeline_symbol

__all__ = ["asset", "timeline_overview", "timeline_symbol"]
