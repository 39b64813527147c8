"""Data-quality curation: set scores (audited), automatic checks, the per-symbol-day report.

- ``curation``: audited score changes (set, apply, lower), accepting the checks' proposals, the
  admin changelist filters and the queryset they select;
- ``checks``: the checks' SQL per suite, spans, running the checks (spans, range, admin rows, the
  change log after the "quality" cursor);
- ``report``: ``quality_report``, what was flagged and curated for one symbol on one day.

This package re-exports their public names: ``from timeseries import quality; quality.quality_scores_set(...)``.
"""

from timeseries.params import GOOD, SUSPECT, CurationError, min_quality_check
from timeseries.quality.checks import (
    BARS_BOUNDS_SQL,
    CHECKS,
    CONTEXT_MARGIN,
    DUPLICATE_TITLE_WINDOW,
    EVAL_MARGIN,
    MARKET_CHECKS_SQL,
    NEWS_CHECKS_SQL,
    QUALITY_CONSUMER,
    SPANS_CTE,
    SPIKE_JUMP,
    SPIKE_NEIGHBOURS_AGREE,
    STALE_BARS,
    SUITE_PREPARE,
    SUITES,
    VOLUME_FACTOR,
    CheckResult,
    Span,
    bars_sessions,
    quality_changes_process,
    quality_checks_range,
    quality_checks_rows,
    quality_checks_run,
    spans_merge,
)
from timeseries.quality.curation import (
    AUDIT_COLUMNS,
    CURATED_DATASETS,
    FILTER_PARAMS,
    RANGE_FILTERS,
    Curation,
    curated_spec,
    curation_filters_apply,
    curation_filters_clean,
    curation_queryset,
    quality_flags_accept,
    quality_scores_apply,
    quality_scores_lower,
    quality_scores_set,
    quality_scores_set_filtered,
)
from timeseries.quality.report import quality_report

__all__ = [
    "AUDIT_COLUMNS",
    "CHECKS",
    "BARS_BOUNDS_SQL",
    "CONTEXT_MARGIN",
    "CURATED_DATASETS",
    "DUPLICATE_TITLE_WINDOW",
    "EVAL_MARGIN",
    "FILTER_PARAMS",
    "GOOD",
    "MARKET_CHECKS_SQL",
    "NEWS_CHECKS_SQL",
    "QUALITY_CONSUMER",
    "RANGE_FILTERS",
    "SUITE_PREPARE",
    "SPANS_CTE",
    "SPIKE_JUMP",
    "SPIKE_NEIGHBOURS_AGREE",
    "STALE_BARS",
    "SUITES",
    "SUSPECT",
    "VOLUME_FACTOR",
    "CheckResult",
    "Curation",
    "CurationError",
    "Span",
    "curated_spec",
    "curation_filters_apply",
    "curation_filters_clean",
    "curation_queryset",
    "min_quality_check",
    "quality_changes_process",
    "quality_checks_range",
    "quality_checks_rows",
    "quality_checks_run",
    "quality_flags_accept",
    "quality_report",
    "quality_scores_apply",
    "quality_scores_lower",
    "quality_scores_set",
    "quality_scores_set_filtered",
    "bars_sessions",
    "spans_merge",
]
