package ai.lakescore;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.spark.api.java.function.FlatMapFunction2;
import org.apache.spark.rdd.RDD;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.catalyst.InternalRow$;
import org.apache.spark.sql.catalyst.expressions.SpecificInternalRow;
import org.apache.spark.sql.types.BooleanType;
import org.apache.spark.sql.types.ByteType;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.DateType;
import org.apache.spark.sql.types.DecimalType;
import org.apache.spark.sql.types.DoubleType;
import org.apache.spark.sql.types.FloatType;
import org.apache.spark.sql.types.IntegerType;
import org.apache.spark.sql.types.LongType;
import org.apache.spark.sql.types.ShortType;
import org.apache.spark.sql.types.StringType;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.sql.types.TimestampNTZType;
import org.apache.spark.sql.types.TimestampType;

import java.io.IOException;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;

/**
 * The point-in-time windowed statistics of {@code engine.features.spark}, as one pass per
 * partition inside the executors' JVMs.
 *
 * <p>The inputs are event rows and label rows, each hash-partitioned by the entity keys into as
 * many partitions (two shuffles of narrow rows, rather than one of their wider union; the events'
 * by {@link EventBlocks} when their columns are all primitive), zipped partition by partition. Each partition is read once into primitive columns (events) and row
 * copies (labels), grouped by entity with a counting sort on dense entity ids, and each
 * entity's events are sorted by
 * (time, the values {@code std} folds, ascending, nulls last), its labels by time. Walking the
 * labels in time order, the events up to each label's window end (its time, excluded unless
 * inclusive) are appended to the entity's buffer; every window of the label ends there and only
 * its tail moves, forward: each event enters and leaves each window once (exact sums, monotonic
 * deques for min/max, counted values for distinct, prefix counts), and one reused
 * {@link SpecificInternalRow} is emitted per label row.
 *
 * <p>Why not Spark's window functions: a sliding {@code rangeBetween} frame re-folds its buffer,
 * quadratic on a skewed entity. Why not {@code sortWithinPartitions}: it was the largest cost
 * (half the time at 2M events, twice the hand-written PySpark's at 10M); grouping by entity ids
 * and sorting each entity's short run of primitives is cheap. Why
 * not a UDF or {@code applyInArrow}: rows would leave the JVM (Arrow, a Python worker) or become
 * boxed external {@code Row}s; physical rows are read by ordinal with primitive getters, as
 * {@link SparkMojoScorer} does. The price: a partition is held in memory while it is grouped.
 *
 * <p>Statistics over a label's window (events of its entity with {@code t - w <= time < t}):
 * {@code count}/{@code n} non-null values; {@code sum} the exact sum of the finite values
 * rounded once to nearest even ({@link ExactSum}; null with both infinities, else the infinity
 * present); {@code min}/{@code max} (+0.0 for a zero); {@code std} Welford's fold in event order
 * as Spark's {@code stddev_samp}; {@code last} the greatest value at the latest time with a
 * value; {@code last_time} that time; {@code distinct} distinct values (-0.0 as 0.0). A label
 * with a null key or time has the empty window.
 */
public final class FeatureWindows {
    private FeatureWindows() {}

    /**
     * One row per row of {@code labels}: its {@code spine} columns, then one nullable column per
     * statistic named as given: double, except {@code last} of a raw input, which keeps the input
     * column's type.
     *
     * @param events event rows (keys, time, inputs), hash-partitioned by the entity keys; or, with
     *               a {@code partition} column ({@link #packable}), each row's partition as
     *               {@code pmod(hash(keys), n)}, moved there by {@link EventBlocks}
     * @param labels label rows (spine columns and time), partitioned as {@code events}: the
     *               same key types, the same number of partitions
     * @param config JSON: {@code keys} (column names), {@code time} (long µs), {@code spine}
     *               (label columns to output), {@code inputs}
     *               ({@code [{"name", "numeric"}]}, a null name: 1.0 for every event), {@code stats}
     *               ({@code [{"name", "kind", "input", "micros"}]}), {@code inclusive} (events at
     *               a label's time are in its windows), {@code order} (inputs ordering events at
     *               equal times), {@code partition} (null, or the events' partition column)
     */
    public static Dataset<Row> compute(Dataset<Row> events, Dataset<Row> labels, String config) {
        org.apache.spark.sql.classic.Dataset<Row> ev = (org.apache.spark.sql.classic.Dataset<Row>) events;
        org.apache.spark.sql.classic.Dataset<Row> lb = (org.apache.spark.sql.classic.Dataset<Row>) labels;
        Plan plan = new Plan(ev.schema(), lb.schema(), config);
        RDD<InternalRow> eventRows = ev.queryExecution().toRdd();
        RDD<InternalRow> labelRows = lb.queryExecution().toRdd();
        if (plan.partitionAt >= 0) {
            if (!EventBlocks.packable(ev.schema(), plan.partition)) {
                throw new IllegalArgumentException("event columns " + ev.schema().simpleString()
                    + " are not all integral, boolean, date, timestamp or floating; repartition them instead");
            }
            eventRows = EventBlocks.exchange(eventRows, ev.schema(), plan.partitionAt, labelRows.getNumPartitions());
        }
        if (eventRows.getNumPartitions() != labelRows.getNumPartitions()) {
            throw new IllegalArgumentException("events in " + eventRows.getNumPartitions()
                + " partitions but labels in " + labelRows.getNumPartitions() + "; partition both alike");
        }
        RDD<InternalRow> out = eventRows.toJavaRDD().zipPartitions(labelRows.toJavaRDD(), new Pass(plan)).rdd();
        return ev.sparkSession().internalCreateDataFrame(out, plan.output, false);
    }

