package ai.lakescore;

import hex.ModelCategory;
import hex.genmodel.GenModel;
import org.apache.spark.SparkFiles;
import org.apache.spark.api.java.function.FlatMapFunction;
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
import org.apache.spark.sql.types.DecimalType;
import org.apache.spark.sql.types.DoubleType;
import org.apache.spark.sql.types.FloatType;
import org.apache.spark.sql.types.IntegerType;
import org.apache.spark.sql.types.LongType;
import org.apache.spark.sql.types.NullType;
import org.apache.spark.sql.types.ShortType;
import org.apache.spark.sql.types.StringType;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.unsafe.types.UTF8String;

import java.io.File;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

/**
 * Scores a Spark DataFrame with a MOJO on Catalyst's own rows, inside the executors' JVMs.
 *
 * <p>Why not a UDF: a Java UDF over a struct of the features gets every row converted to an
 * external {@code Row} (boxed values, a new object per row), which cost far more than the model
 * itself. Here the frame's physical rows ({@code queryExecution().toRdd()}, the same RDD
 * {@code Dataset.rdd()} is built on) are read by ordinal with primitive getters, and each
 * partition emits one reused {@link SpecificInternalRow} per input row, which the scan of the
 * resulting DataFrame copies into Spark's own row format. Nothing is collected: partitions
 * stream, and the work runs in the jobs of whatever action consumes the result.
 *
 * <p>Columns are bound to the model's features by name once per partition. A feature with no
 * column scores as missing in every row, as H2O's {@code predict} scores a frame that lacks a
 * training column (the Python caller decides whether that is allowed and warns).
 */
public final class SparkMojoScorer {
    private SparkMojoScorer() {}

    /**
     * This JVM's side of {@code jobs.doctor}, called on executors through Spark SQL's
     * {@code reflect}: the executor id, the Java it runs and where the genmodel classes were
     * loaded from. A JVM without this jar on its classpath cannot answer at all, which is the
     * finding.
     */
    public static String environment() {
        org.apache.spark.SparkEnv env = org.apache.spark.SparkEnv.get();
        Object genmodel = GenModel.class.getProtectionDomain().getCodeSource() == null
            ? "?" : GenModel.class.getProtectionDomain().getCodeSource().getLocation();
        return "executor=" + (env == null ? "?" : env.executorId())
            + ";java=" + System.getProperty("java.version")
            + ";java_home=" + System.getProperty("java.home")
            + ";genmodel=" + genmodel;
    }

    /**
     * This executor's side of the score job's preflight, called through Spark SQL's
     * {@code try_reflect} before anything is computed: can genmodel read the MOJO here (at its
     * path, else as shipped by {@code addFile})? Never throws: what failed is the answer, so the
     * driver can name this executor with it. {@code found} comes last: an exception's text may
     * hold any character ({@code engine.scoring.spark.ask_executors} reads it to the end).
     */
    public static String probe(String mojoPath) {
        org.apache.spark.SparkEnv env = org.apache.spark.SparkEnv.get();
        String executor = env == null ? "?" : env.executorId();
        try {
            hex.genmodel.MojoModel.load(resolve(mojoPath));
            return "executor=" + executor + ";found=loaded";
        } catch (Throwable t) {
            return "executor=" + executor + ";found=" + t;
        }
    }

    /**
     * {@code keep} columns followed by the model's outputs, named {@code outputNames}: the score
     * (double), then for classifiers the label (string), then for multinomial models one
     * probability per class (double), in the order of {@link MojoScorer#outputs}.
     *
     * @param mojoPath a MOJO readable on the driver and, at the same path or by its file name
     *                 through {@code SparkContext.addFile}, on the executors
     */
    public static Dataset<Row> score(Dataset<Row> frame, String mojoPath, String[] keep,
                                     String[] outputNames) {
        org.apache.spark.sql.classic.Dataset<Row> classic = (org.apache.spark.sql.classic.Dataset<Row>) frame;
        GenModel model = MojoScorer.model(mojoPath);
        int width = MojoScorer.outputWidth(model);
        if (outputNames.length != width) {
            throw new IllegalArgumentException(outputNames.length + " output names given for the "
                + model.getModelCategory() + " model " + mojoPath + ", which has " + width + " outputs");
        }
        StructType input = classic.schema();
        Map<String, Integer> position = positions(input);
        List<StructField> fields = new ArrayList<>();
        int[] keepAt = new int[keep.length];
        for (int i = 0; i < keep.length; i++) {
            Integer at = position.get(keep[i]);
            if (at == null) {
                throw new IllegalArgumentException("column to keep " + keep[i] + " is not in the frame");
            }
            keepAt[i] = at;
            fields.add(input.fields()[at]);
        }
        for (int k = 0; k < width; k++) {
            DataType type = k == 1 ? DataTypes.StringType : DataTypes.DoubleType;
            // Nullable as the UDF's score was, so tables written before keep the same schema.
            fields.add(DataTypes.createStructField(outputNames[k], type, true));
        }
        StructType output = DataTypes.createStructType(fields);
        // Fail on the driver, before any job, when a column cannot feed its feature.
        new Binding(model, input);
        RDD<InternalRow> rows = classic.queryExecution().toRdd();
        RDD<InternalRow> scored = rows.toJavaRDD()
            .mapPartitions(new ScorePartition(mojoPath, input, keepAt, output), true).rdd();
        return classic.sparkSession().internalCreateDataFrame(scored, output, false);
    }

