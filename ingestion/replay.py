"""The replay shortcut: a file re-sent unchanged is recognised by its bytes and costs no staging.

Why a replay can be skipped (the time model of docs/time-model.md). Let load L have stored file F
(status done, no row rejected). Right after L, for every row r = (key k, known_at a, values v) of F
the version current for (k, a) — the greatest (known_at, recorded_at) among the versions of k with
known_at <= a — has the values v: either L stored r itself, or r was a duplicate of it. Re-sending
F then stores nothing. Later, only a version of k with known_at <= a can change what is current
for (k, a):

* a later correction with the SAME known_at a (a later recorded_at wins the tie) — re-sending r
  becomes a new version again;
* a later version with an EARLIER known_at a' < a — when L found r a duplicate of an older version,
  the new one may now sit between them;
* a later version with a LATER known_at a' > a never does.

The change log (``timeseries_change``) gives event-time spans per series, not known_at, so the
shortcut is conservative: ANY change of the dataset logged after L (id > L.change_watermark) whose
series span overlaps a span L covered sends the file down the normal path, which decides row by row.
Besides, the shortcut is refused when

* the series registry no longer covers L's spans (the rows were wiped or the database was reset),
* the dataset has a retention horizon and L's oldest row is past it (retention deletes rows without
  logging a change, so a replay could put them back),
* L rejected rows (on_error=skip): the replay would have to quarantine them again,
* the dataset resolves rows against other datasets (corporate actions: ``Dataset.resolve``),
* for a dataset whose key has no time (securities), any later change of a series L covered blocks it,
  whatever its event-time span,
* the validation rules changed (``RULES_VERSION`` is part of the key: bump it with ingestion.checks).

Everything runs under the dataset's merge lock, so no merge can slip between the check and the
recorded outcome. The Load records ``replay_of`` and a ``replay_note`` saying why the shortcut was
or was not taken; the admin and ``manage.py ingest`` show it.

The digest is the sha256 of the input's bytes as read (gzip-compressed bytes when compressed). A new
file is hashed while the parser streams it (no second read); a file is read once more up front only
when a finished load of the same dataset, options and byte size exists (a likely replay) — about
0.6 GB/s of sha256 on the 2-core machine, ~2.4 s for the 1.47 GB 10M-bar CSV.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

from django.conf import settings
from django.utils.dateparse import parse_datetime

from ingestion.models import Load
from timeseries.datasets import Dataset, get_dataset
from timeseries.lifecycle import retention_horizon

RULES_VERSION = "1"  # bump when ingestion.checks / known_at rules change: old digests then never match
MAX_SPANS = 20_000  # a load touching more series keeps no spans (no shortcut for its replays)
CHUNK = 4 << 20


class HashingReader(io.RawIOBase):
    """Hashes the bytes as the parser reads them (the digest of a file costs no second read)."""

    def __init__(self, raw: IO[bytes]):
        self.raw = raw
        self.hash = hashlib.sha256()
        self.count = 0
        self.eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.raw.read(len(buffer))
        n = len(data)
        if n:
            buffer[:n] = data
            self.hash.update(data)
            self.count += n
        else:
            self.eof = True
        return n


@dataclass
class Digest:
    """The input's content digest: known up front (pre-hashed) or once the parser has read it all."""

    dataset: str
    bar_interval: timedelta
    on_error: str
    fmt: str | None
    content_sha256: str = ""
    content_bytes: int | None = None
    reader: HashingReader | None = None
    note: str = ""  # why no shortcut was tried, for the Load's replay_note

    def complete(self) -> bool:
        """Whether the whole input was hashed (hash-while-streaming: the parser read up to EOF)."""
        if self.reader is not None and not self.content_sha256:
            if not self.reader.eof or (self.content_bytes is not None and self.reader.count != self.content_bytes):
                return False
            self.content_sha256, self.content_bytes = self.reader.hash.hexdigest(), self.reader.count
        return bool(self.content_sha256)

    def key(self) -> str:
        parts = [
            f"rules={RULES_VERSION}",
            f"dataset={self.dataset}",
            f"bar_interval_us={self.bar_interval // timedelta(microseconds=1)}",
            f"on_error={self.on_error}",
            f"format={self.fmt or 'sniffed'}",
            f"sha256={self.content_sha256}",
        ]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def replay_enabled() -> bool:
    return bool(settings.TSM_INGEST_REPLAY_SHORTCUT)


