package ai.lakescore;

import org.apache.spark.Partitioner;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.function.FlatMapFunction;
import org.apache.spark.api.java.function.PairFlatMapFunction;
import org.apache.spark.rdd.RDD;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.catalyst.expressions.SpecificInternalRow;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.StructType;
import scala.Tuple2;

import java.nio.ByteBuffer;
import java.util.ArrayDeque;
import java.util.Arrays;
import java.util.Iterator;
import java.util.NoSuchElementException;

/**
 * The event side's columnar exchange for {@link FeatureWindows}: each map task packs its rows,
 * by target partition, into blocks of up to {@link #ROWS} rows held column by column (null flags
 * and frame-of-reference values, {@link #encode}: 113 MiB shuffled for the 10M events of
 * {@code bench/features.py} where Spark's compressed rows took 158 MiB), and shuffles one {@code (partition, byte[])} record per
 * block through a pass-through partitioner; each reduce task unpacks its blocks into one reused
 * mutable row. Millions of small rows become a few hundred records: no per-row serialization,
 * no sort of row pointers by partition, no per-row deserialization.
 *
 * <p>Only for rows whose every column is held as a long or a double
 * ({@link FeatureWindows#storage}): integral, boolean, date, timestamp and floating columns,
 * the usual events after the plan's preparation (numeric inputs are doubles). Rows with a
 * string or another column keep Spark's own exchange ({@link #packable}).
 *
 * <p>The target partition is a column of the rows, computed in Spark as
 * {@code pmod(hash(keys), n)}: the expression of Spark's hash partitioning, so the events land
 * in the partitions where {@code repartition(n, keys)} puts the label rows of the same keys.
 */
final class EventBlocks {
    private EventBlocks() {}

    /** Rows per block at most: a few hundred records at 10M events. */
    static final int ROWS = 1 << 16;

    /** Rows a map task holds unsent across all its partitions' open blocks (9 bytes per value:
     * ~45 MiB for 5 columns): with many shuffle partitions (Spark's default is 200) blocks get
     * smaller instead of a task holding 64K rows for each of them. */
    static final int BUDGET_ROWS = 1 << 20;

    /** Rows per block at least, so that a block's framing stays small beside its data. */
    static final int MIN_ROWS = 1 << 10;

    /** Rows per block for {@code partitions} target partitions (see {@link #BUDGET_ROWS}). */
    static int blockRows(int partitions) {
        return Math.max(MIN_ROWS, Math.min(ROWS, BUDGET_ROWS / Math.max(1, partitions)));
    }

    /** Whether every column of {@code schema} but the partition's is held as a long or a double. */
    static boolean packable(StructType schema, String partition) {
        for (int c = 0; c < schema.fields().length; c++) {
            if (schema.fields()[c].name().equals(partition)) continue;
            int s = FeatureWindows.storage(schema.fields()[c].dataType());
            if (s != FeatureWindows.LONG && s != FeatureWindows.DOUBLE) return false;
        }
        return true;
    }

    /** {@code rows} moved to partition {@code row.getInt(partitionAt)} of {@code partitions}, as
     * rows of {@code schema} (the partition column left null). */
    static RDD<InternalRow> exchange(RDD<InternalRow> rows, StructType schema, int partitionAt, int partitions) {
        DataType[] types = new DataType[schema.fields().length];
        for (int c = 0; c < types.length; c++) types[c] = schema.fields()[c].dataType();
        JavaRDD<Tuple2<Integer, byte[]>> blocks = rows.toJavaRDD()
            .mapPartitionsToPair(new Pack(types, partitionAt, partitions))
            .partitionBy(new PassThrough(partitions))
            .rdd().toJavaRDD();
        return blocks.mapPartitions(new Unpack(schema, partitionAt)).rdd();
    }

    /** Partition {@code p} for key {@code p}. */
    static final class PassThrough extends Partitioner {
        private static final long serialVersionUID = 1L;
        private final int partitions;

        PassThrough(int partitions) {
            this.partitions = partitions;
        }

        @Override
        public int numPartitions() {
            return partitions;
        }

        @Override
        public int getPartition(Object key) {
            return (Integer) key;
        }

        @Override
        public boolean equals(Object other) {
            return other instanceof PassThrough && ((PassThrough) other).partitions == partitions;
        }

        @Override
        public int hashCode() {
            return partitions;
        }
    }