    private static Map<String, Integer> positions(StructType schema) {
        Map<String, Integer> position = new HashMap<>();
        String[] names = schema.fieldNames();
        for (int i = 0; i < names.length; i++) position.putIfAbsent(names[i], i);
        return position;
    }

    /** The MOJO on this executor: at its path when that exists, else shipped by {@code addFile}. */
    static String resolve(String path) {
        if (new File(path).exists()) return path;
        return SparkFiles.get(new File(path).getName());
    }

    /** How a feature's value is read from its column. */
    private static final int MISSING = 0, DOUBLE = 1, FLOAT = 2, LONG = 3, INT = 4, SHORT = 5,
        BYTE = 6, BOOLEAN = 7, DECIMAL = 8, LEVEL = 9;

    /** One schema bound to one model's features: per feature, its column's ordinal and reader. */
    private static final class Binding {
        final int[] ordinal;
        final int[] reader;
        final int[] precision;
        final int[] scale;
        final Map<UTF8String, Integer>[] levels;
        /** Every feature is a double column. */
        final boolean allDouble;

        @SuppressWarnings("unchecked")
        Binding(GenModel model, StructType schema) {
            Map<String, Integer> position = positions(schema);
            String[] features = MojoScorer.featureNames(model);
            ordinal = new int[features.length];
            reader = new int[features.length];
            precision = new int[features.length];
            scale = new int[features.length];
            levels = new Map[features.length];
            for (int j = 0; j < features.length; j++) {
                Integer at = position.get(features[j]);
                String[] domain = model.getDomainValues(j);
                if (at == null) {
                    reader[j] = MISSING;
                    continue;
                }
                ordinal[j] = at;
                DataType type = schema.fields()[at].dataType();
                if (type instanceof NullType) {
                    reader[j] = MISSING;
                } else if (domain != null) {
                    if (!(type instanceof StringType)) {
                        throw new IllegalArgumentException("feature " + features[j] + " is categorical in the"
                            + " model but its column is " + type.simpleString() + "; cast it to string");
                    }
                    reader[j] = LEVEL;
                    levels[j] = new HashMap<>(domain.length * 2);
                    for (int k = 0; k < domain.length; k++) levels[j].put(UTF8String.fromString(domain[k]), k);
                } else {
                    reader[j] = numericReader(type, features[j]);
                    if (type instanceof DecimalType) {
                        precision[j] = ((DecimalType) type).precision();
                        scale[j] = ((DecimalType) type).scale();
                    }
                }
            }
            boolean doubles = true;
            for (int how : reader) doubles &= how == DOUBLE;
            allDouble = doubles;
        }

        private static int numericReader(DataType type, String feature) {
            if (type instanceof DoubleType) return DOUBLE;
            if (type instanceof FloatType) return FLOAT;
            if (type instanceof LongType) return LONG;
            if (type instanceof IntegerType) return INT;
            if (type instanceof ShortType) return SHORT;
            if (type instanceof ByteType) return BYTE;
            if (type instanceof BooleanType) return BOOLEAN;
            if (type instanceof DecimalType) return DECIMAL;
            throw new IllegalArgumentException("feature " + feature + " is numeric in the model but its"
                + " column is " + type.simpleString() + "; cast it to a number");
        }

        /** {@code row}'s features as {@code score0} takes them, into block row {@code r}:
         * NaN for null, missing or unseen. */
        void read(InternalRow row, double[] x, int r) {
            if (allDouble) {  // the common case, without the switch
                for (int j = 0, at = r; j < ordinal.length; j++, at += MojoScorer.Block.ROWS) {
                    int o = ordinal[j];
                    x[at] = row.isNullAt(o) ? Double.NaN : row.getDouble(o);
                }
                return;
            }
            for (int j = 0; j < reader.length; j++) {
                int how = reader[j];
                int o = ordinal[j];
                double value;
                if (how == MISSING || row.isNullAt(o)) {
                    value = Double.NaN;
                } else {
                    switch (how) {
                        case DOUBLE: value = row.getDouble(o); break;
                        case FLOAT: value = row.getFloat(o); break;
                        case LONG: value = row.getLong(o); break;
                        case INT: value = row.getInt(o); break;
                        case SHORT: value = row.getShort(o); break;
                        case BYTE: value = row.getByte(o); break;
                        case BOOLEAN: value = row.getBoolean(o) ? 1.0 : 0.0; break;
                        case DECIMAL: value = row.getDecimal(o, precision[j], scale[j]).toDouble(); break;
                        default:
                            Integer k = levels[j].get(row.getUTF8String(o));
                            value = k == null ? Double.NaN : k;
                    }
                }
                x[j * MojoScorer.Block.ROWS + r] = value;
            }
        }
    }