    /** Whether the event rows of {@code events}, all but their {@code partition} column, can be
     * moved by the columnar exchange ({@link EventBlocks}): every column integral, boolean, date,
     * timestamp or floating. */
    public static boolean packable(Dataset<Row> events, String partition) {
        return EventBlocks.packable(events.schema(), partition);
    }

    // --- values: how a column is held ---------------------------------------------------------

    /** Storage classes: integral-like values as longs, floating as doubles, strings, others. */
    static final int LONG = 0, DOUBLE = 1, STRING = 2, OBJECT = 3;

    static int storage(DataType t) {
        if (t instanceof LongType || t instanceof TimestampType || t instanceof TimestampNTZType
            || t instanceof IntegerType || t instanceof DateType || t instanceof ShortType
            || t instanceof ByteType || t instanceof BooleanType) return LONG;
        if (t instanceof DoubleType || t instanceof FloatType) return DOUBLE;
        if (t instanceof StringType) return STRING;
        return OBJECT;
    }

    static long readLong(InternalRow row, int o, DataType t) {
        if (t instanceof LongType || t instanceof TimestampType || t instanceof TimestampNTZType) return row.getLong(o);
        if (t instanceof IntegerType || t instanceof DateType) return row.getInt(o);
        if (t instanceof ShortType) return row.getShort(o);
        if (t instanceof ByteType) return row.getByte(o);
        return row.getBoolean(o) ? 1 : 0;
    }

    static void writeLong(SpecificInternalRow out, int i, DataType t, long v) {
        if (t instanceof LongType || t instanceof TimestampType || t instanceof TimestampNTZType) out.setLong(i, v);
        else if (t instanceof IntegerType || t instanceof DateType) out.setInt(i, (int) v);
        else if (t instanceof ShortType) out.setShort(i, (short) v);
        else if (t instanceof ByteType) out.setByte(i, (byte) v);
        else out.setBoolean(i, v != 0);
    }

    static double readDouble(InternalRow row, int o, DataType t) {
        return t instanceof FloatType ? row.getFloat(o) : row.getDouble(o);
    }

    static void writeDouble(SpecificInternalRow out, int i, DataType t, double v) {
        if (t instanceof FloatType) out.setFloat(i, (float) v);
        else out.setDouble(i, v);
    }

    /** A number as a double (NaN for null), whatever its numeric type. */
    static double readNumber(InternalRow row, int o, DataType t) {
        if (row.isNullAt(o)) return Double.NaN;
        if (t instanceof DoubleType) return row.getDouble(o);
        if (t instanceof DecimalType) {
            DecimalType d = (DecimalType) t;
            return row.getDecimal(o, d.precision(), d.scale()).toDouble();
        }
        if (storage(t) == DOUBLE) return readDouble(row, o, t);
        return readLong(row, o, t);
    }

    /** A non-null value of storage {@code STRING} or {@code OBJECT}, copied out of the row. */
    static Object readObject(InternalRow row, int o, DataType t) {
        if (t instanceof StringType) return row.getUTF8String(o).clone();
        return InternalRow$.MODULE$.copyValue(row.get(o, t));
    }

    // --- the plan, resolved on the driver ------------------------------------------------------

    static final int COUNT = 0, SUM = 1, MIN = 2, MAX = 3, STD = 4, LAST = 5, LAST_TIME = 6, DISTINCT = 7;
    static final List<String> KINDS = Arrays.asList("count", "sum", "min", "max", "std", "last", "last_time", "distinct");

    /** The ordinal of an input with no column: 1.0 for every event (the plain event count's). */
    static final int EVERY_EVENT = -1;

    /** The configuration bound to the input schema: ordinals, types and the output schema. */
    static final class Plan implements Serializable {
        private static final long serialVersionUID = 1L;
        final int[] keyAt;
        final DataType[] keyType;
        final int[] labelKeyAt;
        final int timeAt, labelTimeAt;
        final int[] spineAt;
        final DataType[] spineType;
        /** The events' partition column (-1: none, the events are partitioned already). */
        final String partition;
        final int partitionAt;
        final int[] inputAt;
        final DataType[] inputType;
        final boolean[] numeric;
        final int[] inputStorage;
        /** Events at a label's own time are in its window. */
        final boolean inclusive;
        /** Inputs whose values order the events at equal times (those std folds). */
        final int[] order;
        final int[] statKind, statInput, statFrame;
        /** Distinct (input, micros) pairs: one running window each. */
        final int[] frameInput;
        final long[] frameMicros;
        final boolean[] frameSum, frameMin, frameMax, frameDistinct;
        final StructType output;

