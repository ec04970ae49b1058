package ai.lakescore;

import hex.ModelCategory;
import hex.genmodel.GenModel;
import hex.genmodel.MojoModel;

import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Scores H2O MOJOs with H2O's own genmodel classes, without H2O or Sparkling Water.
 *
 * <p>One loaded model per MOJO file per JVM: the cache key is the path plus the file's size and
 * modification time, so a MOJO rewritten in place is reloaded, never scored stale. Loaded models
 * are immutable and {@code score0} is safe to call from many threads.
 *
 * <p>Columns are bound to the model's features by name once per batch (or per Spark schema),
 * never per row. The row handed to {@code score0} holds numeric features as doubles and
 * categorical features as indices into the model's domain, with NaN for a missing value and for
 * a level the model never saw: that is how H2O's own {@code predict} treats an unseen level
 * (EasyPredictModelWrapper's default would throw instead).
 */
public final class MojoScorer {
    private static final ConcurrentHashMap<String, Loaded> MODELS = new ConcurrentHashMap<>();

    private MojoScorer() {}

    /** A loaded model and, for tree models, its trees laid out for a fast walk ({@link TreeWalk}). */
    static final class Loaded {
        final GenModel model;
        final TreeWalk walk;

        Loaded(GenModel model) {
            this.model = model;
            this.walk = TreeWalk.of(model);
        }
    }

    /**
     * A block of rows scored together: the caller fills {@link #x} ({@code x[feature][row]}, the
     * model's feature order; NaN = missing or unseen), calls {@link #score} and reads {@link #out}
     * ({@code out[output][row]}, laid out as {@link #outputWidth} says). One per thread, reused.
     *
     * <p>Tree models are walked a block at a time ({@link TreeWalk#addTrees}); other models, and
     * tree models when {@code treeWalk} is false, go row by row through genmodel's
     * {@code score0}. Either way every output equals {@code score0}'s bit for bit.
     */
    static final class Block {
        /** Rows per block: 256 rows of 20 features in their four copies (160 KiB) stay in L2. */
        static final int ROWS = TreeWalk.BLOCK;
        final double[] x;
        final double[][] out;
        private final GenModel model;
        private final TreeWalk walk;
        private final ModelCategory category;
        private final int stride;
        private final double[] sums;
        private final int[] pos = new int[ROWS];
        private final double[] row;
        private final double[] preds;
        private final double[] values;

        Block(Loaded loaded, boolean treeWalk) {
            model = loaded.model;
            walk = treeWalk ? loaded.walk : null;
            category = model.getModelCategory();
            stride = model.getPredsSize();
            sums = new double[ROWS * stride];
            row = new double[model.nfeatures()];
            preds = new double[stride];
            values = new double[outputWidth(model)];
            x = new double[TreeWalk.COPIES * row.length * ROWS];
            out = new double[values.length][ROWS];
        }

        /** Scores rows {@code [0, n)} of {@link #x} into {@link #out}. */
        void score(int n) {
            if (walk != null) {
                Arrays.fill(sums, 0, n * stride, 0.0);
                walk.addTrees(x, n, sums, stride, pos);
            }
            for (int r = 0; r < n; r++) {
                for (int j = 0; j < row.length; j++) row[j] = x[j * ROWS + r];
                double[] p;
                if (walk != null) {
                    System.arraycopy(sums, r * stride, preds, 0, stride);
                    p = walk.finish(row, preds);
                } else {
                    p = model.score0(row, preds);
                }
                outputs(category, p, values);
                for (int k = 0; k < values.length; k++) out[k][r] = values[k];
            }
        }
    }

    /**
     * How the model at {@code path} is scored: "genmodel" (its own {@code score0}) or, for tree
     * models walked by {@link TreeWalk}, the layout and the kinds of splits it walks. For tests
     * and the benchmark's report.
     */
    public static String scoringPath(String path) {
        Loaded loaded = loaded(path);
        return loaded.walk == null ? "genmodel" : loaded.walk.describe();
    }

    /** The model stored at {@code path}, loaded once per JVM and file version. */
    public static GenModel model(String path) {
        return loaded(path).model;
    }

    static Loaded loaded(String path) {
        File file = new File(path);
        String key = file.getAbsolutePath() + "@" + file.length() + ":" + file.lastModified();
        return MODELS.computeIfAbsent(key, k -> {
            try {
                GenModel m = MojoModel.load(path);
                checkSupported(m, path);
                return new Loaded(m);
            } catch (IOException e) {
                throw new UncheckedIOException("cannot load MOJO " + path + ": " + e.getMessage(), e);
            }
        });
    }

    /** Refuse models whose {@code score0} input is not "one value per original column". */
    private static void checkSupported(GenModel m, String path) {
        ModelCategory c = m.getModelCategory();
        if (c != ModelCategory.Binomial && c != ModelCategory.Multinomial && c != ModelCategory.Regression) {
            throw new IllegalArgumentException("MOJO " + path + " is a " + c
                + " model; only Binomial, Multinomial and Regression models can be scored");
        }
        if (m.getOrigNames() != null) {
            throw new IllegalArgumentException("MOJO " + path + " was trained with a categorical_encoding"
                + " that expands columns; retrain with categorical_encoding='AUTO' or 'Enum'");
        }
    }

    /**
     * How many values {@link #outputs} writes per row: the score; for a classifier also the
     * predicted label's index in the response domain; for a multinomial model also one
     * probability per class, in domain order.
     */
    public static int outputWidth(GenModel m) {
        switch (m.getModelCategory()) {
            case Regression: return 1;
            case Binomial: return 2;
            default: return 2 + m.getNumResponseClasses();
        }
    }

    /**
     * One row's outputs from {@code score0}'s {@code preds}, laid out as {@link #outputWidth} says.
     *
     * <p>The label is {@code preds[0]}, which every MOJO's {@code score0} sets as H2O's own
     * {@code predict} does: at the model's {@code default_threshold} for binomial models, the
     * most probable class (ties broken as H2O breaks them) for multinomial ones. The multinomial
     * score is the probability of that label.
     */
    static void outputs(ModelCategory category, double[] preds, double[] out) {
        switch (category) {
            case Regression:
                out[0] = preds[0];
                return;
            case Binomial:
                out[0] = preds[2];
                out[1] = preds[0];
                return;
            default:
                int label = (int) preds[0];
                out[0] = preds[1 + label];
                out[1] = label;
                System.arraycopy(preds, 1, out, 2, out.length - 2);
        }
    }

    /** The model's feature names, in the order {@code score0} expects them. */
    public static String[] featureNames(GenModel m) {
        String[] out = new String[m.nfeatures()];
        System.arraycopy(m.getNames(), 0, out, 0, out.length);
        return out;
    }

    /**
     * Per model feature, the position of the column of the same name in {@code columns}.
     *
     * @throws IllegalArgumentException naming every feature that {@code columns} lacks
     */
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
                + " that the input does not have (it has " + Arrays.toString(columns) + ")");
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

    /** A level's domain index; NaN when missing or unseen. */
    static double levelIndex(Map<String, Integer> levels, String value) {
        if (value == null) return Double.NaN;
        Integer k = levels.get(value);
        return k == null ? Double.NaN : k;
    }

    /**
     * The score of each row of a batch given as columns: {@code scoreOutputs(...)[0]}.
     *
     * <p>This is also the model-only bound of the benchmark: called on arrays already in the
     * JVM, it is {@code score0} in one thread plus reading the arrays.
     */
    public static double[] scoreColumns(String mojoPath, String[] names, Object[] columns) {
        return scoreOutputs(mojoPath, names, columns)[0];
    }

    /**
     * Score a batch given as columns: one array per output ({@link #outputWidth}), one value per row.
     *
     * <p>Output 0 is the score, output 1 (classifiers) the label's index in the response domain
     * as a double, outputs 2.. (multinomial) the class probabilities.
     *
     * @param names   the column names, parallel to {@code columns}; extra columns are ignored
     * @param columns for a numeric feature a {@code double[]} (NaN = missing); for a categorical
     *                feature a {@code String[]} of levels (null = missing) or an {@code int[]} of
     *                indices into the feature's domain (negative = missing or unseen), which lets
     *                a caller that already encoded the levels skip moving strings. Numbers for a
     *                categorical feature are refused, as H2O's predict and genmodel refuse them.
     *                A feature the caller does not have is passed as all-missing (NaN or -1)
     * @throws IllegalArgumentException when a feature column is absent, has another length,
     *                or has a type the feature cannot take
     */
    public static double[][] scoreOutputs(String mojoPath, String[] names, Object[] columns) {
        return scoreOutputs(mojoPath, names, columns, true);
    }

    /**
     * {@link #scoreOutputs(String, String[], Object[])}, with {@code treeWalk=false} through
     * genmodel's own {@code score0} even for tree models: the reference {@link TreeWalk} is
     * tested against, and the other figure of the benchmark's model-only bound.
     */
    public static double[][] scoreOutputs(String mojoPath, String[] names, Object[] columns, boolean treeWalk) {
        if (names.length != columns.length) {
            throw new IllegalArgumentException(names.length + " names for " + columns.length + " columns");
        }
        Loaded loaded = loaded(mojoPath);
        GenModel m = loaded.model;
        int[] index = bind(m, names);
        Map<String, Integer>[] levels = domains(m);
        int nf = index.length;
        int rows = nf == 0 ? 0 : length(columns[index[0]], names[index[0]]);
        double[][] numeric = new double[nf][];
        String[][] text = new String[nf][];
        int[][] codes = new int[nf][];
        for (int j = 0; j < nf; j++) {
            String name = names[index[j]];
            Object column = columns[index[j]];
            if (length(column, name) != rows) {
                throw new IllegalArgumentException("column " + name + " has " + length(column, name)
                    + " rows, column " + names[index[0]] + " has " + rows);
            }
            if (levels[j] == null) {
                if (!(column instanceof double[])) {
                    throw new IllegalArgumentException("feature " + name + " is numeric in the model but a "
                        + column.getClass().getSimpleName() + " was given; pass a double[]");
                }
                numeric[j] = (double[]) column;
            } else if (column instanceof double[]) {
                throw new IllegalArgumentException("feature " + name + " is categorical in the model but a "
                    + "double[] was given; pass its levels as a String[] (or domain indices as an int[])");
            } else if (column instanceof String[]) {
                text[j] = (String[]) column;
            } else {
                codes[j] = (int[]) column;
                int size = m.getDomainValues(j).length;
                for (int code : codes[j]) {
                    if (code >= size) {
                        throw new IllegalArgumentException("column " + name + " holds domain index " + code
                            + " but the feature has only " + size + " levels");
                    }
                }
            }
        }
        Block block = new Block(loaded, treeWalk);
        double[][] out = new double[outputWidth(m)][rows];
        for (int i = 0; i < rows; i += Block.ROWS) {
            int n = Math.min(Block.ROWS, rows - i);
            double[] x = block.x;
            for (int j = 0; j < nf; j++) {
                int at = j * Block.ROWS;
                if (levels[j] == null) {
                    System.arraycopy(numeric[j], i, x, at, n);
                } else if (codes[j] != null) {
                    for (int r = 0; r < n; r++) x[at + r] = codes[j][i + r] < 0 ? Double.NaN : codes[j][i + r];
                } else {
                    for (int r = 0; r < n; r++) x[at + r] = levelIndex(levels[j], text[j][i + r]);
                }
            }
            block.score(n);
            for (int k = 0; k < out.length; k++) System.arraycopy(block.out[k], 0, out[k], i, n);
        }
        return out;
    }

    private static int length(Object column, String name) {
        if (column instanceof double[]) return ((double[]) column).length;
        if (column instanceof String[]) return ((String[]) column).length;
        if (column instanceof int[]) return ((int[]) column).length;
        throw new IllegalArgumentException("column " + name + " must be a double[], String[] or int[], got "
            + (column == null ? "null" : column.getClass().getSimpleName()));
    }
}
