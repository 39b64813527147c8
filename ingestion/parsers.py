"""CSV / Parquet / NDJSON (optionally gzip) -> Arrow record batches, streamed in chunks.

Formats are recognised by content, not by file name. CSV columns are read as strings so that
``ingestion.checks`` can name every bad value; Parquet and NDJSON keep their types (timestamps in
NDJSON are read as strings so that a naive one is caught, not guessed).
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq

from ingestion.checks import InputError
from ingestion.quarantine import REASON_COLUMN, UNESCAPE_PATTERN
from timeseries.datasets import Dataset

FORMATS = ("csv", "parquet", "ndjson")
BLOCK_SIZE = 8 << 20  # bytes of CSV/NDJSON per Arrow block


def _open(source: str | Path | bytes | IO[bytes]) -> IO[bytes]:
    if isinstance(source, (bytes, bytearray)):
        stream: IO[bytes] = io.BytesIO(source)
    elif isinstance(source, (str, Path)):
        stream = open(source, "rb")
    else:
        stream = source
    head = stream.peek(2)[:2] if hasattr(stream, "peek") else None
    if head is None:
        stream = io.BufferedReader(stream)  # type: ignore[arg-type]
        head = stream.peek(2)[:2]
    if head == b"\x1f\x8b":
        return io.BufferedReader(gzip.GzipFile(fileobj=stream))  # type: ignore[arg-type]
    return stream  # type: ignore[return-value]


def _seekable(source, stream: IO[bytes]):
    """Parquet needs random access: the file itself when it is one (then read row group by row
    group), the bytes when they are in memory already, else a spooled copy (gzip-compressed or
    streamed input) that moves to disk once it is large."""
    compressed = isinstance(getattr(stream, "raw", None), gzip.GzipFile)
    if isinstance(source, (str, Path)) and not compressed:
        return str(source)
    if isinstance(source, (bytes, bytearray)) and not compressed:
        return io.BytesIO(source)
    import shutil
    import tempfile

    spool = tempfile.SpooledTemporaryFile(max_size=64 << 20)
    shutil.copyfileobj(stream, spool, 1 << 20)
    spool.seek(0)
    return spool


def sniff_format(stream: IO[bytes]) -> str:
    head = stream.peek(4096)[:4096]  # type: ignore[attr-defined]
    if head[:4] == b"PAR1":
        return "parquet"
    if head.lstrip()[:1] == b"{":
        return "ndjson"
    if not head.strip():
        raise InputError("the input is empty")
    if b"\x00" in head:
        raise InputError("the input is binary but not Parquet: expected CSV, Parquet or NDJSON")
    return "csv"


def read_batches(
    source: str | Path | bytes | IO[bytes], *, dataset: Dataset, fmt: str | None = None, batch_rows: int = 250_000
) -> Iterator[pa.RecordBatch]:
    """Yield the input as raw record batches. Raises InputError for unreadable input."""
    stream = _open(source)
    fmt = fmt or sniff_format(stream)
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")
    try:
        if fmt == "parquet":
            yield from pq.ParquetFile(_seekable(source, stream)).iter_batches(batch_size=batch_rows)
        elif fmt == "csv":
            yield from _csv_batches(stream)
        else:
            yield from _ndjson_batches(stream, dataset)
    except (pa.ArrowInvalid, EOFError, gzip.BadGzipFile, OSError) as exc:
        raise InputError(f"cannot read the {fmt.upper()} input: {_arrow_message(exc)}") from None


def _arrow_message(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, EOFError):
        return "the compressed input is truncated"
    return text


def _csv_batches(stream: IO[bytes]) -> Iterator[pa.RecordBatch]:
    header = stream.peek(1 << 16)  # type: ignore[attr-defined]
    first_line = header.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace").rstrip("\r")
    try:
        names = next(csv.reader([first_line]), [])
    except csv.Error as exc:
        raise InputError(f"cannot read the CSV header: {exc}") from None
    names = [n.strip() for n in names]
    reader = pcsv.open_csv(
        stream,
        read_options=pcsv.ReadOptions(block_size=BLOCK_SIZE, use_threads=True),
        parse_options=pcsv.ParseOptions(newlines_in_values=False),
        convert_options=pcsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, strings_can_be_null=False, quoted_strings_can_be_null=False
        ),
    )
    renamed = None
    for batch in reader:
        if renamed is None:
            renamed = [n.strip() for n in batch.schema.names]
        if renamed != batch.schema.names:
            batch = pa.RecordBatch.from_arrays(batch.columns, names=renamed)
        if REASON_COLUMN in renamed:
            batch = _from_rejected_rows_file(batch)
        yield batch


def _from_rejected_rows_file(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A tsm rejected-rows file (ingestion/quarantine.py), fixed and sent again: without its reason
    column, and without the protective ``'`` its download put before cells that begin ``= + - @``."""
    names = [n for n in batch.schema.names if n != REASON_COLUMN]
    columns = [pc.replace_substring_regex(batch.column(n), pattern=UNESCAPE_PATTERN, replacement=r"\1") for n in names]
    return pa.RecordBatch.from_arrays(columns, names=names)