        Plan(StructType schema, StructType labels, String config) {
            JsonNode c;
            try {
                c = new ObjectMapper().readTree(config);
            } catch (IOException e) {
                throw new IllegalArgumentException("feature windows configuration is not JSON: " + config, e);
            }
            Map<String, Integer> position = new HashMap<>();
            String[] names = schema.fieldNames();
            for (int i = 0; i < names.length; i++) position.putIfAbsent(names[i], i);
            Map<String, Integer> labelPosition = new HashMap<>();
            String[] labelNames = labels.fieldNames();
            for (int i = 0; i < labelNames.length; i++) labelPosition.putIfAbsent(labelNames[i], i);
            keyAt = ordinals(c.get("keys"), position);
            keyType = types(keyAt, schema);
            labelKeyAt = ordinals(c.get("keys"), labelPosition);
            if (!Arrays.equals(keyType, types(labelKeyAt, labels))) {
                throw new IllegalArgumentException("entity keys typed " + Arrays.toString(keyType) + " in the events but "
                    + Arrays.toString(types(labelKeyAt, labels)) + " in the labels; cast them alike");
            }
            timeAt = ordinal(c.get("time").asText(), position);
            labelTimeAt = ordinal(c.get("time").asText(), labelPosition);
            spineAt = ordinals(c.get("spine"), labelPosition);
            spineType = types(spineAt, labels);
            JsonNode part = c.get("partition");
            partition = part == null || part.isNull() ? null : part.asText();
            partitionAt = partition == null ? -1 : ordinal(partition, position);
            JsonNode inputs = c.get("inputs");
            inputAt = new int[inputs.size()];
            numeric = new boolean[inputs.size()];
            for (int i = 0; i < inputAt.length; i++) {
                JsonNode name = inputs.get(i).get("name");
                inputAt[i] = name.isNull() ? EVERY_EVENT : ordinal(name.asText(), position);
                numeric[i] = inputs.get(i).get("numeric").asBoolean();
            }
            inputType = new DataType[inputAt.length];
            for (int i = 0; i < inputAt.length; i++) {
                inputType[i] = inputAt[i] == EVERY_EVENT ? DataTypes.DoubleType : schema.fields()[inputAt[i]].dataType();
            }
            inputStorage = new int[inputAt.length];
            for (int i = 0; i < inputAt.length; i++) inputStorage[i] = numeric[i] ? DOUBLE : storage(inputType[i]);
            inclusive = c.get("inclusive").asBoolean();
            JsonNode ordering = c.get("order");
            order = new int[ordering.size()];
            for (int k = 0; k < order.length; k++) order[k] = ordering.get(k).asInt();
            JsonNode stats = c.get("stats");
            int n = stats.size();
            statKind = new int[n];
            statInput = new int[n];
            statFrame = new int[n];
            List<StructField> fields = new ArrayList<>();
            for (int at : spineAt) fields.add(labels.fields()[at]);
            Map<String, Integer> frames = new LinkedHashMap<>();
            for (int s = 0; s < n; s++) {
                JsonNode stat = stats.get(s);
                String kind = stat.get("kind").asText();
                statKind[s] = kind.equals("n") ? COUNT : KINDS.indexOf(kind);
                if (statKind[s] < 0) throw new IllegalArgumentException("unknown statistic kind " + kind);
                statInput[s] = stat.get("input").asInt();
                long micros = stat.get("micros").asLong();
                statFrame[s] = frames.computeIfAbsent(statInput[s] + "/" + micros, k -> frames.size());
                boolean raw = statKind[s] == LAST && !numeric[statInput[s]];
                fields.add(DataTypes.createStructField(stat.get("name").asText(),
                    raw ? inputType[statInput[s]] : DataTypes.DoubleType, true));
            }
            int f = frames.size();
            frameInput = new int[f];
            frameMicros = new long[f];
            frameSum = new boolean[f];
            frameMin = new boolean[f];
            frameMax = new boolean[f];
            frameDistinct = new boolean[f];
            for (int s = 0; s < n; s++) {
                int k = statFrame[s];
                frameInput[k] = statInput[s];
                frameMicros[k] = stats.get(s).get("micros").asLong();
                frameSum[k] |= statKind[s] == SUM;
                frameMin[k] |= statKind[s] == MIN;
                frameMax[k] |= statKind[s] == MAX;
                frameDistinct[k] |= statKind[s] == DISTINCT;
            }
            output = DataTypes.createStructType(fields);
        }

        private static int ordinal(String name, Map<String, Integer> position) {
            Integer at = position.get(name);
            if (at == null) throw new IllegalArgumentException("column " + name + " is not in the frame");
            return at;
        }

        private static int[] ordinals(JsonNode names, Map<String, Integer> position) {
            int[] at = new int[names.size()];
            for (int i = 0; i < at.length; i++) at[i] = ordinal(names.get(i).asText(), position);
            return at;
        }

        private static DataType[] types(int[] at, StructType schema) {
            DataType[] t = new DataType[at.length];
            for (int i = 0; i < at.length; i++) t[i] = schema.fields()[at[i]].dataType();
            return t;
        }
    }

    // --- the pass -------------------------------------------------------------------------------

    /**
     * One partition: reads every row into primitive columns, groups the rows by entity (a
     * counting sort on dense entity ids), sorts each entity's events by (time, the std inputs'
     * values ascending, nulls last) and its labels by time, then walks each entity's labels in
     * time order, appending the events up to each label's window end to the entity's buffer.
     * The partition is held in memory once, as primitive arrays and copies of the label rows.
     */
    static final class Pass implements FlatMapFunction2<Iterator<InternalRow>, Iterator<InternalRow>, InternalRow> {
        private static final long serialVersionUID = 1L;
        private final Plan plan;

