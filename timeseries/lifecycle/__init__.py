"""Data lifecycle: compression (TimescaleDB lane), retention (both lanes) and the storage report.

Policies come from settings (``TSM_COMPRESS_AFTER``, ``TSM_RETENTION``: dataset -> PostgreSQL interval
or None) and are applied per lane, decided by ``timeseries.capabilities`` only:

* TimescaleDB lane: ``lifecycle_apply`` sets each hypertable's compression layout (segmented by its
  series columns, ordered by event time newest first, then the rest of the key and the version) and
  keeps one compression policy and one retention policy per hypertable in line with the settings.
  The migration and ``manage.py lifecycle_apply`` both call it. The beat task ``retention_run`` also
  drops expired chunks itself (and bumps the dataset generation, so cached answers drop at once);
  TimescaleDB's own retention job does the same when Celery is not running.
* Plain PostgreSQL lane: no compression; ``retention_run`` deletes rows whose event ``time`` is
  older than the horizon in bounded batches (``TSM_RETENTION_BATCH_ROWS`` per DELETE, each batch its
  own short transaction under the dataset's merge lock, bumping the dataset generation).

Rows are removed by event time only: every version of an expired fact goes together. The series
registry (``timeseries_series``) is left as it was: its [first_time, last_time] may then be wider than
what is stored, which the loader and the selectors allow (they treat it as a hint: the loader probes
the table before trusting an overlap, and a selector's probe of an emptied series finds nothing).
The change log is not written: expiring raw rows does not retract rollups or backups derived from them.

Modules: ``policies`` (the settings per dataset, the compression layout), ``jobs`` (TimescaleDB
layouts and policy jobs), ``retention``, ``report`` (the storage report) and ``formatting`` (its
display strings). This package re-exports their public names: ``from timeseries import lifecycle;
lifecycle.retention_apply(...)``.
"""

from timeseries.lifecycle.formatting import bytes_human, storage_report_lines
from timeseries.lifecycle.jobs import FIRST_RUN_DELAY, chunks_compress, lifecycle_apply, lifecycle_remove
from timeseries.lifecycle.policies import (
    CompressionLayout,
    compress_after,
    compression_layout,
    datasets_selected,
    retention_horizon,
)
from timeseries.lifecycle.report import backup_source_register, storage_report
from timeseries.lifecycle.retention import (
    RetentionPreview,
    RetentionResult,
    retention_apply,
    retention_cutoff,
    retention_preview,
    retention_run,
    series_time_range,
)

__all__ = [
    "FIRST_RUN_DELAY",
    "CompressionLayout",
    "RetentionPreview",
    "RetentionResult",
    "backup_source_register",
    "bytes_human",
    "chunks_compress",
    "compress_after",
    "compression_layout",
    "datasets_selected",
    "lifecycle_apply",
    "lifecycle_remove",
    "retention_apply",
    "retention_cutoff",
    "retention_horizon",
    "retention_preview",
    "retention_run",
    "series_time_range",
    "storage_report",
    "storage_report_lines",
]
