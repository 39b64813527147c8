"""The input's batches as the loader stages them: validated, sorted by key, with ``row_no`` and ``multi``
(the mask of keys repeated in the batch), and the per-series event-time spans that prove rows new."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ingestion.checks import InputError, check_columns, prepare_batch, prepared_as_is
from ingestion.loader.run import LoadRun, Quarantine
from timeseries.datasets import Dataset


def stage_columns(spec: Dataset) -> list[str]:
    return [*spec.column_names, "known_at", "row_no", "multi"]


@dataclass
class SeriesRanges:
    """Per-series event-time spans of each staged batch, to prove which rows can be appended as is."""

    spans: dict[tuple, list[tuple[datetime, datetime]]] = field(default_factory=dict)
    any_multi: bool = False

    def add(self, table: pa.Table, spec: Dataset) -> None:
        """Note the spans of one key-sorted batch in staging columns (``multi`` marks repeated keys)."""
        self.any_multi |= bool(pc.any(table.column("multi")).as_py())
        agg = table.group_by(list(spec.series)).aggregate([("time", "min"), ("time", "max")])
        keys = zip(*(agg.column(c).to_pylist() for c in spec.series))
        for key, lo, hi in zip(keys, agg.column("time_min").to_pylist(), agg.column("time_max").to_pylist()):
            self.spans.setdefault(key, []).append((lo, hi))

    def straddling(self) -> set[tuple]:
        """Series whose batches overlap in event time: a key of theirs may sit in two batches."""
        out = set()
        for key, spans in self.spans.items():
            spans.sort()
            if any(a[1] >= b[0] for a, b in zip(spans, spans[1:])):
                out.add(key)
        return out

    def union(self, other: SeriesRanges | None) -> SeriesRanges:
        if other is None:
            return self
        spans = {k: list(v) for k, v in self.spans.items()}
        for key, more in other.spans.items():
            spans.setdefault(key, []).extend(more)
        return SeriesRanges(spans=spans, any_multi=self.any_multi or other.any_multi)

    def bounds(self) -> dict[tuple, tuple[datetime, datetime]]:
        return {k: (min(s[0] for s in v), max(s[1] for s in v)) for k, v in self.spans.items()}


def sort_by_key(table: pa.Table, key: tuple[str, ...]) -> tuple[pa.Table, np.ndarray]:
    """``table`` sorted by ``key``, and the mask of its rows whose key occurs more than once.

    Staging rows in key order makes the merge insert into the version index in order (the version
    index starts with the key), instead of touching a different leaf page for every row of a
    time-major file.
    """
    n = table.num_rows
    if n < 2:
        return table, np.zeros(n, dtype=bool)
    ordered = table.take(pc.sort_indices(table, sort_keys=[(k, "ascending") for k in key]))
    same = np.ones(n - 1, dtype=bool)
    for k in key:
        col = ordered.column(k)
        same &= pc.fill_null(pc.equal(col.slice(1), col.slice(0, n - 1)), False).to_numpy(zero_copy_only=False)
    mask = np.zeros(n, dtype=bool)
    mask[1:] |= same
    mask[:-1] |= same
    return ordered, mask


def repeated_keys(table: pa.Table, key: tuple[str, ...]) -> bool:
    """Whether any key occurs more than once in ``table``."""
    return bool(sort_by_key(table.select(list(key)), key)[1].any())


def prepared_batches(
    run: LoadRun, batches: Iterable[pa.RecordBatch], quarantine: Quarantine
) -> Iterator[pa.Table | None]:
    """Each input batch validated (unless ``run.validated``) and sorted by key, in staging columns (with
    ``row_no`` and ``multi``, the mask of keys repeated in the batch); None for a batch with nothing
    to store. Bad rows go to ``quarantine.pending``; in reject mode nothing is yielded after the first."""
    spec, result = run.spec, run.result
    columns = stage_columns(spec)
    row_offset = 0
    for raw in batches:
        if run.validated:
            prepared = prepared_as_is(raw, row_offset=row_offset)
        else:
            if row_offset == 0:
                check_columns([n for n in raw.schema.names], spec)
            prepared = prepare_batch(raw, dataset=spec, ctx=run.ctx, row_offset=row_offset)
        row_offset += prepared.rows_read
        result.rows_read = row_offset
        quarantine.pending.extend(prepared.errors)
        if prepared.table.num_rows and not (run.on_error == "reject" and (result.rejected or quarantine.pending)):
            ordered, multi = sort_by_key(prepared.table, spec.key)
            yield ordered.append_column("multi", pa.array(multi)).select(columns)
        else:
            yield None
    if row_offset == 0:
        raise InputError("the input has no data rows")