        Pass(Plan plan) {
            this.plan = plan;
        }

        @Override
        public Iterator<InternalRow> call(Iterator<InternalRow> events, Iterator<InternalRow> labels) {
            Partition part = new Partition(plan);
            while (events.hasNext()) part.addEvent(events.next());
            while (labels.hasNext()) part.addLabel(labels.next());
            part.group();
            Entity entity = new Entity(plan);
            SpecificInternalRow out = new SpecificInternalRow(plan.output);
            return new Iterator<InternalRow>() {
                private int nextNoEntity;
                private int current = -1;
                private int label, labelEnd, event, eventEnd;

                @Override
                public boolean hasNext() {
                    if (nextNoEntity < part.noEntity.size()) return true;
                    while (label == labelEnd) {
                        if (++current >= part.entities) return false;
                        label = part.labelStart[current];
                        labelEnd = part.labelStart[current + 1];
                        event = part.eventStart[current];
                        eventEnd = part.eventStart[current + 1];
                        entity.reset();
                    }
                    return true;
                }

                @Override
                public InternalRow next() {
                    if (!hasNext()) throw new NoSuchElementException();
                    if (nextNoEntity < part.noEntity.size()) {
                        entity.emit(part.noEntity.get(nextNoEntity++), 0, true, out);
                        return out;
                    }
                    int at = part.labelOrder[label++];
                    long t = part.labelTime[at];
                    while (event < eventEnd) {
                        long e = part.eventTime[part.eventOrder[event]];
                        if (e > t || e == t && !plan.inclusive) break;
                        entity.append(part, part.eventOrder[event++]);
                    }
                    entity.emit(part.labelRows[at], t, false, out);
                    return out;
                }
            };
        }
    }

    /** A partition's rows: entity ids, times and input values of the events, entity ids, times
     * and copies of the labels. */
    static final class Partition {
        private final Plan plan;
        private final EntityIds ids;
        private int events, labelCount;
        private long[] time = new long[4096];
        private int[] entity = new int[4096];
        private Input[] inputs;
        private long[] labelTimes = new long[1024];
        private int[] labelEntity = new int[1024];
        private InternalRow[] labels = new InternalRow[1024];
        /** Labels with a null key or time: their window is empty. */
        final List<InternalRow> noEntity = new ArrayList<>();
        int entities;
        /** After {@link #group}: per entity e, its events are eventOrder[eventStart[e], eventStart[e + 1])
         * (positions in eventTime and eventInputs, in their order), its labels likewise. */
        int[] eventStart, labelStart, eventOrder, labelOrder;
        long[] eventTime, labelTime;
        Input[] eventInputs;
        InternalRow[] labelRows;

        Partition(Plan plan) {
            this.plan = plan;
            ids = new EntityIds(plan);
            inputs = new Input[plan.inputAt.length];
            for (int i = 0; i < inputs.length; i++) inputs[i] = new Input(plan.inputStorage[i], time.length, false);
        }

        void addEvent(InternalRow row) {
            int id = ids.id(row, plan.keyAt);
            if (id < 0 || row.isNullAt(plan.timeAt)) return;
            if (events == time.length) {
                int capacity = events * 2;
                time = Arrays.copyOf(time, capacity);
                entity = Arrays.copyOf(entity, capacity);
                for (Input input : inputs) input.grow(capacity);
            }
            time[events] = row.getLong(plan.timeAt);
            entity[events] = id;
            for (int i = 0; i < inputs.length; i++) {
                inputs[i].read(events, row, plan.inputAt[i], plan.inputType[i], plan.numeric[i]);
            }
            events++;
        }

        void addLabel(InternalRow row) {
            int id = ids.id(row, plan.labelKeyAt);
            if (id < 0 || row.isNullAt(plan.labelTimeAt)) {
                noEntity.add(row.copy());
                return;
            }
            if (labelCount == labels.length) {
                int capacity = labelCount * 2;
                labelTimes = Arrays.copyOf(labelTimes, capacity);
                labelEntity = Arrays.copyOf(labelEntity, capacity);
                labels = Arrays.copyOf(labels, capacity);
            }
            labelTimes[labelCount] = row.getLong(plan.labelTimeAt);
            labelEntity[labelCount] = id;
            labels[labelCount] = row.copy();
            labelCount++;
        }