# Arrow's JSON reader recurses into nested values: some 20,000 levels ("[[[[…") crash the whole process
# (a segmentation fault, not an exception). No row nests deeper than a list column, so a line nesting
# deeper than this is refused before Arrow sees it.
MAX_JSON_DEPTH = 100


class _NestingGuard:
    """A binary stream that raises OSError once any NDJSON line opens more than MAX_JSON_DEPTH brackets.
    Brackets inside strings are counted too (cheaply, vectorised): only a value holding more than 100
    unbalanced ones could be refused wrongly."""

    def __init__(self, stream: IO[bytes]):
        self._stream = stream
        self._depth = 0  # of the line the previous chunk ended in
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if data:
            self._check(data)
        return data

    def _check(self, data: bytes) -> None:
        codes = np.frombuffer(data, np.uint8)
        step = (codes == ord("[")).astype(np.int64) + (codes == ord("{")) - (codes == ord("]")) - (codes == ord("}"))
        depth = np.cumsum(step) + self._depth
        newlines = codes == ord("\n")
        if newlines.any():  # each line starts again at depth 0
            last = np.maximum.accumulate(np.where(newlines, np.arange(len(codes)), -1))
            depth = depth - np.where(last >= 0, depth[np.maximum(last, 0)], 0)
        if depth.max(initial=0) > MAX_JSON_DEPTH:
            raise OSError(f"a value nests deeper than {MAX_JSON_DEPTH} levels of [ and {{")
        self._depth = int(depth[-1])

    def close(self) -> None:
        self.closed = True


def _ndjson_batches(stream: IO[bytes], dataset: Dataset) -> Iterator[pa.RecordBatch]:
    # pyarrow's JSON reader crashes the process (a segmentation fault, pyarrow 26) when the first value
    # is null: refuse it first (a null on a later line is read as an empty row and refused by the checks)
    if stream.peek(4096)[:4096].lstrip().startswith(b"null"):  # type: ignore[attr-defined]
        raise InputError("cannot read the NDJSON input: the first line is null, not a JSON object")
    time_columns = [dataset.input_name(c.name) for c in dataset.columns if c.kind == "timestamp"] + ["known_at"]
    reader = pjson.open_json(
        _NestingGuard(stream),
        read_options=pjson.ReadOptions(block_size=BLOCK_SIZE),
        parse_options=pjson.ParseOptions(
            explicit_schema=pa.schema([(n, pa.string()) for n in time_columns]),
            unexpected_field_behavior="infer",
        ),
    )
    yield from reader


def rows_to_table(rows: list[dict]) -> pa.Table:
    """Dicts -> Arrow table over the union of their keys (pyarrow's from_pylist would drop keys absent
    from the first row). A column whose values Arrow cannot type together is read as strings."""
    try:  # the common case, typed in one pass by Arrow (keys absent from some rows become nulls)
        fast = pa.array(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        fast = None
    if fast is not None and pa.types.is_struct(fast.type) and fast.null_count == 0 and fast.type.num_fields:
        return pa.Table.from_struct_array(fast)
    names: dict[str, None] = {}
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise InputError(f"row {number}: expected an object, got {type(row).__name__}")
        names.update(dict.fromkeys(row))
    columns = {}
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            columns[name] = pa.array([None if v is None else str(v) for v in values], pa.string())
    return pa.table(columns)


def as_table(data) -> pa.Table:
    """In-memory callers' input as one Arrow table: an Arrow table or batch, a pandas DataFrame or a list of dicts."""
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, list):
        return rows_to_table(data)
    if isinstance(data, pa.Table):
        return data
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return pa.Table.from_pandas(data, preserve_index=False)
    raise TypeError("expected a pyarrow Table, a pandas DataFrame or a list of dicts")


def table_batches(data, *, batch_rows: int = 250_000) -> Iterator[pa.RecordBatch]:
    """In-memory callers: an Arrow table, a pandas DataFrame or a list of dicts."""
    yield from as_table(data).to_batches(max_chunksize=batch_rows)
