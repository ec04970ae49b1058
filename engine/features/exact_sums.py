"""Windowed sums that are exact, then correctly rounded: the same bits whatever the engine, the
partitioning or the order in which events are added.

Why: a floating-point sum depends on the order of its additions, so two engines (or one engine
with two algorithms) agree bit for bit only if they add in the same order, which forbids the
fast algorithms (prefix sums, sliding windows, partial sums merged across partitions). The exact
real sum, rounded once to the nearest double (ties to even), is one number whatever the order,
and it is also the most accurate answer. The JVM kernel of the Spark engine computes the same
number with a sliding accumulator (``java/src/ai/lakescore/ExactSum.java``).

How, vectorised with NumPy: every finite value is an integer mantissa times a power of two, so
over a common base exponent each value is a (long) integer, held as base-2**30 digits in int64.
Prefix sums of each digit are exact (a digit changes by less than 2**31 per event, so 2**32
events fit), a window's sum is a difference of two prefixes, digit by digit, and the rounding
reads the top 55 bits of the normalised difference plus a sticky bit. Values spanning the whole
double range need about 70 digits; money-like data needs 3 or 4.
"""

from __future__ import annotations

import numpy as np

DIGIT_BITS = 30
_MASK = (1 << DIGIT_BITS) - 1
_MIN_EXPONENT = -1074  # the exponent of the smallest subnormal's bit


