package ai.lakescore;

import hex.ModelCategory;
import hex.genmodel.GenModel;
import hex.genmodel.MojoModel;

import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.DoubleBuffer;
import java.nio.IntBuffer;
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
     * A block of rows scored together: the caller fills the first {@code features * ROWS} values
     * of {@link #x} ({@code x[feature * ROWS + row]}, the model's feature order; NaN = missing or
     * unseen; the walk keeps its copies after them), calls {@link #score} and reads {@link #out}
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
        /**
         * Whether a row's features must be gathered for it: genmodel's {@code score0} reads them,
         * and after a walk {@code unifyPreds} reads them only to break a multinomial tie (its
         * {@code getPrediction} ignores them for a binomial model's three preds).
         */
        private final boolean needsRow;

        Block(Loaded loaded, boolean treeWalk) {
            model = loaded.model;
            walk = treeWalk ? loaded.walk : null;
            category = model.getModelCategory();
            stride = model.getPredsSize();
            sums = new double[ROWS * stride];
            row = new double[model.nfeatures()];
            preds = new double[stride];
            values = new double[outputWidth(model)];
            x = new double[(walk != null ? TreeWalk.COPIES : 1) * row.length * ROWS];
            out = new double[values.length][ROWS];
            needsRow = walk == null || category != ModelCategory.Binomial;
        }

        /** Scores rows {@code [0, n)} of {@link #x} into {@link #out}. */
        void score(int n) {
            if (walk != null) {
                Arrays.fill(sums, 0, n * stride, 0.0);
                walk.addTrees(x, n, sums, stride, pos);
            }
            for (int r = 0; r < n; r++) {
                if (needsRow) for (int j = 0; j < row.length; j++) row[j] = x[j * ROWS + r];
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
        Loaded loaded = loaded(mojoPath);
        Source[] sources = sources(loaded.model, names, columns);
        int rows = rows(sources);
        double[][] out = new double[outputWidth(loaded.model)][rows];
        score(loaded, treeWalk, sources, rows, (k, at, values, n) -> System.arraycopy(values, 0, out[k], at, n));
        return out;
    }

    /**
     * {@link #scoreOutputs}, reading and writing memory the caller owns: no Java array is
     * allocated per batch, and nothing is copied on the way in or out but into the scorer's
     * blocks. Through JPype's {@code jpype.nio.convertToDirectBuffer} the buffers are numpy
     * arrays, so a pandas batch reaches the model without a Java copy of its columns.
     *
     * @param columns as {@link #scoreOutputs}, or direct {@code ByteBuffer}s in native byte order:
     *                float64 values for a numeric feature, int32 domain indices for a categorical
     *                one (negative = missing or unseen)
     * @param out     a direct {@code ByteBuffer} of {@code outputWidth * rows} float64 in native
     *                order, output-major: output {@code k} of row {@code i} at {@code k * rows + i}
     * @return the number of rows scored
     */
    public static int scoreInto(String mojoPath, String[] names, Object[] columns, ByteBuffer out) {
        Loaded loaded = loaded(mojoPath);
        Source[] sources = sources(loaded.model, names, columns);
        int rows = rows(sources);
        DoubleBuffer into = out.order(ByteOrder.nativeOrder()).asDoubleBuffer();
        int width = outputWidth(loaded.model);
        if (into.capacity() != width * rows) {
            throw new IllegalArgumentException("the output buffer holds " + into.capacity() + " doubles; "
                + width + " outputs x " + rows + " rows need " + (width * rows));
        }
        score(loaded, true, sources, rows, (k, at, values, n) -> into.put(k * rows + at, values, 0, n));
        return rows;
    }

    /** One feature's values for a batch: copies rows {@code [from, from + n)} into a block at {@code at}. */
    private interface Fill {
        void fill(int from, int n, double[] x, int at);
    }

    /** A feature's {@link Fill} and its number of rows. */
    private static final class Source {
        final int length;
        final Fill fill;

        Source(int length, Fill fill) {
            this.length = length;
            this.fill = fill;
        }
    }

    /** Receives output {@code k} of rows {@code [at, at + n)} of a batch. */
    private interface Sink {
        void put(int k, int at, double[] values, int n);
    }

    /** Per model feature, where its values come from, checked against the feature's kind. */
    private static Source[] sources(GenModel m, String[] names, Object[] columns) {
        if (names.length != columns.length) {
            throw new IllegalArgumentException(names.length + " names for " + columns.length + " columns");
        }
        int[] index = bind(m, names);
        Map<String, Integer>[] levels = domains(m);
        Source[] out = new Source[index.length];
        for (int j = 0; j < index.length; j++) {
            Object column = columns[index[j]];
            if (column instanceof ByteBuffer) {
                ByteBuffer buffer = ((ByteBuffer) column).order(ByteOrder.nativeOrder());
                column = levels[j] == null ? buffer.asDoubleBuffer() : buffer.asIntBuffer();
            }
            out[j] = source(names[index[j]], column, levels[j], levels[j] == null ? 0 : m.getDomainValues(j).length);
        }
        for (int j = 1; j < out.length; j++) {
            if (out[j].length != out[0].length) {
                throw new IllegalArgumentException("column " + names[index[j]] + " has " + out[j].length
                    + " rows, column " + names[index[0]] + " has " + out[0].length);
            }
        }
        return out;
    }

    private static Source source(String name, Object column, Map<String, Integer> levels, int domainSize) {
        if (levels == null) {
            if (column instanceof double[]) {
                double[] values = (double[]) column;
                return new Source(values.length, (from, n, x, at) -> System.arraycopy(values, from, x, at, n));
            }
            if (column instanceof DoubleBuffer) {
                DoubleBuffer values = (DoubleBuffer) column;
                return new Source(values.capacity(), (from, n, x, at) -> values.get(from, x, at, n));
            }
            throw new IllegalArgumentException("feature " + name + " is numeric in the model but a "
                + type(column) + " was given; pass a double[] (or float64 values in a direct ByteBuffer)");
        }
        if (column instanceof String[]) {
            String[] text = (String[]) column;
            return new Source(text.length, (from, n, x, at) -> {
                for (int r = 0; r < n; r++) x[at + r] = levelIndex(levels, text[from + r]);
            });
        }
        if (column instanceof int[] || column instanceof IntBuffer) {
            IntBuffer codes = column instanceof int[] ? IntBuffer.wrap((int[]) column) : (IntBuffer) column;
            for (int i = 0; i < codes.capacity(); i++) {
                if (codes.get(i) >= domainSize) {
                    throw new IllegalArgumentException("column " + name + " holds domain index " + codes.get(i)
                        + " but the feature has only " + domainSize + " levels");
                }
            }
            return new Source(codes.capacity(), (from, n, x, at) -> {
                for (int r = 0; r < n; r++) {
                    int code = codes.get(from + r);
                    x[at + r] = code < 0 ? Double.NaN : code;
                }
            });
        }
        throw new IllegalArgumentException("feature " + name + " is categorical in the model but a "
            + type(column) + " was given; pass its levels as a String[] (or domain indices as an int[])");
    }

    private static String type(Object column) {
        return column == null ? "null" : column instanceof double[] ? "double[]" : column.getClass().getSimpleName();
    }

    private static int rows(Source[] sources) {
        return sources.length == 0 ? 0 : sources[0].length;
    }

    /** Scores a batch a block at a time, from {@code sources} to {@code sink}. */
    private static void score(Loaded loaded, boolean treeWalk, Source[] sources, int rows, Sink sink) {
        Block block = new Block(loaded, treeWalk);
        for (int i = 0; i < rows; i += Block.ROWS) {
            int n = Math.min(Block.ROWS, rows - i);
            for (int j = 0; j < sources.length; j++) sources[j].fill.fill(i, n, block.x, j * Block.ROWS);
            block.score(n);
            for (int k = 0; k < block.out.length; k++) sink.put(k, i, block.out[k], n);
        }
    }
}
