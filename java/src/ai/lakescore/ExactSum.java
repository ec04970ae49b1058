package ai.lakescore;

import java.util.Arrays;

/**
 * The exact sum of finite doubles, as an integer multiple of 2^-1074 held in 30-bit digits
 * (a long each, so additions defer carries), plus counts of infinities. Adding or removing a
 * value touches the 2 or 3 digits it spans; {@link #value} normalizes the touched range and
 * rounds once, to nearest with ties to even, directly to the double (subnormal) grid.
 */
final class ExactSum {
    private static final int BITS = 30;
    private static final long MASK = (1L << BITS) - 1;
    /** Bits 0..2097 hold every finite double; room above for carries of 2^31 additions. */
    private static final int DIGITS = 76;
    private final long[] digit = new long[DIGITS];
    private final long[] scratch = new long[DIGITS];
    private int lo = DIGITS, hi = -1;
    private long pending;
    int posInf, negInf;

    void clear() {
        if (hi >= lo) Arrays.fill(digit, lo, hi + 1, 0L);
        lo = DIGITS;
        hi = -1;
        pending = 0;
        posInf = 0;
        negInf = 0;
    }

    /** Adds {@code x} (non-NaN) {@code times} times, {@code times} being 1 or -1. */
    void add(double x, int times) {
        if (x == 0.0) return;
        if (x == Double.POSITIVE_INFINITY) {
            posInf += times;
            return;
        }
        if (x == Double.NEGATIVE_INFINITY) {
            negInf += times;
            return;
        }
        long bits = Double.doubleToRawLongBits(x);
        int exponent = (int) ((bits >>> 52) & 0x7ff);
        long mantissa = bits & 0xFFFFFFFFFFFFFL;
        int position = 0;  // of the mantissa's lowest bit, counted from 2^-1074
        if (exponent != 0) {
            mantissa |= 1L << 52;
            position = exponent - 1;
        }
        long sign = bits < 0 ? -times : times;
        int k = position / BITS;
        int shift = position % BITS;
        long low = (mantissa & MASK) << shift;
        long high = (mantissa >>> BITS) << shift;
        digit[k] += sign * (low & MASK);
        digit[k + 1] += sign * ((low >>> BITS) + (high & MASK));
        digit[k + 2] += sign * (high >>> BITS);
        if (k < lo) lo = k;
        if (k + 2 > hi) hi = k + 2;
        if (++pending == 1L << 31) normalize();
    }

    /** Carries through the touched range: digits lo..hi-1 in [0, 2^30), the top one signed. */
    private void normalize() {
        long carry = 0;
        for (int i = lo; i < hi; i++) {
            long v = digit[i] + carry;
            carry = v >> BITS;
            digit[i] = v & MASK;
        }
        digit[hi] += carry;
        pending = 0;
    }

    /** The sum correctly rounded to a double; an exact zero is +0.0. */
    double value() {
        if (hi < lo) return 0.0;
        normalize();
        long[] m = scratch;
        boolean negative = digit[hi] < 0;
        long carry = 0;
        for (int i = lo; i < hi; i++) {  // the magnitude, digits in [0, 2^30)
            long v = (negative ? -digit[i] : digit[i]) + carry;
            carry = v >> BITS;
            m[i] = v & MASK;
        }
        long top = (negative ? -digit[hi] : digit[hi]) + carry;
        m[hi] = top & MASK;
        m[hi + 1] = (top >>> BITS) & MASK;
        m[hi + 2] = top >>> (2 * BITS);
        double result = round(m, hi + 2);
        Arrays.fill(m, lo, hi + 3, 0L);
        return negative ? -result : result;
    }

    private double round(long[] m, int top) {
        int t = top;
        while (t >= lo && m[t] == 0) t--;
        if (t < lo) return 0.0;
        int highest = t * BITS + 63 - Long.numberOfLeadingZeros(m[t]);
        int lowest = Math.max(highest - 52, 0);
        long mantissa = bits(m, lowest, highest - lowest + 1);
        if (lowest > 0 && bits(m, lowest - 1, 1) == 1
            && ((mantissa & 1) == 1 || anyBelow(m, lowest - 1))) {
            mantissa++;
        }
        return Math.scalb((double) mantissa, lowest - 1074);
    }

    /** {@code n} (at most 62) bits of {@code m} from bit {@code from} up. */
    private static long bits(long[] m, int from, int n) {
        long out = 0;
        int got = 0;
        while (got < n) {
            int k = from / BITS;
            int shift = from % BITS;
            int take = Math.min(BITS - shift, n - got);
            out |= ((m[k] >>> shift) & ((1L << take) - 1)) << got;
            got += take;
            from += take;
        }
        return out;
    }

    /** Whether any bit of {@code m} below bit {@code position} is set. */
    private boolean anyBelow(long[] m, int position) {
        int k = position / BITS;
        if ((m[k] & ((1L << (position % BITS)) - 1)) != 0) return true;
        for (int i = lo; i < k; i++) if (m[i] != 0) return true;
        return false;
    }
}