def _size(stream) -> int | None:
    try:
        if not stream.seekable():
            return None
        here = stream.tell()
        end = stream.seek(0, os.SEEK_END)
        stream.seek(here)
        return end - here
    except (OSError, ValueError, AttributeError):
        return None


def content_hash(stream: IO[bytes]) -> tuple[str, int]:
    """sha256 and size of the rest of ``stream`` (read to its end)."""
    h = hashlib.sha256()
    n = 0
    while chunk := stream.read(CHUNK):
        h.update(chunk)
        n += len(chunk)
    return h.hexdigest(), n


def _likely_replay(digest: Digest, size: int | None) -> bool:
    """A finished load of the same dataset, options and byte size exists: worth hashing up front."""
    if size is None or not replay_enabled():
        return False
    return (
        Load.objects.filter(
            dataset=digest.dataset,
            status=Load.Status.DONE,
            content_bytes=size,
            bar_interval=digest.bar_interval,
            on_error=digest.on_error,
            rejected=0,
        )
        .exclude(replay_key="")
        .exists()
    )


def replay_prepare(
    *, source: str | Path | IO[bytes] | bytes, dataset: str, bar_interval: timedelta, on_error: str, fmt: str | None
) -> tuple[str | Path | IO[bytes] | bytes, Digest, IO[bytes] | None]:
    """(what the parser should read, its Digest, a file to close afterwards).

    Hashes up front when cheap or when a replay is likely; otherwise wraps the input so the parser's
    own read computes the digest.
    """
    digest = Digest(dataset=dataset, bar_interval=bar_interval, on_error=on_error, fmt=fmt)
    if isinstance(source, (bytes, bytearray)):
        digest.content_sha256, digest.content_bytes = hashlib.sha256(source).hexdigest(), len(source)
        return source, digest, None
    if isinstance(source, (str, Path)):
        with open(source, "rb") as fh:
            head = fh.read(4)
            size = os.fstat(fh.fileno()).st_size
            # Parquet is read by path (random access): hash it up front, it is compact
            if head == b"PAR1" or _likely_replay(digest, size):
                fh.seek(0)
                digest.content_sha256, digest.content_bytes = content_hash(fh)
                return source, digest, None
        opened = open(source, "rb")
        digest.content_bytes = size
        digest.reader = HashingReader(opened)
        return io.BufferedReader(digest.reader, buffer_size=1 << 20), digest, opened
    size = _size(source)
    if size is not None and _likely_replay(digest, size):
        here = source.tell()
        digest.content_sha256, digest.content_bytes = content_hash(source)
        source.seek(here)
        return source, digest, None
    digest.content_bytes = size
    digest.reader = HashingReader(source)
    return io.BufferedReader(digest.reader, buffer_size=1 << 20), digest, None


# --- the check under the merge lock ---------------------------------------------------------------


def spans_encode(bounds: dict[tuple, tuple[datetime, datetime]]) -> list[list[str]] | None:
    if len(bounds) > MAX_SPANS:
        return None
    return [
        [str(k[0]), str(k[1]) if len(k) > 1 else "", lo.isoformat(), hi.isoformat()]
        for k, (lo, hi) in sorted(bounds.items())
    ]


def _arrays(spans: list[list[str]]) -> list[list]:
    return [
        [s[0] for s in spans],
        [s[1] for s in spans],
        [parse_datetime(s[2]) for s in spans],
        [parse_datetime(s[3]) for s in spans],
    ]


