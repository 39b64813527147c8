"""The symbol page's long tables as escaped HTML rows, built in Python: a few hundred rows through
template variables and the ``date`` filter cost more than every query of the page together."""

from __future__ import annotations

from datetime import UTC, datetime

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from timeseries.formats import decimal_text
from timeseries.views.timeline import insider_side


def _t(t: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return "" if t is None else t.astimezone(UTC).strftime(fmt)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat()


def _f(v, digits: int = 2) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def news_rows_html(rows: list[dict]) -> SafeString:
    def title(n):
        # only http(s) links: a stored url is input data ("javascript:..." must not become a link)
        url = (n["url"] or "").strip()
        if url.lower().startswith(("http://", "https://")):
            return format_html('<a href="{}" rel="noreferrer noopener">{}</a>', url, n["title"])
        return n["title"]

    return format_html_join(
        "\n",
        (
            '<tr data-news-id="{}" data-time="{}"><td>{}</td><td>{}</td><td>{}</td>'
            '<td class="num">{}</td><td class="num">{}</td></tr>'
        ),
        (
            (
                n["news_id"],
                _iso(n["time"]),
                _t(n["time"]),
                title(n),
                n["source"],
                _f(n["impact_score"]),
                _f(n["sentiment"]),
            )
            for n in rows
        ),
    )


def filings_rows_html(rows: list[dict]) -> SafeString:
    def who(f):
        return (
            format_html('{} <span class="muted">({})</span>', f["insider_name"], f["title"])
            if f["title"]
            else f["insider_name"]
        )

    return format_html_join(
        "\n",
        '<tr data-insider="{}" data-filed="{}"><td>{}</td><td>{}</td><td>{}</td><td class="{}">{}</td>'
        '<td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td></tr>',
        (
            (
                f["insider_name"],
                _iso(f["filing_date"]),
                _t(f["filing_date"]),
                _t(f["time"], "%Y-%m-%d"),
                who(f),
                insider_side(f["transaction_type"]),
                f["transaction_type"],
                decimal_text(f["shares"]),
                decimal_text(f["price"]),
                decimal_text(f["value"]),
                f["form_type"],
            )
            for f in rows
        ),
    )


def government_rows_html(rows: list[dict]) -> SafeString:
    return format_html_join(
        "\n",
        '<tr data-time="{}"><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td></tr>',
        ((_iso(g["time"]), _t(g["time"]), g["event_type"], g["description"], _f(g["market_impact"])) for g in rows),
    )
