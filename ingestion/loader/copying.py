"""Binary COPY of Arrow tables into one table, in segments (the loader's only way of writing rows)."""

from __future__ import annotations

import sys
import time

import pgpq
import psycopg
import pyarrow as pa
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from timeseries.sqltext import identifiers


class CopySegments:
    """Binary COPY into one table in segments of a few seconds.

    The connection can run nothing else while a COPY is open, so the COPY is closed at *safe points*
    (every SEGMENT_SECONDS, or when the quarantine buffer is full) to write quarantined rows and report
    progress; within a segment PostgreSQL parses while Python prepares the next chunk.
    """

    SEGMENT_SECONDS = 2.0

    def __init__(self, cursor: psycopg.Cursor, table: str, columns: list[str]):
        self.cursor, self.columns = cursor, columns
        self.statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT binary)").format(
            sql.Identifier(table), identifiers(columns)
        )
        self.cm = self.copy = self.encoder = None
        self.opened_at = 0.0

    def write(self, table: pa.Table) -> None:
        table = table.select(self.columns)
        if self.copy is None:
            self.encoder = pgpq.ArrowToPostgresBinaryEncoder(table.schema)
            # a writer thread sends the data (up to psycopg's queue: 1,024 x 128 kB) while this thread
            # prepares the next batch; with the default writer PostgreSQL waited for each batch's encoding
            self.cm = self.cursor.copy(self.statement, writer=QueuedLibpqWriter(self.cursor))
            self.copy = self.cm.__enter__()
            self.copy.write(self.encoder.write_header())
            self.opened_at = time.monotonic()
        for batch in table.to_batches():
            self.copy.write(self.encoder.write_batch(batch))

    def due(self) -> bool:
        return self.copy is not None and time.monotonic() - self.opened_at >= self.SEGMENT_SECONDS

    def close(self) -> None:
        if self.copy is not None:
            self.copy.write(self.encoder.finish())
            cm, self.cm, self.copy = self.cm, None, None
            cm.__exit__(None, None, None)

    def abort(self) -> None:
        if self.cm is not None:
            cm, self.cm, self.copy = self.cm, None, None
            cm.__exit__(*sys.exc_info())