        /** Counting sort by entity, then each entity's events and labels in their order. */
        void group() {
            entities = ids.count();
            eventStart = starts(entity, events);
            labelStart = starts(labelEntity, labelCount);
            eventOrder = byEntity(entity, events, eventStart);
            labelOrder = byEntity(labelEntity, labelCount, labelStart);
            // Each entity's rows gathered together once, so that sorting and walking an entity
            // touch nearby memory rather than the whole partition's arrays.
            eventTime = new long[events];
            for (int k = 0; k < events; k++) eventTime[k] = time[eventOrder[k]];
            eventInputs = new Input[inputs.length];
            for (int i = 0; i < inputs.length; i++) eventInputs[i] = inputs[i].gather(eventOrder, events);
            labelTime = new long[labelCount];
            labelRows = new InternalRow[labelCount];
            for (int k = 0; k < labelCount; k++) {
                labelTime[k] = labelTimes[labelOrder[k]];
                labelRows[k] = labels[labelOrder[k]];
            }
            time = null;
            entity = null;
            inputs = null;
            labelTimes = null;
            labelEntity = null;
            labels = null;
            for (int k = 0; k < events; k++) eventOrder[k] = k;
            for (int k = 0; k < labelCount; k++) labelOrder[k] = k;
            int[] scratch = new int[Math.max(events, labelCount)];
            long[] et = eventTime, lt = labelTime;
            IndexOrder eventsOrder = (a, b) -> Long.compare(et[a], et[b]);
            if (plan.order.length > 0) {
                double[][] values = new double[plan.order.length][];
                for (int k = 0; k < values.length; k++) values[k] = eventInputs[plan.order[k]].doubles;
                eventsOrder = (a, b) -> {
                    int c = Long.compare(et[a], et[b]);
                    for (int k = 0; c == 0 && k < values.length; k++) c = ascendingNullsLast(values[k][a], values[k][b]);
                    return c;
                };
            }
            IndexOrder labelsOrder = (a, b) -> Long.compare(lt[a], lt[b]);
            TimeKeys eventKeys = plan.order.length > 0 ? null : new TimeKeys(et, eventStart, entities);
            TimeKeys labelKeys = new TimeKeys(lt, labelStart, entities);
            for (int e = 0; e < entities; e++) {
                if (eventKeys == null || !eventKeys.sort(eventOrder, eventStart[e], eventStart[e + 1])) {
                    sort(eventOrder, eventStart[e], eventStart[e + 1], eventsOrder, scratch);
                }
                if (!labelKeys.sort(labelOrder, labelStart[e], labelStart[e + 1])) {
                    sort(labelOrder, labelStart[e], labelStart[e + 1], labelsOrder, scratch);
                }
            }
        }

        /** Where each entity's rows start in entity order, and the end, from rows' entity ids. */
        private int[] starts(int[] ofRow, int n) {
            int[] start = new int[entities + 1];
            for (int r = 0; r < n; r++) start[ofRow[r] + 1]++;
            for (int e = 0; e < entities; e++) start[e + 1] += start[e];
            return start;
        }

        /** Row numbers grouped by entity, in their reading order within an entity. */
        private int[] byEntity(int[] ofRow, int n, int[] start) {
            int[] order = new int[n];
            int[] next = Arrays.copyOf(start, entities);
            for (int r = 0; r < n; r++) order[next[ofRow[r]]++] = r;
            return order;
        }
    }

    /** Doubles ascending, NaN (null) last, -0.0 equal to 0.0. */
    static int ascendingNullsLast(double a, double b) {
        if (a != a) return b != b ? 0 : 1;
        if (b != b) return -1;
        return a < b ? -1 : a > b ? 1 : 0;
    }

    interface IndexOrder {
        int compare(int a, int b);
    }

    /**
     * Sorts a group's positions by time alone, stably, as primitive longs: each position's time
     * minus the least, shifted left past the bits of its place in the group, which breaks ties
     * by that place. {@code Arrays.sort} of longs is several times faster than a merge sort of
     * indices through a comparator (a sixth of the kernel's time at 10M events). Groups whose
     * times and length do not fit 63 bits together (a hot entity over a wide span of times) are
     * left to the comparator.
     */
    static final class TimeKeys {
        private final long[] time;
        private final long least;
        private final int spanBits;
        private final long[] keys;

        /** For the groups {@code [start[g], start[g + 1])} of {@code time}, {@code g < groups}. */
        TimeKeys(long[] time, int[] start, int groups) {
            this.time = time;
            long low = Long.MAX_VALUE, high = Long.MIN_VALUE;
            int longest = 0;
            for (long t : time) {
                low = Math.min(low, t);
                high = Math.max(high, t);
            }
            for (int g = 0; g < groups; g++) longest = Math.max(longest, start[g + 1] - start[g]);
            long span = high - low;  // negative when it overflows: no group fits
            least = low;
            spanBits = time.length == 0 ? 0 : span < 0 ? 64 : 64 - Long.numberOfLeadingZeros(span);
            keys = new long[longest];
        }

        /** Sorts {@code order[from, to)}, which holds {@code from, ..., to - 1}, by time; false
         * (nothing changed) when this group does not fit. */
        boolean sort(int[] order, int from, int to) {
            int n = to - from;
            if (n < 2) return true;
            int placeBits = 32 - Integer.numberOfLeadingZeros(n - 1);
            if (spanBits + placeBits > 63) return false;
            for (int k = 0; k < n; k++) keys[k] = ((time[from + k] - least) << placeBits) | k;
            Arrays.sort(keys, 0, n);
            long place = (1L << placeBits) - 1;
            for (int k = 0; k < n; k++) order[from + k] = from + (int) (keys[k] & place);
            return true;
        }
    }

