"""timeseries/params.py: the one parameter module; where the doors differ, the difference is an argument."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from timeseries import params

UTC = UTC


def test_an_instant_reads_a_decoded_plus_only_where_the_door_asks():
    assert params.instant("at", "2024-03-01T15:30:00 01:00", **params.API_INSTANT) == datetime(
        2024, 3, 1, 14, 30, tzinfo=UTC
    )
    with pytest.raises(params.ParameterError, match="at='2024-03-01T15:30:00 01:00'"):
        params.instant("at", "2024-03-01T15:30:00 01:00")


def test_an_instant_error_names_the_parameter_and_long_text_is_cut_only_by_the_api():
    with pytest.raises(params.ParameterError, match="^to='x{64}' is not an ISO 8601"):
        params.instant("to", "x" * 100, **params.API_INSTANT)
    with pytest.raises(params.ParameterError, match="^to='x{100}' is not an ISO 8601"):
        params.instant("to", "x" * 100)


def test_lists_are_unique_and_capped_for_the_api_and_kept_as_given_elsewhere():
    assert params.text_list("sources", " a, b,,a ") == ["a", "b"]
    assert params.text_list("sources", " , ") is None
    assert params.text_list("q", "a b,a", separators=", ", **params.EVERY_ITEM) == ["a", "b", "a"]
    assert params.text_list("q", ",", **params.EVERY_ITEM) == []
    with pytest.raises(params.ParameterError, match="symbols has more than 2 values"):
        params.text_list("symbols", "a,b,c", max_items=2)
    with pytest.raises(params.ParameterError, match="symbols must not contain a NUL character"):
        params.text_list("symbols", "a,b\x00")


def test_symbols_obey_the_symbol_rule_naming_the_parameter():
    assert params.symbols("symbols", "BRK/B, AAPL") == ["BRK/B", "AAPL"]
    with pytest.raises(params.ParameterError, match="^symbols='A B' contains ' '"):
        params.symbols("symbols", "A B")
    with pytest.raises(params.ParameterError, match="^symbol='' is empty"):
        params.symbol("symbol", "")


def test_scores_integers_and_numbers():
    assert params.score_check("score", "0.5") == 0.5
    assert params.min_quality_check(None) is None
    with pytest.raises(params.CurationError, match="min_quality='2' is not a number between 0 and 1"):
        params.min_quality_check("2")
    assert params.int_between("page_size", " 7 ", minimum=1, maximum=10) == 7
    with pytest.raises(params.ParameterError, match="page_size='11' is not an integer between 1 and 10"):
        params.int_between("page_size", "11", minimum=1, maximum=10)
    with pytest.raises(params.ParameterError, match="--limit must be a positive integer"):
        params.positive_int("--limit", 0)
    with pytest.raises(params.ParameterError, match="impact_min='nan' is not a finite number"):
        params.finite_float("impact_min", "nan")


def test_curation_filters_name_the_parameter():
    out = params.curation_filters(
        {"q": "AAPL MSFT", "source": "a,,b", "quality_min": "0.2"}, dataset="market_data", has_source=True, curated=True
    )
    assert out == {"q": ["AAPL", "MSFT"], "source": ["a", "", "b"], "quality_min": 0.2}
    with pytest.raises(params.CurationError, match="source is not a column of insider_trades"):
        params.curation_filters({"source": "x"}, dataset="insider_trades", has_source=False, curated=False)
    with pytest.raises(params.CurationError, match="symbol='A B'"):
        params.curation_filters({"symbol": "A B"}, dataset="market_data", has_source=True, curated=True)
