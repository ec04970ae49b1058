package ai.lakescore;

import hex.ModelCategory;
import hex.genmodel.GenModel;
import hex.genmodel.MojoModel;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Scores H2O MOJOs with H2O's own genmodel classes, without H2O or Sparkling Water.
 *
 * One loaded model per MOJO path per JVM (models are immutable and thread-safe to score).
 * Columns are bound to the model's features once per batch or schema, never per row; the
 * row buffer holds numeric values as doubles and categorical values as indices into the
 * model's domain, with NaN for missing values and for levels the model never saw — which is
 * how H2O's own scoring treats an unseen level.
 */
public final class MojoScorer {
    private static final ConcurrentHashMap<String, GenModel> MODELS = new ConcurrentHashMap<>();

    private MojoScorer() {}

    /** The model at {@code path}, loaded once per JVM. */
    public static GenModel model(String path) {
        return MODELS.computeIfAbsent(path, p -> {
            try {
                return MojoModel.load(p);
            } catch (IOException e) {
                throw new UncheckedIOException("cannot load MOJO " + p + ": " + e.getMessage(), e);
            }
        });
    }

    /** The model's feature names, in the order {@code score0} expects them. */
    public static String[] featureNames(GenModel m) {
        String[] names = m.getNames();
        String[] out = new String[m.nfeatures()];
        System.arraycopy(names, 0, out, 0, out.length);
        return out;
    }

    /** Per feature, the index of the column named like it in {@code columns}. */
    public static int[] bind(GenModel m, String[] columns) {
        Map<String, Integer> position = new HashMap<>();
        for (int i = 0; i < columns.length; i++) position.put(columns[i], i);
        String[] features = featureNames(m);
        int[] index = new int[features.length];
        List<String> missing = new ArrayList<>();
        for (int j = 0; j < features.length; j++) {
            Integer at = position.get(features[j]);
            if (at == null) missing.add(features[j]); else index[j] = at;
        }
        if (!missing.isEmpty()) {
            throw new IllegalArgumentException("the model needs feature column(s) " + missing
                + " that the input does not have");
        }
        return index;
    }

    /** Per feature, its domain as level → index, or null for a numeric feature. */
    public static Map<String, Integer>[] domains(GenModel m) {
        @SuppressWarnings("unchecked")
        Map<String, Integer>[] out = new Map[m.nfeatures()];
        for (int j = 0; j < out.length; j++) {
            String[] domain = m.getDomainValues(j);
            if (domain == null) continue;
            Map<String, Integer> levels = new HashMap<>(domain.length * 2);
            for (int k = 0; k < domain.length; k++) levels.put(domain[k], k);
            out[j] = levels;
        }
        return out;
    }

    /** A level's domain index, NaN when missing or unseen. */
    static double levelIndex(Map<String, Integer> levels, String value) {
        if (value == null) return Double.NaN;
        Integer k = levels.get(value);
        return k == null ? Double.NaN : k;
    }

    /** A numeric value as a categorical level ("3" for 3.0), as H2O names integer levels. */
    static String levelName(double value) {
        if (Double.isNaN(value)) return null;
        if (value == Math.rint(value) && Math.abs(value) < 1e15) return Long.toString((long) value);
        return Double.toString(value);
    }

    /** The score from {@code score0}'s output: P(second class) for binomial, the value for regression. */
    static double output(ModelCategory category, double[] preds) {
        switch (category) {
            case Binomial: return preds[2];
            case Regression: return preds[0];
            default: throw new IllegalArgumentException("model category " + category
                + " is not supported (binomial and regression are)");
        }
    }

    public static ModelCategory checkedCategory(GenModel m) {
        ModelCategory c = m.getModelCategory();
        output(c, new double[Math.max(3, m.getPredsSize())]);
        return c;
    }

    /**
     * Score a batch given as columns: each {@code double[]} (numeric, NaN missing) or
     * {@code String[]} (categorical, null missing). Returns one score per row.
     */
    public static double[] scoreColumns(String mojoPath, String[] names, Object[] columns) {
        GenModel m = model(mojoPath);
        ModelCategory category = checkedCategory(m);
        int[] index = bind(m, names);
        Map<String, Integer>[] levels = domains(m);
        int nf = index.length;
        int rows = columns.length == 0 ? 0 : length(columns[0]);
        double[][] numeric = new double[nf][];
        String[][] text = new String[nf][];
        for (int j = 0; j < nf; j++) {
            Object column = columns[index[j]];
            if (length(column) != rows) {
                throw new IllegalArgumentException("column " + names[index[j]] + " has "
                    + length(column) + " rows, expected " + rows);
            }
            if (column instanceof double[]) numeric[j] = (double[]) column;
            else if (column instanceof String[]) text[j] = (String[]) column;
            else throw new IllegalArgumentException("column " + names[index[j]]
                + " must be double[] or String[], got " + column.getClass().getSimpleName());
            if (text[j] != null && levels[j] == null) {
                throw new IllegalArgumentException("feature " + names[index[j]]
                    + " is numeric in the model but strings were given");
            }
        }
        double[] row = new double[nf];
        double[] preds = new double[m.getPredsSize()];
        double[] out = new double[rows];
        for (int i = 0; i < rows; i++) {
            for (int j = 0; j < nf; j++) {
                if (levels[j] == null) row[j] = numeric[j][i];
                else if (text[j] != null) row[j] = levelIndex(levels[j], text[j][i]);
                else row[j] = levelIndex(levels[j], levelName(numeric[j][i]));
            }
            out[i] = output(category, m.score0(row, preds));
        }
        return out;
    }

    private static int length(Object column) {
        if (column instanceof double[]) return ((double[]) column).length;
        if (column instanceof String[]) return ((String[]) column).length;
        throw new IllegalArgumentException("unsupported column type " + column);
    }
}