    /** A stable sort of {@code index[from, to)}: insertion sort when short, else merge sort. */
    static void sort(int[] index, int from, int to, IndexOrder order, int[] scratch) {
        if (to - from <= 24) {
            for (int i = from + 1; i < to; i++) {
                int v = index[i];
                int j = i - 1;
                while (j >= from && order.compare(index[j], v) > 0) {
                    index[j + 1] = index[j];
                    j--;
                }
                index[j + 1] = v;
            }
            return;
        }
        int middle = (from + to) >>> 1;
        sort(index, from, middle, order, scratch);
        sort(index, middle, to, order, scratch);
        if (order.compare(index[middle - 1], index[middle]) <= 0) return;
        System.arraycopy(index, from, scratch, from, to - from);
        int i = from, j = middle, k = from;
        while (i < middle && j < to) index[k++] = order.compare(scratch[j], scratch[i]) < 0 ? scratch[j++] : scratch[i++];
        while (i < middle) index[k++] = scratch[i++];
        while (j < to) index[k++] = scratch[j++];
    }

    /** Dense ids of the partition's entities (-1 for a null key); a single long key unboxed. */
    static final class EntityIds {
        private final DataType[] type;
        private final int[] storage;
        private final boolean singleLong;
        private final HashMap<Object, Integer> byValue = new HashMap<>();
        /** Open addressing, key and id + 1 side by side (one cache line per probe); 0: empty. */
        private long[] slots = new long[2 << 12];
        private int count;

        EntityIds(Plan plan) {
            type = plan.keyType;
            storage = new int[type.length];
            for (int i = 0; i < type.length; i++) storage[i] = storage(type[i]);
            singleLong = type.length == 1 && storage[0] == LONG;
        }

        int count() {
            return count;
        }

        /** The id of the entity of {@code row}, whose keys are at {@code at}. */
        int id(InternalRow row, int[] at) {
            for (int o : at) if (row.isNullAt(o)) return -1;
            if (singleLong) return longId(readLong(row, at[0], type[0]));
            Object key;
            if (at.length == 1) {
                key = value(row, at[0], 0);
            } else {
                Object[] values = new Object[at.length];
                for (int i = 0; i < at.length; i++) values[i] = value(row, at[i], i);
                key = Arrays.asList(values);
            }
            Integer id = byValue.get(key);
            if (id == null) {
                id = count++;
                byValue.put(key, id);
            }
            return id;
        }

        private Object value(InternalRow row, int o, int i) {
            switch (storage[i]) {
                case LONG: return readLong(row, o, type[i]);
                case DOUBLE: return readDouble(row, o, type[i]);
                default: return readObject(row, o, type[i]);
            }
        }

        /** Grows at half full. */
        private int longId(long key) {
            int mask = (slots.length >> 1) - 1;
            int slot = mix(key) & mask;
            while (slots[2 * slot + 1] != 0) {
                if (slots[2 * slot] == key) return (int) slots[2 * slot + 1] - 1;
                slot = (slot + 1) & mask;
            }
            slots[2 * slot] = key;
            slots[2 * slot + 1] = count + 1;
            if (4 * (count + 1) > slots.length) grow();
            return count++;
        }

        private void grow() {
            long[] old = slots;
            slots = new long[old.length * 2];
            int mask = (slots.length >> 1) - 1;
            for (int s = 0; s < old.length; s += 2) {
                if (old[s + 1] == 0) continue;
                int slot = mix(old[s]) & mask;
                while (slots[2 * slot + 1] != 0) slot = (slot + 1) & mask;
                slots[2 * slot] = old[s];
                slots[2 * slot + 1] = old[s + 1];
            }
        }

        private static int mix(long key) {
            long h = key * 0x9E3779B97F4A7C15L;
            return (int) (h ^ (h >>> 32));
        }
    }

    /** One entity's buffered events (times and input values) and the running windows over them. */
    static final class Entity {
        private final Plan plan;
        private int size;
        private long[] time = new long[1024];
        private final Input[] inputs;
        private final Frame[] frames;

        Entity(Plan plan) {
            this.plan = plan;
            inputs = new Input[plan.inputAt.length];
            for (int i = 0; i < inputs.length; i++) inputs[i] = new Input(plan.inputStorage[i], time.length, true);
            frames = new Frame[plan.frameInput.length];
            for (int f = 0; f < frames.length; f++) {
                frames[f] = new Frame(plan.frameMicros[f], inputs[plan.frameInput[f]],
                    plan.frameSum[f], plan.frameMin[f], plan.frameMax[f], plan.frameDistinct[f]);
            }
        }

        void reset() {
            size = 0;
            for (Input input : inputs) input.reset();
            for (Frame frame : frames) frame.reset();
        }

        /** Appends the partition's (gathered) event {@code r}: the next in (time, std values) order. */
        void append(Partition part, int r) {
            if (size == time.length) {
                time = Arrays.copyOf(time, size * 2);
                for (Input input : inputs) input.grow(size * 2);
            }
            long t = part.eventTime[r];
            time[size] = t;
            for (int i = 0; i < inputs.length; i++) inputs[i].append(size, part.eventInputs[i], r, t);
            size++;
        }

