"""Hypothesis strategies for hostile input: symbols, instants, numbers, intervals, headers, bodies.

Each mixes a few well-formed values (so that the deeper code runs) with the edges and the garbage a
careless or hostile client sends: lone surrogates, NUL and control characters, path tricks, 400-digit
numbers, NaN and infinity, booleans where numbers go, years 0001 and 9999, naive and +24:00 times.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import strategies as st

from timeseries.datasets import DATASETS

NASTY = [
    "",
    " ",
    "\x00",
    "\t\n",
    "\ud800",
    "a\udfffb",
    "\u202e",
    "\ufeff",
    "🙂",
    "ß",
    "İ",
    "../..",
    "..",
    "/",
    "A/B",
    "A//B",
    "X?Y#Z",
    "A B",
    "%00",
    "%2F",
    "' OR 1=1--",
    '"; DROP TABLE x;--',
    "<script>alert(1)</script>",
    "{{7*7}}",
    "=cmd|' /C calc'!A0",
    "9" * 400,
    "-0",
    "1e309",
    "nan",
    "NaN",
    "inf",
    "-Infinity",
    "true",
    "null",
    "[]",
    "{}",
    "\\",
    "\\ud800",
    "x" * 5000,
]

# any code point, surrogates and control characters included (Hypothesis leaves surrogates out by default)
any_char = st.characters(codec=None, exclude_categories=())
surrogate = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)  # half a UTF-16 pair: not a character
with_a_lone_surrogate = st.builds(lambda a, c, b: a + c + b, st.text(max_size=3), surrogate, st.text(max_size=3))
hostile_text = st.one_of(st.sampled_from(NASTY), st.text(any_char, max_size=40), with_a_lone_surrogate)

plausible_symbols = st.from_regex(r"[A-Z]{1,5}([./][A-Z]{1,3})?", fullmatch=True)
symbols = st.one_of(st.sampled_from(["AAPL", "MSFT", "BRK/B", "BRK.B"]), plausible_symbols, hostile_text)

EDGE_INSTANTS = [
    "0001-01-01T00:00:00Z",
    "0999-12-31T23:59:59Z",
    "1000-01-01T00:00:00Z",
    "9998-12-31T23:59:59Z",
    "9999-12-31T23:59Z",
    "9999-12-31T23:59:59.999999+00:00",
    "2024-02-30T00:00Z",
    "2024-03-01T25:00Z",
    "2024-03-01T14:30:00+24:00",
    "2024-03-01T14:30:00-23:59",
    "2024-03-01T14:30:00",
    "2024-03-01",
    "2024-03-01T14:30:00.1234567Z",
    "1709303400",
    "2024-W09-5T14:30Z",
    "+002024-03-01T14:30Z",
    "2024-03-01T14:30:00Z\x00",
    "２０２４-03-01T14:30Z",
]
offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
aware = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets)
instants = st.one_of(
    st.sampled_from(EDGE_INSTANTS),
    aware.map(lambda d: d.isoformat()),
    st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2024, 12, 31)).map(lambda d: d.isoformat()),
    hostile_text,
)

numbers = st.one_of(
    st.integers(-(2**80), 2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, allow_infinity=False, places=6).map(str),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.booleans(),
    st.none(),
    st.sampled_from(["1e309", "-1e-400", "0x10", "1_000", " 12 ", "١٢", "1,5", "10.123456789012345678901234567890"]),
    hostile_text,
)

intervals = st.one_of(
    st.sampled_from(
        [
            "1min",
            "5 min",
            "30s",
            "1h",
            "1d",
            "366d",
            "367d",
            "0min",
            "99999999999999d",
            "1000000000D",
            "31622400000000us",
            "-1d",
            "1 fortnight",
        ]
    ),
    st.builds(
        lambda n, u: f"{n}{u}", st.integers(0, 10**20), st.sampled_from(["us", "ms", "s", "min", "h", "d", "days", "y"])
    ),
    hostile_text,
)

# a JSON value of any shape, for the places a row or a point is expected
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, hostile_text),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
    max_leaves=8,
)


PLAUSIBLE = {
    "timestamp": st.datetimes(
        min_value=datetime(2024, 1, 1), max_value=datetime(2024, 12, 31), timezones=st.just(UTC)
    ).map(lambda d: d.isoformat()),
    "text": st.from_regex(r"[a-z]{1,8}", fullmatch=True),
    "text[]": st.lists(st.from_regex(r"[a-z]{1,5}", fullmatch=True), max_size=3),
    "bool": st.booleans(),
    "int": st.integers(0, 10**6),
    "bigint": st.integers(0, 10**12),
    "float": st.floats(-1, 1),
}
plausible_numbers = st.decimals(min_value=1, max_value=1000, places=2).map(str)


def _mostly(good, bad):
    return st.one_of(good, good, good, bad)  # three in four values plausible: most rows reach the deeper checks


def row_of(dataset: str):
    """A row for ``dataset``: each column mostly a plausible value, else a hostile one; sometimes a column
    missing or an unknown one added."""
    spec = DATASETS[dataset]
    hostile = {"timestamp": instants, "text": hostile_text, "text[]": json_values, "bool": json_values}
    columns = {  # as the input names them (listed_at, ex_date)
        spec.input_name(c.name): _mostly(PLAUSIBLE.get(c.kind, plausible_numbers), hostile.get(c.kind, numbers))
        for c in spec.columns
    }
    for name in ("symbol", *spec.resolved_columns):
        if name in columns:
            columns[name] = _mostly(plausible_symbols, symbols)
    required = {spec.input_name(c.name) for c in spec.columns if c.name in spec.series or c.kind == "timestamp"}
    return st.fixed_dictionaries(
        {n: s for n, s in columns.items() if n in required},
        optional={
            **{n: s for n, s in columns.items() if n not in required},
            "known_at": _mostly(PLAUSIBLE["timestamp"], instants),
            "bogus": json_values,
        },
    )


def dataset_rows(dataset: str):
    return st.lists(row_of(dataset), min_size=1, max_size=4)


def to_json(rows) -> bytes:
    return json.dumps(rows, default=str).encode("utf-8", "surrogatepass")


def to_ndjson(rows) -> bytes:
    return "\n".join(json.dumps(r, default=str) if isinstance(r, dict) else json.dumps(r) for r in rows).encode(
        "utf-8", "surrogatepass"
    )


def to_csv(rows) -> bytes:
    names = list(dict.fromkeys(k for r in rows if isinstance(r, dict) for k in r))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(names)
    for row in rows:
        writer.writerow([("" if row.get(n) is None else str(row.get(n))) for n in names])
    return out.getvalue().encode("utf-8", "surrogatepass")  # a lone surrogate becomes invalid UTF-8 bytes


ENCODERS = {
    "json": (to_json, "application/json"),
    "ndjson": (to_ndjson, "application/x-ndjson"),
    "csv": (to_csv, "text/csv"),
}

CONTENT_TYPES = [
    "application/json",
    "application/x-ndjson",
    "text/csv",
    "text/csv; charset=utf-8",
    "application/json; charset=latin-1",
    "application/vnd.apache.parquet",
    "application/vnd.apache.arrow.stream",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "multipart/form-data; boundary=x",
    "text/plain",
    "*/*",
    "application/json; charset=nope",
    "",
]
latin1_text = st.text(st.characters(max_codepoint=255), max_size=60)  # header values as a WSGI server hands them over

headers = st.fixed_dictionaries(
    {},
    optional={
        "CONTENT_TYPE": st.one_of(st.sampled_from(CONTENT_TYPES), latin1_text),
        "CONTENT_LENGTH": st.one_of(st.integers(-5, 10**12).map(str), latin1_text),
        "HTTP_TRANSFER_ENCODING": st.one_of(
            st.sampled_from(["chunked", "gzip", "chunked, gzip", "identity"]), latin1_text
        ),
        "HTTP_ACCEPT": st.one_of(
            st.sampled_from(
                [
                    "*/*",
                    "text/csv",
                    "application/json",
                    "text/html",
                    "application/xml",
                    "application/vnd.apache.parquet;q=0.5, */*;q=0",
                ]
            ),
            latin1_text,
        ),
        "HTTP_AUTHORIZATION": st.one_of(
            st.sampled_from(["Bearer", "Bearer x y", "Token ", "Basic Zm9vOmJhcg=="]), latin1_text
        ),
        "HTTP_COOKIE": latin1_text,
        "HTTP_X_CSRFTOKEN": latin1_text,
        "HTTP_ACCEPT_ENCODING": latin1_text,
        "HTTP_ACCEPT_LANGUAGE": latin1_text,
        "HTTP_IF_NONE_MATCH": latin1_text,
        "HTTP_RANGE": latin1_text,
        "HTTP_X_FORWARDED_FOR": latin1_text,
        "HTTP_HOST": st.sampled_from(["testserver", "evil.example", "testserver:99999", "[::1", ""]),
    },
)
