package ai.lakescore;

import hex.ModelCategory;
import hex.genmodel.GenModel;
import org.apache.spark.SparkFiles;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.api.java.UDF2;
import org.apache.spark.sql.types.StructType;

import java.io.File;
import java.util.HashMap;
import java.util.Map;

/**
 * A Spark SQL UDF {@code (mojo path, struct of feature columns) -> score} that runs inside the
 * executors' JVMs, so rows never go through Python or Arrow.
 *
 * <p>The MOJO is shipped with {@code SparkContext.addFile}: a path that does not exist on the
 * executor is looked up by its file name in {@link SparkFiles}. The struct's fields are bound to
 * the model's features once per thread, model and schema, then read by index for every row into
 * a per-thread row buffer. A null field goes in as NaN (missing), which H2O scores as it does in
 * {@code predict}, so every row gets a score; the UDF never returns null.
 */
public final class MojoUdf implements UDF2<String, Row, Double> {
    private static final long serialVersionUID = 1L;

    /** What one thread needs to score rows of one schema with one model. */
    private static final class Binding {
        final StructType schema;
        final String[] fieldNames;
        final GenModel model;
        final ModelCategory category;
        final int[] index;
        final Map<String, Integer>[] levels;
        final double[] row;
        final double[] preds;
        final double[] values;

        Binding(String path, StructType schema) {
            this.schema = schema;
            this.fieldNames = schema.fieldNames();
            this.model = MojoScorer.model(resolve(path));
            this.category = model.getModelCategory();
            this.index = MojoScorer.bind(model, fieldNames);
            this.levels = MojoScorer.domains(model);
            this.row = new double[index.length];
            this.preds = new double[model.getPredsSize()];
            this.values = new double[MojoScorer.outputWidth(model)];
        }
    }

    /** Per thread, the binding per MOJO path (a query may score with several models). */
    private static final ThreadLocal<Map<String, Binding>> BINDINGS = ThreadLocal.withInitial(HashMap::new);

    static String resolve(String path) {
        if (new File(path).exists()) return path;
        return SparkFiles.get(new File(path).getName());
    }

    @Override
    public Double call(String path, Row features) {
        StructType schema = features.schema();
        Map<String, Binding> bindings = BINDINGS.get();
        Binding b = bindings.get(path);
        if (b == null || (b.schema != schema && !b.schema.equals(schema))) {
            b = new Binding(path, schema);
            bindings.put(path, b);
        }
        double[] row = b.row;
        for (int j = 0; j < row.length; j++) {
            int k = b.index[j];
            if (features.isNullAt(k)) {
                row[j] = Double.NaN;
                continue;
            }
            Object value = features.get(k);
            if (b.levels[j] == null) {
                row[j] = numeric(value, b.fieldNames[k]);
            } else if (value instanceof String) {
                row[j] = MojoScorer.levelIndex(b.levels[j], (String) value);
            } else {
                throw new IllegalArgumentException("feature " + b.fieldNames[k] + " is categorical in the"
                    + " model but its value " + value + " is a " + value.getClass().getSimpleName()
                    + "; cast the column to string");
            }
        }
        MojoScorer.outputs(b.category, b.model.score0(row, b.preds), b.values);
        return b.values[0];
    }

    private static double numeric(Object value, String column) {
        if (value instanceof Number) return ((Number) value).doubleValue();
        if (value instanceof Boolean) return ((Boolean) value) ? 1.0 : 0.0;
        throw new IllegalArgumentException("feature " + column + " is numeric in the model but its value "
            + value + " is a " + value.getClass().getSimpleName());
    }
}