    /**
     * Scores one partition a block of rows at a time ({@link MojoScorer.Block}): binds once, reads
     * a block's features and kept values, scores the block, then emits one reused output row per
     * input row. Streams: at most one block of rows is held.
     */
    private static final class ScorePartition implements FlatMapFunction<Iterator<InternalRow>, InternalRow> {
        private static final long serialVersionUID = 1L;
        private final String mojoPath;
        private final StructType input;
        private final int[] keepAt;
        private final StructType output;

        ScorePartition(String mojoPath, StructType input, int[] keepAt, StructType output) {
            this.mojoPath = mojoPath;
            this.input = input;
            this.keepAt = keepAt;
            this.output = output;
        }

        @Override
        public Iterator<InternalRow> call(Iterator<InternalRow> rows) {
            MojoScorer.Loaded loaded = MojoScorer.loaded(resolve(mojoPath));
            GenModel model = loaded.model;
            Binding binding = new Binding(model, input);
            ModelCategory category = model.getModelCategory();
            String[] domain = category == ModelCategory.Regression ? null
                : model.getDomainValues(model.getResponseIdx());
            UTF8String[] labels = new UTF8String[domain == null ? 0 : domain.length];
            for (int k = 0; k < labels.length; k++) labels[k] = UTF8String.fromString(domain[k]);
            MojoScorer.Block block = new MojoScorer.Block(loaded, true);
            Kept kept = new Kept(input, keepAt, MojoScorer.Block.ROWS);
            SpecificInternalRow out = new SpecificInternalRow(output);
            int first = keepAt.length;
            int width = block.out.length;
            return new Iterator<InternalRow>() {
                private int filled;
                private int at;

                @Override
                public boolean hasNext() {
                    return at < filled || rows.hasNext();
                }

                @Override
                public InternalRow next() {
                    if (at == filled) fill();
                    int r = at++;
                    kept.emit(r, out);
                    out.setDouble(first, block.out[0][r]);
                    if (width > 1) out.update(first + 1, labels[(int) block.out[1][r]]);
                    for (int k = 2; k < width; k++) out.setDouble(first + k, block.out[k][r]);
                    return out;
                }

                private void fill() {
                    int n = 0;
                    while (n < MojoScorer.Block.ROWS && rows.hasNext()) {
                        InternalRow row = rows.next();
                        kept.store(row, n);
                        binding.read(row, block.x, n);
                        n++;
                    }
                    if (n == 0) throw new java.util.NoSuchElementException();
                    block.score(n);
                    filled = n;
                    at = 0;
                }
            };
        }
    }

    /**
     * The kept columns of a block's rows, held until the block is scored: the input iterator
     * reuses its row object, so values are copied out, primitives without boxing.
     */
    private static final class Kept {
        private final int[] at;
        private final DataType[] types;
        private final long[][] longs;
        private final int[][] ints;
        private final double[][] doubles;
        private final Object[][] objects;
        private final boolean[][] nulls;

        Kept(StructType input, int[] keepAt, int rows) {
            at = keepAt;
            int n = keepAt.length;
            types = new DataType[n];
            longs = new long[n][];
            ints = new int[n][];
            doubles = new double[n][];
            objects = new Object[n][];
            nulls = new boolean[n][rows];
            for (int i = 0; i < n; i++) {
                types[i] = input.fields()[keepAt[i]].dataType();
                if (types[i] instanceof LongType) longs[i] = new long[rows];
                else if (types[i] instanceof IntegerType) ints[i] = new int[rows];
                else if (types[i] instanceof DoubleType) doubles[i] = new double[rows];
                else objects[i] = new Object[rows];
            }
        }

        void store(InternalRow from, int r) {
            for (int i = 0; i < at.length; i++) {
                int o = at[i];
                boolean isNull = from.isNullAt(o);
                nulls[i][r] = isNull;
                if (isNull) continue;
                if (longs[i] != null) longs[i][r] = from.getLong(o);
                else if (ints[i] != null) ints[i][r] = from.getInt(o);
                else if (doubles[i] != null) doubles[i][r] = from.getDouble(o);
                else objects[i][r] = InternalRow$.MODULE$.copyValue(from.get(o, types[i]));
            }
        }

        void emit(int r, SpecificInternalRow to) {
            for (int i = 0; i < at.length; i++) {
                if (nulls[i][r]) to.setNullAt(i);
                else if (longs[i] != null) to.setLong(i, longs[i][r]);
                else if (ints[i] != null) to.setInt(i, ints[i][r]);
                else if (doubles[i] != null) to.setDouble(i, doubles[i][r]);
                else to.update(i, objects[i][r]);
            }
        }
    }
}