    /** A map task's rows as blocks, each emitted when full, the partial ones at the end. */
    static final class Pack implements PairFlatMapFunction<Iterator<InternalRow>, Integer, byte[]> {
        private static final long serialVersionUID = 1L;
        private final DataType[] types;
        private final int partitionAt, partitions;

        Pack(DataType[] types, int partitionAt, int partitions) {
            this.types = types;
            this.partitionAt = partitionAt;
            this.partitions = partitions;
        }

        @Override
        public Iterator<Tuple2<Integer, byte[]>> call(Iterator<InternalRow> rows) {
            int columns = types.length;
            boolean[] isLong = new boolean[columns];
            for (int c = 0; c < columns; c++) isLong[c] = FeatureWindows.storage(types[c]) == FeatureWindows.LONG;
            long[][][] values = new long[partitions][][];
            byte[][][] nulls = new byte[partitions][][];
            int[] count = new int[partitions];
            int blockRows = blockRows(partitions);
            ArrayDeque<Tuple2<Integer, byte[]>> ready = new ArrayDeque<>();
            return new Iterator<Tuple2<Integer, byte[]>>() {
                private boolean flushed;

                @Override
                public boolean hasNext() {
                    while (ready.isEmpty() && rows.hasNext()) add(rows.next());
                    if (ready.isEmpty() && !flushed) {
                        flushed = true;
                        for (int p = 0; p < partitions; p++) if (count[p] > 0) emit(p);
                    }
                    return !ready.isEmpty();
                }

                @Override
                public Tuple2<Integer, byte[]> next() {
                    if (!hasNext()) throw new NoSuchElementException();
                    return ready.poll();
                }

                private void add(InternalRow row) {
                    int p = row.getInt(partitionAt);
                    if (values[p] == null) {
                        values[p] = new long[columns][blockRows];
                        nulls[p] = new byte[columns][blockRows];
                    }
                    int i = count[p];
                    for (int c = 0; c < columns; c++) {
                        if (c == partitionAt) continue;
                        if (row.isNullAt(c)) {
                            nulls[p][c][i] = 1;
                            continue;
                        }
                        nulls[p][c][i] = 0;
                        values[p][c][i] = isLong[c] ? FeatureWindows.readLong(row, c, types[c])
                            : Double.doubleToRawLongBits(FeatureWindows.readDouble(row, c, types[c]));
                    }
                    if (++count[p] == blockRows) emit(p);
                }

                private void emit(int p) {
                    int n = count[p];
                    byte[][] encoded = new byte[columns][];
                    int size = 4;
                    for (int c = 0; c < columns; c++) {
                        if (c == partitionAt) continue;  // the block's key
                        encoded[c] = encode(values[p][c], nulls[p][c], n, !isLong[c]);
                        size += encoded[c].length;
                    }
                    ByteBuffer block = ByteBuffer.allocate(size);
                    block.putInt(n);
                    for (byte[] column : encoded) if (column != null) block.put(column);
                    ready.add(new Tuple2<>(p, block.array()));
                    count[p] = 0;
                }
            };
        }
    }

    static final int HAS_NULLS = 1, INTEGRAL = 2;

    /**
     * One column of a block: a flag byte ({@link #HAS_NULLS}, {@link #INTEGRAL}), the null flags
     * if any, then frame-of-reference values: the least value as 8 bytes, the byte width of the
     * greatest difference to it, and each value's difference in that many bytes (little-endian,
     * 0 for a null). Doubles (as raw bits in {@code values}) that are all whole numbers below
     * 2^53 (amounts in cents, counts) are framed as those numbers, others as their bits.
     */
    static byte[] encode(long[] values, byte[] nulls, int n, boolean doubles) {
        boolean hasNulls = false, integral = doubles;
        for (int i = 0; i < n; i++) {
            if (nulls[i] != 0) {
                hasNulls = true;
                continue;
            }
            if (integral) {
                double d = Double.longBitsToDouble(values[i]);
                integral = d == Math.rint(d) && Math.abs(d) < 0x1p53 && values[i] != Long.MIN_VALUE;  // not -0.0
            }
        }
        if (integral) {
            for (int i = 0; i < n; i++) values[i] = nulls[i] != 0 ? 0 : (long) Double.longBitsToDouble(values[i]);
        }
        long base = 0, spread = 0;
        boolean first = true;
        for (int i = 0; i < n; i++) {
            if (nulls[i] != 0) continue;
            if (first) {
                base = values[i];
                first = false;
            } else if (values[i] < base) {
                base = values[i];
            }
        }
        for (int i = 0; i < n; i++) if (nulls[i] == 0 && Long.compareUnsigned(values[i] - base, spread) > 0) spread = values[i] - base;
        int width = (64 - Long.numberOfLeadingZeros(spread) + 7) / 8;
        byte[] out = new byte[1 + (hasNulls ? n : 0) + 9 + width * n];
        out[0] = (byte) ((hasNulls ? HAS_NULLS : 0) | (integral ? INTEGRAL : 0));
        int at = 1;
        if (hasNulls) {
            System.arraycopy(nulls, 0, out, at, n);
            at += n;
        }
        for (int k = 0; k < 8; k++) out[at++] = (byte) (base >>> (8 * k));
        out[at++] = (byte) width;
        for (int i = 0; i < n; i++) {
            long delta = nulls[i] != 0 ? 0 : values[i] - base;
            for (int k = 0; k < width; k++) out[at++] = (byte) (delta >>> (8 * k));
        }
        return out;
    }

