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
import java.util.Iterator;
import java.util.NoSuchElementException;

/**
 * The event side's columnar exchange for {@link FeatureWindows}: each map task packs its rows,
 * by target partition, into blocks of up to {@link #ROWS} rows held as one null-flag array and
 * one array of 8-byte values per column, and shuffles one {@code (partition, byte[])} record per
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

    /** Rows per block: a few hundred records at 10M events, a few MiB held per map task. */
    static final int ROWS = 1 << 16;

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
                        values[p] = new long[columns][ROWS];
                        nulls[p] = new byte[columns][ROWS];
                    }
                    int i = count[p];
                    for (int c = 0; c < columns; c++) {
                        if (c == partitionAt || row.isNullAt(c)) {
                            nulls[p][c][i] = 1;
                            continue;
                        }
                        nulls[p][c][i] = 0;
                        values[p][c][i] = isLong[c] ? FeatureWindows.readLong(row, c, types[c])
                            : Double.doubleToRawLongBits(FeatureWindows.readDouble(row, c, types[c]));
                    }
                    if (++count[p] == ROWS) emit(p);
                }

                /** Block layout: the row count, then per column its null flags and its values. */
                private void emit(int p) {
                    int n = count[p];
                    ByteBuffer block = ByteBuffer.allocate(4 + columns * (n + 8 * n));
                    block.putInt(n);
                    for (int c = 0; c < columns; c++) {
                        block.put(nulls[p][c], 0, n);
                        block.asLongBuffer().put(values[p][c], 0, n);
                        block.position(block.position() + 8 * n);
                    }
                    ready.add(new Tuple2<>(p, block.array()));
                    count[p] = 0;
                }
            };
        }
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
                    for (int c = 0; c < columns; c++) {
                        block.get(nulls[c], 0, n);
                        block.asLongBuffer().get(values[c], 0, n);
                        block.position(block.position() + 8 * n);
                    }
                    at = 0;
                    size = n;
                }
            };
        }
    }
}
