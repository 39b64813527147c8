"""The write heart: validate -> COPY -> one set-based merge, all stored in one transaction.

Two paths, one result (the oracle tests run both):

* direct (``TSM_INGEST_DIRECT``, the default for input that can be read twice; ``loader.direct``):
  one transaction holds the merge lock from the start; each batch's rows *proven new* (key once in the
  batch, series span clear of the registry and of earlier batches) are COPYed straight into the
  dataset, the rest into a staging table merged at the end as below. A staged row that gives a COPYed
  key other values sends the load, rolled back, down the staged path. bench/bench_ingestion.py
  measures both paths.
* staged (``loader.staging``): parsing, validation and COPY into an unlogged staging table happen
  outside the merge transaction.

The merge (``loader.merge``) takes a per-dataset advisory lock, stamps every stored row with one
``recorded_at`` and either

* fast path: appends the staging table as is, when it provably holds no key twice and no key that
  is already stored (per-series time ranges from the series registry do not overlap), or
* revision path: keeps one row per (key, known_at), drops rows equal to the version current for
  their (key, known_at) ("duplicates"), and inserts the rest as new versions ("inserted" for keys
  never seen, "revised" for keys that already had a version).

A crash anywhere leaves the datasets untouched: the merge is one transaction and staging tables are
private to the load (``staging_drop_stale`` drops leftovers; ``loader.maintenance``).

Modules: ``pipeline`` (entry points, the order of a load, the replay shortcut), ``run`` (``LoadRun``:
what every step of one load needs; its quarantine), ``batches`` (validated, key-sorted input batches
and their series spans), ``copying`` (binary COPY in segments), ``staging``, ``direct``, ``merge`` (the
merge SQL), ``outcome`` (``LoadResult``, ``LoadRejected``), ``maintenance``.
"""

from ingestion.loader.batches import repeated_keys, sort_by_key
from ingestion.loader.maintenance import staging_drop_stale
from ingestion.loader.outcome import MAX_REPORTED_ERRORS, ON_ERROR_MODES, LoadRejected, LoadResult, rejected_rows_save
from ingestion.loader.pipeline import ingest_file, ingest_table
from ingestion.loader.run import STAGING_PREFIX

__all__ = [
    "MAX_REPORTED_ERRORS",
    "ON_ERROR_MODES",
    "STAGING_PREFIX",
    "LoadRejected",
    "LoadResult",
    "ingest_file",
    "ingest_table",
    "rejected_rows_save",
    "repeated_keys",
    "sort_by_key",
    "staging_drop_stale",
]
