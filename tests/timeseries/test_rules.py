"""Properties of the shared input rules (timeseries/rules.py): the symbol rule and the instant ranges."""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import example, given
from hypothesis import strategies as st

from timeseries import rules, timeparse

FIRST = string.ascii_letters + string.digits
REST = FIRST + ".^=_:-"

# segments joined by '/', each starting with a letter or digit, cut to 32 characters (never after a '/')
segment = st.builds(lambda first, rest: first + rest, st.sampled_from(FIRST), st.text(alphabet=REST, max_size=12))
admitted = st.lists(segment, min_size=1, max_size=4).map(lambda parts: "/".join(parts)[:32].rstrip("/"))


@given(admitted)
@example("BRK/B")
@example("EUR/USD")
@example("A.B^C=D_E:F-G")
@example("X" * 32)
@example("A./B^=_:-")
def test_every_symbol_built_from_the_rule_is_admitted(symbol):
    assert rules.symbol_problem(symbol) is None
    assert rules.is_symbol(symbol)
    assert rules.check_symbol("symbol", symbol) == symbol
    assert rules.symbol_message("symbol", symbol) is None


@given(st.text(max_size=40))
@example("X" * 33)
@example("A B")
@example("X?Y")
@example("X#Z")
@example("..")
@example(".A")
@example("ÄPPLE")
@example("")
@example("AAPL\n")
@example("A/../B")
@example("A/")
@example("A//B")
@example("A/.B")
@example("BRK/B")
def test_the_checks_agree_with_the_documented_pattern(value):
    """symbol_problem, is_symbol and the regex fullmatch answer the same for any text."""
    by_pattern = re.fullmatch(rules.SYMBOL_PATTERN, value, re.DOTALL) is not None
    by_shape = re.fullmatch(rules.SYMBOL_SHAPE, value) is not None and len(value) <= rules.SYMBOL_MAX_LENGTH
    assert (rules.symbol_problem(value) is None) == by_pattern == by_shape == rules.is_symbol(value)


@given(st.text(alphabet=REST + "/ ?#%", max_size=40))
def test_the_checks_agree_on_symbol_like_text(value):
    """Text of the admitted characters (and a few refused ones): where the edge cases are."""
    by_pattern = re.fullmatch(rules.SYMBOL_PATTERN, value, re.DOTALL) is not None
    assert (rules.symbol_problem(value) is None) == by_pattern == rules.is_symbol(value)


@given(admitted)
def test_every_admitted_symbol_is_a_path_no_browser_rewrites(symbol):
    """No empty, '.' or '..' segment: /timeline/<symbol>/ reaches the page of that symbol."""
    assert all(part and part not in (".", "..") for part in symbol.split("/"))


@given(st.text(min_size=1, max_size=40).filter(lambda v: not rules.is_symbol(v)))
@example("X" * 33)
@example("A B")
@example("X?Y")
@example("..")
@example("É")
def test_a_refused_symbol_raises_naming_the_parameter_and_the_rule(value):
    message = rules.symbol_message("symbols", value)
    assert message is not None and message.startswith("symbols=")
    assert rules.SYMBOL_RULE_TEXT in message
    try:
        rules.check_symbol("symbols", value)
    except ValueError as exc:
        assert str(exc) == message
    else:  # pragma: no cover - a refused value must raise
        raise AssertionError(f"{value!r} was admitted")


def test_the_reasons_name_what_is_wrong():
    assert rules.symbol_problem("X" * 33) == "is 33 characters long (at most 32)"
    assert rules.symbol_problem("A B") == "contains ' '"
    assert rules.symbol_problem("X?Y") == "contains '?'"
    assert rules.symbol_problem("X#Y") == "contains '#'"
    assert "starts with '.'" in rules.symbol_problem("..")
    assert rules.symbol_problem("A/../B") == "has a / not followed by a letter or digit"
    assert rules.symbol_problem("A/") == "has a / not followed by a letter or digit"
    assert rules.symbol_problem("ÄB") == "has a non-ASCII character"
    assert rules.symbol_problem("") == "is empty"
    assert rules.symbol_problem(None) == "is not text"


UTC = UTC
stored = st.datetimes(
    min_value=datetime(1800, 1, 1), max_value=datetime(2200, 1, 1) - timedelta(microseconds=1), timezones=st.just(UTC)
)
outside = st.one_of(
    st.datetimes(max_value=datetime(1800, 1, 1) - timedelta(microseconds=1), timezones=st.just(UTC)),
    st.datetimes(min_value=datetime(2200, 1, 1), timezones=st.just(UTC)),
)


@given(stored)
@example(datetime(1800, 1, 1, tzinfo=UTC))
@example(datetime(2200, 1, 1, tzinfo=UTC) - timedelta(microseconds=1))
def test_instants_in_the_stored_range_are_admitted(value):
    assert rules.instant_problem(value) is None
    assert rules.in_stored_range(value)
    assert rules.check_stored_instant("time", value) == value
    # every admitted instant converts to a pandas-style nanosecond count without overflow
    assert -(2**63) < int((value - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)) * 1000 < 2**63


@given(outside)
@example(datetime(1799, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
@example(datetime(2200, 1, 1, tzinfo=UTC))
@example(datetime(9999, 12, 31, 23, 59, tzinfo=UTC))
@example(datetime(1, 1, 1, tzinfo=UTC))
def test_instants_outside_the_stored_range_are_refused_naming_the_range(value):
    problem = rules.instant_problem(value)
    assert problem is not None and rules.STORED_RANGE_TEXT in problem
    assert rules.format_instant(value) in problem
    try:
        rules.check_stored_instant("known_at", value)
    except ValueError as exc:
        assert str(exc).startswith("known_at: ")
    else:  # pragma: no cover
        raise AssertionError(f"{value} was admitted")


@given(st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=5)), timezone(timedelta(hours=-8))])))
def test_the_range_is_about_the_instant_not_its_offset(value):
    assert rules.in_stored_range(value) == rules.in_stored_range(value.astimezone(UTC))


def test_the_stored_range_lies_inside_the_query_range():
    """Every stored instant can be asked about (at, from/to), with room for selectors' arithmetic."""
    assert rules.MIN_INSTANT < rules.STORED_MIN < rules.STORED_MAX < rules.MAX_INSTANT


def test_timeparse_uses_the_query_range_of_rules():
    assert timeparse.MIN_INSTANT is rules.MIN_INSTANT and timeparse.MAX_INSTANT is rules.MAX_INSTANT
    assert timeparse.parse_instant("at", "1000-01-01T00:00:00Z") == rules.MIN_INSTANT


def test_rules_is_a_leaf_module():
    """rules.py imports nothing of the project (every layer may import it)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(rules))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "re", "datetime"}