    /** Decodes a column of {@link #encode} at the block's position into {@code values} (raw
     * bits for doubles) and {@code nulls}. */
    static void decode(ByteBuffer block, long[] values, byte[] nulls, int n, boolean doubles) {
        int flags = block.get();
        if ((flags & HAS_NULLS) != 0) block.get(nulls, 0, n);
        else Arrays.fill(nulls, 0, n, (byte) 0);
        byte[] bytes = block.array();
        int at = block.position();
        long base = 0;
        for (int k = 0; k < 8; k++) base |= (bytes[at++] & 0xFFL) << (8 * k);
        int width = bytes[at++];
        for (int i = 0; i < n; i++) {
            long delta = 0;
            for (int k = 0; k < width; k++) delta |= (bytes[at++] & 0xFFL) << (8 * k);
            values[i] = base + delta;
        }
        if (doubles && (flags & INTEGRAL) != 0) {
            for (int i = 0; i < n; i++) values[i] = Double.doubleToRawLongBits((double) values[i]);
        }
        block.position(at);
    }

    /** A reduce task's blocks as rows: one reused mutable row, valid until the next. */
    static final class Unpack implements FlatMapFunction<Iterator<Tuple2<Integer, byte[]>>, InternalRow> {
        private static final long serialVersionUID = 1L;
        private final StructType schema;
        private final int partitionAt;

        Unpack(StructType schema, int partitionAt) {
            this.schema = schema;
            this.partitionAt = partitionAt;
        }

        @Override
        public Iterator<InternalRow> call(Iterator<Tuple2<Integer, byte[]>> blocks) {
            int columns = schema.fields().length;
            DataType[] types = new DataType[columns];
            boolean[] isLong = new boolean[columns];
            for (int c = 0; c < columns; c++) {
                types[c] = schema.fields()[c].dataType();
                isLong[c] = FeatureWindows.storage(types[c]) == FeatureWindows.LONG;
            }
            SpecificInternalRow row = new SpecificInternalRow(schema);
            row.setNullAt(partitionAt);
            long[][] values = new long[columns][ROWS];
            byte[][] nulls = new byte[columns][ROWS];
            return new Iterator<InternalRow>() {
                private int at, size;

                @Override
                public boolean hasNext() {
                    while (at == size && blocks.hasNext()) read(blocks.next()._2());
                    return at < size;
                }

                @Override
                public InternalRow next() {
                    if (!hasNext()) throw new NoSuchElementException();
                    for (int c = 0; c < columns; c++) {
                        if (c == partitionAt) continue;
                        if (nulls[c][at] != 0) row.setNullAt(c);
                        else if (isLong[c]) FeatureWindows.writeLong(row, c, types[c], values[c][at]);
                        else FeatureWindows.writeDouble(row, c, types[c], Double.longBitsToDouble(values[c][at]));
                    }
                    at++;
                    return row;
                }

                private void read(byte[] bytes) {
                    ByteBuffer block = ByteBuffer.wrap(bytes);
                    int n = block.getInt();
                    for (int c = 0; c < columns; c++) if (c != partitionAt) decode(block, values[c], nulls[c], n, !isLong[c]);
                    at = 0;
                    size = n;
                }
            };
        }
    }
}
