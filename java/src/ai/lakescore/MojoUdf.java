package ai.lakescore;

import hex.ModelCategory;
import hex.genmodel.GenModel;
import org.apache.spark.SparkFiles;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.api.java.UDF2;
import org.apache.spark.sql.types.StructType;

import java.io.File;
import java.util.Map;

/**
 * A Spark SQL UDF {@code (mojo path, struct of feature columns) -> score} that runs inside the
 * executors' JVMs. The MOJO is shipped with {@code SparkContext.addFile}: a path that does not
 * exist on the executor is looked up by file name in {@link SparkFiles}. The struct's fields are
 * bound to the model's features once per thread and schema, then read by index for every row.
 */
public final class MojoUdf implements UDF2<String, Row, Double> {
    private static final long serialVersionUID = 1L;

    private static final class Binding {
        final String path;
        final StructType schema;
        final GenModel model;
        final ModelCategory category;
        final int[] index;
        final Map<String, Integer>[] levels;
        final double[] row;
        final double[] preds;

        Binding(String path, StructType schema) {
            this.path = path;
            this.schema = schema;
            this.model = MojoScorer.model(resolve(path));
            this.category = MojoScorer.checkedCategory(model);
            this.index = MojoScorer.bind(model, schema.fieldNames());
            this.levels = MojoScorer.domains(model);
            this.row = new double[index.length];
            this.preds = new double[model.getPredsSize()];
        }
    }

    private static final ThreadLocal<Binding> BINDING = new ThreadLocal<>();

    static String resolve(String path) {
        if (new File(path).exists()) return path;
        return SparkFiles.get(new File(path).getName());
    }

    @Override
    public Double call(String path, Row features) {
        StructType schema = features.schema();
        Binding b = BINDING.get();
        if (b == null || !b.path.equals(path) || !b.schema.equals(schema)) {
            b = new Binding(path, schema);
            BINDING.set(b);
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
                row[j] = numeric(value, schema.fieldNames()[k]);
            } else if (value instanceof String) {
                row[j] = MojoScorer.levelIndex(b.levels[j], (String) value);
            } else {
                row[j] = MojoScorer.levelIndex(b.levels[j], MojoScorer.levelName(numeric(value, schema.fieldNames()[k])));
            }
        }
        return MojoScorer.output(b.category, b.model.score0(row, b.preds));
    }

    private static double numeric(Object value, String column) {
        if (value instanceof Number) return ((Number) value).doubleValue();
        if (value instanceof Boolean) return ((Boolean) value) ? 1.0 : 0.0;
        throw new IllegalArgumentException("feature " + column + " is numeric in the model but its value "
            + value + " is a " + value.getClass().getSimpleName());
    }
}