def change_watermark(*, cur, dataset: str) -> int:
    """The last change-log id of ``dataset`` (call under its merge lock)."""
    cur.execute("SELECT coalesce(max(id), 0) FROM timeseries_change WHERE dataset = %s", [dataset])
    return cur.fetchone()[0]


def replay_candidate(*, key: str, dataset: str) -> Load | None:
    """The last finished load of the same content and options that can vouch for a replay."""
    return (
        Load.objects.filter(dataset=dataset, replay_key=key, status=Load.Status.DONE, rejected=0)
        .exclude(replay_spans=None)
        .exclude(change_watermark=None)
        .order_by("-finished_at")
        .first()
    )


def replay_blocker(*, cur, dataset: str, earlier: Load) -> str | None:
    """Why re-sending ``earlier``'s file could store something now (None: it cannot). Under the merge lock."""
    spans = earlier.replay_spans or []
    if not spans:
        return f"load {earlier.pk} covered no series"
    spec = get_dataset(dataset)
    if spec.resolve is not None:  # corporate actions: what a row names depends on the security master now
        return f"{spec.name} rows are resolved against other datasets when they are loaded"
    args = _arrays(spans)
    horizon = retention_horizon(dataset=dataset)
    if horizon:
        cur.execute("SELECT min(lo) < now() - %s::interval FROM unnest(%s::timestamptz[]) AS lo", [horizon, args[2]])
        if cur.fetchone()[0]:
            return (
                f"part of load {earlier.pk}'s rows is past the {horizon} retention horizon"
                " (retention may have removed them)"
            )
    cur.execute(
        """
        SELECT n.symbol, n.subkey FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[])
                                    AS n(symbol, subkey, lo, hi)
        LEFT JOIN timeseries_series s ON s.dataset = %s AND s.symbol = n.symbol AND s.subkey = n.subkey
        WHERE s.dataset IS NULL OR s.first_time > n.lo OR s.last_time < n.hi
        LIMIT 1
        """,
        [*args, dataset],
    )
    row = cur.fetchone()
    if row:
        return (
            f"the stored series {'/'.join(filter(None, row))} no longer covers load {earlier.pk}'s span (data removed?)"
        )
    cur.execute(
        """
        SELECT c.id, c.symbol, c.subkey, c.recorded_at
        FROM timeseries_change c
        JOIN unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[]) AS n(symbol, subkey, lo, hi)
          ON c.symbol = n.symbol AND c.subkey = n.subkey AND (%s OR (c.first_time <= n.hi AND c.last_time >= n.lo))
        WHERE c.dataset = %s AND c.id > %s
        ORDER BY c.id LIMIT 1
        """,
        # a key without time (a security): a version with another time is still a version of the key,
        # so any later change of the series counts, whatever its span
        [*args, not spec.time_keyed, dataset, earlier.change_watermark],
    )
    row = cur.fetchone()
    if row:
        return (
            f"change {row[0]} ({'/'.join(filter(None, row[1:3]))}, recorded {row[3].isoformat()}) came after load "
            f"{earlier.pk} and overlaps its span"
        )
    return None


def resent_carry(*, cur, spec: Dataset, earlier: Load, load_id) -> None:
    """List on a load answered by the shortcut the rows of ``earlier`` that were re-sends or were kept
    as outranked: replayed, each is a re-send of that superseded or outranked version (no change since
    means the same versions are current), so staff see the same keys."""
    cur.execute(
        """
        INSERT INTO ingestion_resentrow (load_id, key, known_at, kind, current_recorded_at)
        SELECT %(load)s, key, known_at, kind, current_recorded_at FROM ingestion_resentrow WHERE load_id = %(earlier)s
        UNION ALL
        SELECT %(load)s, (SELECT jsonb_object_agg(k, o.row -> k) FROM unnest(%(key)s::text[]) k), known_at,
               'outranked', outranked_by
        FROM timeseries_outranked_version o WHERE dataset = %(dataset)s AND load_id = %(earlier)s
        """,
        {"load": load_id, "earlier": earlier.pk, "dataset": earlier.dataset, "key": list(spec.key)},
    )
