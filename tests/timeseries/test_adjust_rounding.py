"""The exact rounding of adjusted prices and volumes (timeseries/pit/adjust.py ``Scaler``,
``scale_volume``) against ``fractions.Fraction``: any 6-place price times any factor built from split
ratios and dividend factors rounds, half to even, exactly as the rational does — ties included."""

from __future__ import annotations

from decimal import Context, Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from timeseries.pit.adjust import Scaler, scale_volume

WIDE = Context(prec=400)  # the default 28 digits would round a large exact quotient
PRICES = st.integers(-(10**18) + 1, 10**18 - 1).map(lambda m: Decimal(m).scaleb(-6))
RATIOS = st.integers(1, 10**12).map(lambda m: Fraction(m, 10**6))  # numeric(18,6) above 0
DIVIDENDS = st.tuples(st.integers(0, 10**9), st.integers(1, 10**12)).filter(lambda t: t[0] < t[1])


def exact(value: Decimal, factor: Fraction) -> Decimal:
    r = round(Fraction(value) * factor, 6)  # Fraction.__round__: half to even
    return WIDE.divide(Decimal(r.numerator), Decimal(r.denominator))  # exact: the denominator divides 10^6


@settings(max_examples=1000)
@given(value=PRICES, ratios=st.lists(RATIOS, max_size=4), dividends=st.lists(DIVIDENDS, max_size=4))
def test_a_price_rounds_exactly_as_the_rational_does(value, ratios, dividends):
    factor = Fraction(1)
    for r in ratios:
        factor /= r
    for amount, close in dividends:
        factor *= 1 - Fraction(amount, close)
    if factor == 0:
        return
    assert Scaler(factor)(value) == exact(value, factor)


@settings(max_examples=500)
@given(micro=st.integers(-(10**12), 10**12), k=st.integers(1, 10**6), odd=st.booleans())
def test_ties_round_to_even(micro, k, odd):
    """value × N / D exactly halfway between two 6-place numbers, with a D that is no power of 2 or 5."""
    value = Decimal(2 * micro + (1 if odd else 0)).scaleb(-6)
    factor = Fraction(3 * k, 6 * k)  # 1/2 written with a 3 in it: Fraction reduces it, the tie stays
    assert Scaler(factor)(value) == exact(value, factor)
    third = Fraction(1, 3)
    tie = Decimal(3 * (2 * micro + 1)).scaleb(-7)  # × 1/3 = (2·micro + 1) / (2·10^6): a tie
    assert Scaler(third)(tie) == exact(tie, third)


@given(volume=st.integers(0, 10**15), ratios=st.lists(RATIOS, min_size=1, max_size=4))
def test_a_volume_rounds_half_even_to_an_integer(volume, ratios):
    factor = Fraction(1)
    for r in ratios:
        factor *= r
    assert scale_volume(volume, factor) == round(volume * factor)


def test_worked_ties():
    assert Scaler(Fraction(1, 2))(Decimal("10.000001")) == Decimal("5.000000")
    assert Scaler(Fraction(1, 2))(Decimal("10.000003")) == Decimal("5.000002")
    assert Scaler(Fraction(1, 3))(Decimal("0.0000015")) == Decimal("0")  # 0.0000005: to even (0)
    assert scale_volume(5, Fraction(1, 2)) == 2 and scale_volume(7, Fraction(1, 2)) == 4
