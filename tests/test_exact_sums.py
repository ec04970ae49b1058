"""Exact windowed sums (``engine.features.exact_sums``) against exact rational arithmetic.

The oracle adds ``fractions.Fraction``s (exact) and divides numerator by denominator, which
CPython rounds correctly (to nearest, ties to even, subnormals included); an exact sum beyond
the double range overflows there, which the contract says rounds to an infinity.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.features.exact_sums import ExactWindowSums

HALF_ULP = 2.0 ** -53


def correctly_rounded(values: list[float]) -> float:
    present = [v for v in values if not math.isnan(v)]
    if not present or (math.inf in present and -math.inf in present):
        return math.nan
    if math.inf in present or -math.inf in present:
        return math.inf if math.inf in present else -math.inf
    exact = sum(map(Fraction, present), Fraction(0))
    try:
        rounded = exact.numerator / exact.denominator
    except OverflowError:
        return math.inf if exact > 0 else -math.inf
    return rounded + 0.0  # an exact zero is +0.0


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))


def slices_of(n: int):
    """Up to 20 slices ``(start, end)`` of a list of ``n`` values, empty ones included."""
    bounds = st.tuples(st.integers(0, n), st.integers(0, n)).map(lambda p: (min(p), max(p)))
    return st.lists(bounds, min_size=1, max_size=20)


def check(values: list[float], slices: list[tuple[int, int]]) -> None:
    sums = ExactWindowSums(np.array(values, dtype="float64"))
    lo = np.array([s[0] for s in slices], dtype="int64")
    hi = np.array([s[1] for s in slices], dtype="int64")
    got = sums.sums(lo, hi)
    for (start, end), value in zip(slices, got):
        want = correctly_rounded(values[start:end])
        assert same(value, want), (values[start:end], value, want)


doubles = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e3, max_value=1e3).map(lambda v: round(v, 2)),
    st.sampled_from([1.0, -1.0, HALF_ULP, -HALF_ULP, 2.0 ** 53, 1.0 + 2.0 ** -52, 5e-324, -5e-324,
                     2.2250738585072014e-308, 1.7976931348623157e308, -1.7976931348623157e308, 0.0, -0.0]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(doubles, max_size=40), st.data())
def test_every_slice_sum_is_the_exact_sum_correctly_rounded(values, data):
    check(values, data.draw(slices_of(len(values))))


def test_halfway_cases_round_to_even_and_cancellation_is_exact():
    # 1 + 2**-53 is halfway between 1 and its successor: ties to even give 1; a further tiny
    # positive value breaks the tie upwards.
    check([1.0, HALF_ULP], [(0, 2)])
    check([1.0, HALF_ULP, 2.0 ** -1000], [(0, 3), (1, 3)])
    check([1e308, 1e308, -1e308, 1.0], [(0, 4), (1, 4), (2, 4), (0, 2)])
    check([1e16, 1.0, -1e16], [(0, 3)])
    values = ExactWindowSums(np.array([1e16, 1.0, -1e16])).sums(np.array([0]), np.array([3]))
    assert values[0] == 1.0  # a left-to-right double sum gives 0.0


def test_order_does_not_change_any_bit():
    rng = np.random.default_rng(7)
    values = rng.standard_cauchy(5000) * 10.0 ** rng.integers(-20, 20, 5000)
    forward = ExactWindowSums(values).sums(np.array([0]), np.array([5000]))
    for _ in range(3):
        shuffled = rng.permutation(values)
        again = ExactWindowSums(shuffled).sums(np.array([0]), np.array([5000]))
        assert forward.tobytes() == again.tobytes()
    assert same(float(forward[0]), correctly_rounded(list(values)))


def test_windows_over_a_long_array_match_the_oracle():
    rng = np.random.default_rng(3)
    values = np.round(rng.uniform(-500, 500, 20_000), 2)
    values[rng.integers(0, 20_000, 500)] = np.nan
    lo = np.sort(rng.integers(0, 20_000, 200))
    hi = np.minimum(lo + rng.integers(0, 3000, 200), 20_000)
    check(list(values), list(zip(lo.tolist(), hi.tolist())))


whole_or_dyadic = st.one_of(st.integers(-10**9, 10**9).map(float),
                            st.integers(-2**20, 2**20).map(lambda k: k / 1024),
                            st.just(float("nan")))


@settings(max_examples=200, deadline=None)
@given(st.lists(whole_or_dyadic, max_size=40), st.data())
def test_whole_and_dyadic_values_take_plain_prefix_sums_with_the_same_bits(values, data):
    # Multiples of one power of two with a small total: float64 prefix sums are exact, so the
    # cheap path must give exactly the correctly rounded sums.
    check(values, data.draw(slices_of(len(values))))
    if any(not math.isnan(v) and v != 0 for v in values):
        assert ExactWindowSums(np.array(values, dtype="float64"))._float_prefix is not None


def test_decimals_and_huge_totals_take_the_digits():
    assert ExactWindowSums(np.array([0.1, 0.2, 12.34]))._float_prefix is None
    huge = [2.0 ** 53, 1.0, 1.0, -(2.0 ** 53)]  # a prefix of 2**53 + 1 is not a double
    assert ExactWindowSums(np.array(huge))._float_prefix is None
    check(huge, [(1, 2), (0, 4), (1, 4), (2, 4), (0, 3)])


def test_large_multiples_of_a_power_of_two_keep_exact_float_prefix_sums():
    # Whole numbers whose total passes 2**51 are not cheap as whole numbers, but as multiples
    # of 2**40 they still sum exactly in float64.
    values = [3 * 2.0 ** 50, 2.0 ** 50, math.nan, -(2.0 ** 51), 2.0 ** 52, 5 * 2.0 ** 40]
    assert ExactWindowSums(np.array(values))._float_prefix is not None
    check(values, [(0, 6), (1, 4), (0, 2), (3, 6), (2, 3), (4, 4)])


def test_whole_numbers_next_to_infinities_give_the_infinities():
    values = [1.0, math.inf, 2.0, -3.0, -math.inf, 4.0]
    check(values, [(0, 1), (0, 2), (0, 3), (2, 4), (3, 5), (1, 5), (5, 6), (0, 6)])