        /** The label's output row: spine columns, then each statistic of its window. */
        void emit(InternalRow row, long t, boolean empty, SpecificInternalRow out) {
            for (int i = 0; i < plan.spineAt.length; i++) {
                int o = plan.spineAt[i];
                DataType type = plan.spineType[i];
                if (row.isNullAt(o)) {
                    out.setNullAt(i);
                    continue;
                }
                switch (storage(type)) {
                    case LONG: writeLong(out, i, type, readLong(row, o, type)); break;
                    case DOUBLE: writeDouble(out, i, type, readDouble(row, o, type)); break;
                    default: out.update(i, readObject(row, o, type));
                }
            }
            int first = plan.spineAt.length;
            if (!empty) {
                for (Frame frame : frames) frame.slide(t, time, size);
            }
            for (int s = 0; s < plan.statKind.length; s++) {
                int at = first + s;
                int kind = plan.statKind[s];
                if (empty) {
                    if (kind == COUNT || kind == DISTINCT) out.setDouble(at, 0.0);
                    else out.setNullAt(at);
                    continue;
                }
                Frame frame = frames[plan.statFrame[s]];
                Input input = frame.input;
                int n = input.prefix[size] - input.prefix[frame.tail];
                switch (kind) {
                    case COUNT: out.setDouble(at, n); break;
                    case DISTINCT: out.setDouble(at, frame.distinct.size()); break;
                    case SUM: {
                        ExactSum sum = frame.sum;
                        if (n == 0 || sum.posInf > 0 && sum.negInf > 0) out.setNullAt(at);
                        else if (sum.posInf > 0) out.setDouble(at, Double.POSITIVE_INFINITY);
                        else if (sum.negInf > 0) out.setDouble(at, Double.NEGATIVE_INFINITY);
                        else out.setDouble(at, sum.value());
                        break;
                    }
                    case MIN:
                    case MAX: {
                        Deque deque = kind == MIN ? frame.min : frame.max;
                        if (deque.isEmpty()) out.setNullAt(at);
                        else out.setDouble(at, input.doubles[deque.front()] + 0.0);
                        break;
                    }
                    case STD: {
                        double std = input.std(frame.tail, size);
                        if (std != std) out.setNullAt(at);
                        else out.setDouble(at, std);
                        break;
                    }
                    case LAST_TIME:
                        if (input.last < frame.tail) out.setNullAt(at);
                        else out.setDouble(at, input.lastTime);
                        break;
                    default:  // LAST
                        if (input.last < frame.tail) out.setNullAt(at);
                        else input.writeLast(out, at, plan.output.fields()[at].dataType());
                }
            }
        }
    }

    /** One input's values (one array by storage): a partition's, as read, or an entity's buffer,
     * with prefix counts of its non-null values and its latest non-null event with the greatest
     * value of that event's time. */
    static final class Input {
        private final int storage;
        double[] doubles;
        long[] longs;
        boolean[] nulls;
        Object[] objects;
        /** prefix[i]: non-null values among the first i events. */
        int[] prefix;
        int last = -1;
        long lastTime;
        private double bestDouble;
        private long bestLong;
        private Object bestObject;

        Input(int storage, int capacity, boolean counted) {
            this.storage = storage;
            if (counted) prefix = new int[capacity + 1];
            if (storage == DOUBLE) doubles = new double[capacity];
            else if (storage == LONG) {
                longs = new long[capacity];
                nulls = new boolean[capacity];
            } else objects = new Object[capacity];
        }

        void grow(int capacity) {
            if (prefix != null) prefix = Arrays.copyOf(prefix, capacity + 1);
            if (doubles != null) doubles = Arrays.copyOf(doubles, capacity);
            if (longs != null) {
                longs = Arrays.copyOf(longs, capacity);
                nulls = Arrays.copyOf(nulls, capacity);
            }
            if (objects != null) objects = Arrays.copyOf(objects, capacity);
        }

        void reset() {
            last = -1;
            bestObject = null;
        }

        /** Reads slot {@code i} from {@code row}'s column {@code o}: numeric inputs as doubles,
         * NaN for null. */
        void read(int i, InternalRow row, int o, DataType type, boolean numeric) {
            if (o == EVERY_EVENT) {
                doubles[i] = 1.0;
                return;
            }
            switch (storage) {
                case DOUBLE:
                    doubles[i] = numeric ? readNumber(row, o, type)
                        : row.isNullAt(o) ? Double.NaN : readDouble(row, o, type);
                    break;
                case LONG:
                    nulls[i] = row.isNullAt(o);
                    if (!nulls[i]) longs[i] = readLong(row, o, type);
                    break;
                default:
                    objects[i] = row.isNullAt(o) ? null : readObject(row, o, type);
            }
        }

        /** Slots {@code order[0, n)} of this input, in that order. */
        Input gather(int[] order, int n) {
            Input out = new Input(storage, Math.max(n, 1), false);
            for (int k = 0; k < n; k++) {
                int r = order[k];
                switch (storage) {
                    case DOUBLE: out.doubles[k] = doubles[r]; break;
                    case LONG:
                        out.nulls[k] = nulls[r];
                        out.longs[k] = longs[r];
                        break;
                    default: out.objects[k] = objects[r];
                }
            }
            return out;
        }

        /** Appends {@code from}'s slot {@code r}, an event at time {@code t}, as slot {@code i}. */
        void append(int i, Input from, int r, long t) {
            switch (storage) {
                case DOUBLE: doubles[i] = from.doubles[r]; break;
                case LONG:
                    nulls[i] = from.nulls[r];
                    longs[i] = from.longs[r];
                    break;
                default: objects[i] = from.objects[r];
            }
            present(i, t, isPresent(i));
        }

        boolean isPresent(int i) {
            switch (storage) {
                case DOUBLE: return doubles[i] == doubles[i];
                case LONG: return !nulls[i];
                default: return objects[i] != null;
            }
        }