def _digits_needed(span_bits: int, rows: int) -> int:
    # The values' bits, the growth of a sum of ``rows`` of them and the sign: the top digit
    # stays below 2**29 once normalised.
    return -(-(span_bits + 53 + max(rows, 1).bit_length() + 1) // DIGIT_BITS)


def prefix_count(mask: np.ndarray) -> np.ndarray:
    """How many of ``mask`` are true before each position, and in all: ``n + 1`` int64s, so a
    slice ``[lo, hi)`` holds ``count[hi] - count[lo]``."""
    return _prefix(mask, "int64")


def _prefix(values: np.ndarray, dtype: str) -> np.ndarray:
    """``[0, values[0], values[0] + values[1], ...]`` (``n + 1`` of them), accumulated in
    ``dtype`` straight into the result: no temporary of the array's size."""
    out = np.empty(len(values) + 1, dtype=dtype)
    out[0] = 0
    np.cumsum(values, dtype=dtype, out=out[1:])
    return out


class ExactWindowSums:
    """Exact sums of ``values[lo:hi]`` for any slices of one array, each correctly rounded.

    ``values``: float64, NaN for null (skipped). Building costs one pass per digit over the
    values; ``sums(lo, hi)`` costs a few NumPy passes over the queries per digit.
    """

    def __init__(self, values: np.ndarray, present: np.ndarray | None = None) -> None:
        """``present``: ``prefix_count(~np.isnan(values))`` when the caller has it already."""
        values = np.asarray(values, dtype="float64")
        finite = np.isfinite(values)
        self._present = prefix_count(~np.isnan(values)) if present is None else present
        self._infinities = ((prefix_count(values == np.inf), prefix_count(values == -np.inf))
                            if np.isinf(values).any() else None)
        finite_values = np.where(finite, values, 0.0)
        self._float_prefix = self._whole_number_prefix(finite_values)
        if self._float_prefix is not None:
            return
        mantissa, exponent = np.frexp(finite_values)
        integer = np.ldexp(mantissa, 53).astype("int64")  # exact: |integer| < 2**53
        exponent = exponent.astype("int64") - 53
        nonzero = integer != 0
        if not nonzero.any():
            self.base, self._digits, self._float_prefix = 0, 1, None
            self._prefixes = np.zeros((1, len(values) + 1), dtype="int64")
            return
        self.base = int(exponent[nonzero].min())
        self._float_prefix = self._exact_float_prefix(values, finite, integer, exponent, nonzero)
        if self._float_prefix is not None:
            return
        shift = np.where(nonzero, exponent - self.base, 0)
        self._digits = _digits_needed(int(shift.max()), len(values))
        # |integer| = a0 + a1 * 2**30 (a0 < 2**30, a1 < 2**23), each shifted by shift % 30 (< 2**59
        # and < 2**53) and split at 30 bits again: three digits at q, q + 1, q + 2, signed.
        sign = np.sign(integer)
        magnitude = np.abs(integer)
        q, r = np.divmod(shift, DIGIT_BITS)
        a0 = (magnitude & _MASK) << r
        a1 = (magnitude >> DIGIT_BITS) << r
        pieces = (sign * (a0 & _MASK), sign * ((a0 >> DIGIT_BITS) + (a1 & _MASK)), sign * (a1 >> DIGIT_BITS))
        # Only the digits values touch get prefixes; the carry digits above them are zeros,
        # added by ``sums``. Values of one magnitude band (the usual case) all start at digit 0.
        highest = int(q.max())
        self._prefixes = np.empty((highest + len(pieces), len(values) + 1), dtype="int64")
        self._prefixes[:, 0] = 0
        zero = np.zeros(1, dtype="int64")
        for k in range(len(self._prefixes)):
            if highest == 0:
                contribution = pieces[k]
            else:
                at = k - q  # which of the value's three digits lands on digit k, if any
                contribution = np.where(at == 0, pieces[0], np.where(at == 1, pieces[1],
                                                                     np.where(at == 2, pieces[2], zero)))
            np.cumsum(contribution, out=self._prefixes[k, 1:])

    @staticmethod
    def _whole_number_prefix(finite_values: np.ndarray) -> np.ndarray | None:
        """Plain float64 prefix sums when every value is a whole number and the sum of
        magnitudes is below 2**51 (so every prefix and every difference of two is an integer
        a double holds exactly), else None. The common case of ``_exact_float_prefix`` (b >= 0)
        in two passes, without decomposing the values."""
        scratch = np.trunc(finite_values)
        if not np.array_equal(scratch, finite_values):
            return None
        with np.errstate(over="ignore"):  # an infinite total simply fails the test
            total = float(np.abs(finite_values, out=scratch).sum())
        if total >= np.ldexp(1.0, 51):
            return None
        return _prefix(finite_values, "float64")

    @staticmethod
    def _exact_float_prefix(values: np.ndarray, finite: np.ndarray, integer: np.ndarray, exponent: np.ndarray,
                            nonzero: np.ndarray) -> np.ndarray | None:
        """Plain float64 prefix sums when they are exact, else None: every value a multiple of
        2**b (b the lowest set bit of any value) and the sum of magnitudes below 2**(52 + b), so
        every prefix and every difference of two is a representable multiple of 2**b. Whole
        numbers (cents as integers, counts, quantities) take this path; 0.01-like decimals do not."""
        lowest_bit = np.frexp((integer & -integer).astype("float64"))[1].astype("int64") - 1
        b = int((exponent + lowest_bit)[nonzero].min())
        with np.errstate(over="ignore"):  # an infinite total simply fails the test
            total = float(np.abs(np.where(finite, values, 0.0)).sum())
        # The float sum of magnitudes is at most (1 + n eps) times the true one: 2**51 leaves room.
        if b > 970 or total >= np.ldexp(1.0, 51 + b):
            return None
        return _prefix(np.where(finite, values, 0.0), "float64")

    def sums(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """The correctly rounded sum of each slice ``[lo[i], hi[i])``: NaN when it holds no
        non-null value or both infinities, +-inf when it holds one of them, +0.0 for zero."""
        lo, hi = np.asarray(lo, dtype="int64"), np.asarray(hi, dtype="int64")
        if self._float_prefix is not None:
            result = self._float_prefix[hi] - self._float_prefix[lo] + 0.0  # exact; never -0.0
        else:
            digits = np.zeros((max(self._digits, len(self._prefixes)), len(lo)), dtype="int64")
            for k, prefix in enumerate(self._prefixes):
                np.subtract(prefix[hi], prefix[lo], out=digits[k])
            result = round_digits(digits, self.base)
        empty = self._present[hi] - self._present[lo] == 0
        if self._infinities is not None:
            pos_prefix, neg_prefix = self._infinities
            pos, neg = pos_prefix[hi] - pos_prefix[lo] > 0, neg_prefix[hi] - neg_prefix[lo] > 0
            result = np.where(pos, np.inf, np.where(neg, -np.inf, result))
            empty |= pos & neg
        return np.where(empty, np.nan, result)


def _normalise(digits: np.ndarray) -> None:
    """Carries in place: every digit but the top one into [0, 2**30); the top one signed."""
    for k in range(len(digits) - 1):
        carry = digits[k] >> DIGIT_BITS
        digits[k] -= carry << DIGIT_BITS
        digits[k + 1] += carry


def _shift_right(value: np.ndarray, by: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(value >> by, whether a one bit was shifted out), for non-negative int64 values and any
    non-negative shifts (64 and more give 0)."""
    capped = np.minimum(by, 63)
    kept = np.where(by >= 63, 0, value >> capped)
    lost = np.where(by >= 63, value != 0, (value & ((np.int64(1) << capped) - 1)) != 0)
    return kept, lost


def round_digits(digits: np.ndarray, base: int) -> np.ndarray:
    """The nearest double (ties to even) to ``sum_k digits[k] * 2**(30 k + base)``, per column.

    ``digits``: int64 of shape (digits, n), the top digit leaving room for carries. The double is
    built as mantissa * 2**q with q the exponent of the lowest bit it can hold (53 significant
    bits, or fewer below 2**-1022), so ``ldexp`` is exact and rounding happens here, once.
    """
    digits = digits.copy()
    _normalise(digits)
    negative = digits[-1] < 0
    digits[:, negative] = -digits[:, negative]
    _normalise(digits)
    count, n = digits.shape
    nonzero = digits != 0
    top_index = count - 1 - np.argmax(nonzero[::-1], axis=0)
    is_zero = ~nonzero.any(axis=0)
    columns = np.arange(n)

    def digit(index: np.ndarray) -> np.ndarray:
        return np.where(index >= 0, digits[np.maximum(index, 0), columns], 0)

    top, mid, low = digit(top_index), digit(top_index - 1), digit(top_index - 2)
    below = np.cumsum(nonzero, axis=0)  # nonzero digits at or below each index
    sticky = np.where(top_index >= 3, below[np.maximum(top_index - 3, 0), columns] > 0, False)
    top_bits = np.frexp(np.maximum(top, 1).astype("float64"))[1].astype("int64")  # 1..30
    # The three digits form X = hi * 2**30 + low (hi = top * 2**30 + mid < 2**60), whose bit 0
    # has the exponent base + 30 (top_index - 2).
    bit0 = base + DIGIT_BITS * (top_index - 2)
    leading = bit0 + 2 * DIGIT_BITS + top_bits - 1
    lowest_kept = np.maximum(leading - 52, _MIN_EXPONENT)
    by = lowest_kept - bit0 - 2  # keep two more bits: the guard bit and the round bit
    hi = (top << DIGIT_BITS) | mid
    # Y = X >> by, by >= 6 except below 2**-1022 where it only grows.
    small = by <= DIGIT_BITS
    low_kept, low_lost = _shift_right(low, np.where(small, by, 0))
    y_small = (hi << np.where(small, DIGIT_BITS - by, 0)) | low_kept
    y_large, hi_lost = _shift_right(hi, np.where(small, 0, by - DIGIT_BITS))
    y = np.where(small, y_small, y_large)
    lost = np.where(small, low_lost, hi_lost | (low != 0)) | sticky
    mantissa = y >> 2
    guard = (y >> 1) & 1
    rest = ((y & 1) != 0) | lost
    mantissa += guard & (rest | ((mantissa & 1) != 0))
    with np.errstate(over="ignore"):
        magnitude = np.ldexp(mantissa.astype("float64"), np.minimum(lowest_kept, 2000).astype("int32"))
    result = np.where(negative, -magnitude, magnitude)
    return np.where(is_zero | (result == 0), 0.0, result)
