package ai.lakescore;

import hex.ModelCategory;
import hex.genmodel.GenModel;
import org.apache.spark.SparkFiles;
import org.apache.spark.api.java.function.FlatMapFunction;
import org.apache.spark.rdd.RDD;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.catalyst.InternalRow;
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

        /** {@code row}'s features as {@code score0} takes them: NaN for null, missing or unseen. */
        void read(InternalRow row, double[] into) {
            for (int j = 0; j < into.length; j++) {
                int r = reader[j];
                int o = ordinal[j];
                if (r == MISSING || row.isNullAt(o)) {
                    into[j] = Double.NaN;
                    continue;
                }
                switch (r) {
                    case DOUBLE: into[j] = row.getDouble(o); break;
                    case FLOAT: into[j] = row.getFloat(o); break;
                    case LONG: into[j] = row.getLong(o); break;
                    case INT: into[j] = row.getInt(o); break;
                    case SHORT: into[j] = row.getShort(o); break;
                    case BYTE: into[j] = row.getByte(o); break;
                    case BOOLEAN: into[j] = row.getBoolean(o) ? 1.0 : 0.0; break;
                    case DECIMAL: into[j] = row.getDecimal(o, precision[j], scale[j]).toDouble(); break;
                    default:
                        Integer k = levels[j].get(row.getUTF8String(o));
                        into[j] = k == null ? Double.NaN : k;
                }
            }
        }
    }

    /** Scores one partition: binds once, then one output row per input row, streamed. */
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
            DataType[] keepTypes = new DataType[keepAt.length];
            for (int i = 0; i < keepAt.length; i++) keepTypes[i] = input.fields()[keepAt[i]].dataType();
            double[] features = new double[MojoScorer.featureNames(model).length];
            double[] preds = new double[model.getPredsSize()];
            double[] values = new double[MojoScorer.outputWidth(model)];
            SpecificInternalRow out = new SpecificInternalRow(output);
            int first = keepAt.length;
            return new Iterator<InternalRow>() {
                @Override
                public boolean hasNext() {
                    return rows.hasNext();
                }

                @Override
                public InternalRow next() {
                    InternalRow row = rows.next();
                    for (int i = 0; i < first; i++) copy(row, keepAt[i], keepTypes[i], out, i);
                    binding.read(row, features);
                    MojoScorer.outputs(category, loaded.score0(features, preds), values);
                    out.setDouble(first, values[0]);
                    if (values.length > 1) out.update(first + 1, labels[(int) values[1]]);
                    for (int k = 2; k < values.length; k++) out.setDouble(first + k, values[k]);
                    return out;
                }
            };
        }

        /** One kept value, without boxing for the common primitive key types. */
        private static void copy(InternalRow from, int at, DataType type, SpecificInternalRow to, int i) {
            if (from.isNullAt(at)) {
                to.setNullAt(i);
            } else if (type instanceof LongType) {
                to.setLong(i, from.getLong(at));
            } else if (type instanceof IntegerType) {
                to.setInt(i, from.getInt(at));
            } else if (type instanceof DoubleType) {
                to.setDouble(i, from.getDouble(at));
            } else {
                to.update(i, from.get(at, type));
            }
        }
    }
}