        /** Event {@code i} at time {@code t} was appended: count it, and keep the latest value. */
        @SuppressWarnings({"unchecked", "rawtypes"})
        void present(int i, long t, boolean isPresent) {
            prefix[i + 1] = prefix[i] + (isPresent ? 1 : 0);
            if (!isPresent) return;
            boolean tie = last >= 0 && lastTime == t;
            switch (storage) {
                case DOUBLE:
                    if (!tie || doubles[i] > bestDouble) bestDouble = doubles[i];
                    break;
                case LONG:
                    if (!tie || longs[i] > bestLong) bestLong = longs[i];
                    break;
                default:
                    if (!tie || ((Comparable) objects[i]).compareTo(bestObject) > 0) bestObject = objects[i];
            }
            last = i;
            lastTime = t;
        }

        void writeLast(SpecificInternalRow out, int at, DataType type) {
            switch (storage) {
                case DOUBLE: writeDouble(out, at, type, bestDouble); break;
                case LONG: writeLong(out, at, type, bestLong); break;
                default: out.update(at, bestObject);
            }
        }

        /** Sample standard deviation of the non-null values of events [from, to), folded in
         * buffer order by Welford's update as Spark's {@code stddev_samp}; NaN when under two. */
        double std(int from, int to) {
            double n = 0.0, avg = 0.0, m2 = 0.0;
            for (int i = from; i < to; i++) {
                double x = doubles[i];
                if (x != x) continue;
                double newN = n + 1.0;
                double delta = x - avg;
                double deltaN = delta / newN;
                avg = avg + deltaN;
                m2 = m2 + delta * (delta - deltaN);
                n = newN;
            }
            return n < 2.0 ? Double.NaN : Math.sqrt(m2 / (n - 1.0));
        }

        /** Event {@code i}'s value as a distinct-count key: doubles with -0.0 as 0.0. */
        Object key(int i) {
            switch (storage) {
                case DOUBLE: return doubles[i] + 0.0;
                case LONG: return longs[i];
                default: return objects[i];
            }
        }
    }

    /** One window length over one input: events [tail, entered) are in its running state. */
    static final class Frame {
        private final long micros;
        final Input input;
        final ExactSum sum;
        final Deque min, max;
        final Map<Object, int[]> distinct;
        private final boolean stateful;
        int tail;
        private int entered;

        Frame(long micros, Input input, boolean sum, boolean min, boolean max, boolean distinct) {
            this.micros = micros;
            this.input = input;
            this.sum = sum ? new ExactSum() : null;
            this.min = min ? new Deque(true) : null;
            this.max = max ? new Deque(false) : null;
            this.distinct = distinct ? new HashMap<>() : null;
            stateful = sum || min || max || distinct;
        }

        void reset() {
            tail = 0;
            entered = 0;
            if (sum != null) sum.clear();
            if (min != null) min.clear();
            if (max != null) max.clear();
            if (distinct != null) distinct.clear();
        }

        /** Moves the window to end at the buffer's end for a label at {@code t}: events older
         * than {@code t - micros} leave, new ones enter (those already too old never enter). */
        void slide(long t, long[] time, int size) {
            long low = t < Long.MIN_VALUE + micros ? Long.MIN_VALUE : t - micros;
            while (tail < entered && time[tail] < low) {
                if (stateful) leave(tail);
                tail++;
            }
            if (tail == entered) {
                while (tail < size && time[tail] < low) tail++;
                entered = tail;
            }
            for (; entered < size; entered++) if (stateful) enter(entered);
            if (min != null) min.evict(tail);
            if (max != null) max.evict(tail);
        }

        private void enter(int i) {
            if (!input.isPresent(i)) return;
            if (sum != null) sum.add(input.doubles[i], 1);
            if (min != null) min.push(i, input.doubles);
            if (max != null) max.push(i, input.doubles);
            if (distinct != null) distinct.computeIfAbsent(input.key(i), k -> new int[1])[0]++;
        }

        private void leave(int i) {
            if (!input.isPresent(i)) return;
            if (sum != null) sum.add(input.doubles[i], -1);
            if (distinct != null) {
                Object key = input.key(i);
                int[] count = distinct.get(key);
                if (--count[0] == 0) distinct.remove(key);
            }
        }
    }

    /** A monotonic deque of buffer indices: its front is the window's min (or max). */
    static final class Deque {
        private final boolean min;
        private int[] at = new int[1024];
        private int head, end;

        Deque(boolean min) {
            this.min = min;
        }

        void clear() {
            head = 0;
            end = 0;
        }

        boolean isEmpty() {
            return head == end;
        }

        int front() {
            return at[head];
        }

        void push(int i, double[] values) {
            double v = values[i];
            while (end > head && (min ? values[at[end - 1]] >= v : values[at[end - 1]] <= v)) end--;
            if (end == at.length) {
                if (head > 0) {  // slide the live part down before growing
                    System.arraycopy(at, head, at, 0, end - head);
                    end -= head;
                    head = 0;
                }
                if (end == at.length) at = Arrays.copyOf(at, at.length * 2);
            }
            at[end++] = i;
        }

        void evict(int tail) {
            while (head < end && at[head] < tail) head++;
        }
    }
}
