"""The JVM pass of the Spark feature join (``ai.lakescore.FeatureWindows``): its sums are the
exact sums rounded once (``math.fsum``), whichever events enter and leave the window, on
adversarial values; a zero is +0.0 and infinities follow the contract's rules."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from conftest import spark_frame
from engine.features import load_feature_set
from engine.features.spark import training_set_spark

T0 = pd.Timestamp("2025-03-01", tz="UTC")
SECOND = pd.Timedelta(seconds=1)
DEFINITION = {
    "name": "exact_sums", "entity": "customer_id", "timestamp": "event_time", "as_of": "as_of",
    "source": "events",
    "aggregations": [{"column": "amount", "functions": ["sum", "mean"], "windows": ["10s", "1000d"]}],
}
MAX = 1.7976931348623157e308
# Each case: the values of one entity's events, all in its label's window.
CASES = {
    "cancellation": [1e16, 0.1, -1e16, 0.2],
    "mixed_magnitudes": [1e300, 1e-300, -1e300, 3.5, 1e-300, 1e200, -1e200],
    "subnormals": [5e-324, 5e-324, 1e-310, -2.5e-320, 2.2250738585072014e-308, -2.225073858507201e-308],
    "subnormal_result": [2.2250738585072014e-308, -2.225073858507201e-308],
    "halfway_to_even_down": [1.0, 2.0 ** -53],
    "halfway_to_even_up": [1.0 + 2.0 ** -52, 2.0 ** -53],
    "just_above_halfway": [1.0, 2.0 ** -53, 2.0 ** -160],
    "just_below_halfway": [1.0, 2.0 ** -53, -(2.0 ** -160)],
    "negative_halfway": [-1.0 - 2.0 ** -52, -(2.0 ** -53), 1e-320, -1e-320],
    "near_the_top": [MAX, 2.0 ** 969, -MAX],
    "many_small_and_one_large": [2.0 ** 60] + [1.0] * 1000 + [-(2.0 ** 60)],
}
# Exact sums beyond the double range, and infinities: not fsum's to say (it raises).
SPECIAL = {
    "overflow_to_inf": ([MAX, MAX], math.inf),
    "overflow_negative": ([-MAX, -1e300], -math.inf),
    "below_the_rounding_point": ([MAX, 2.0 ** 969], MAX),
    "at_the_rounding_point": ([MAX, 2.0 ** 970], math.inf),
    "plus_inf": ([math.inf, 1.0, -5.0], math.inf),
    "minus_inf": ([-math.inf, 1e308, 1e308], -math.inf),
    "both_infinities": ([math.inf, -math.inf, 1.0], None),
    "exact_zero": ([1.5, -1.5], 0.0),
    "negative_zero": ([-0.0, -0.0], 0.0),
    "only_nulls": ([math.nan, math.nan], None),
}


def sums(spark, groups: list[list[float]], labels_at: list[list[pd.Timestamp]] | None = None,
         times: list[list[pd.Timestamp]] | None = None) -> pd.DataFrame:
    """Entity i holds ``groups[i]`` as events one second apart (or at ``times[i]``); its labels
    are one second after its last event (or at ``labels_at[i]``). Returns the features by row."""
    events, spine = [], []
    for i, values in enumerate(groups):
        at = times[i] if times else [T0 + j * SECOND for j in range(len(values))]
        events += [(i, t, v) for t, v in zip(at, values)]
        for t in (labels_at[i] if labels_at else [at[-1] + SECOND]):
            spine.append((i, t))
    ev = pd.DataFrame(events, columns=["customer_id", "event_time", "amount"]).astype(
        {"customer_id": "int64", "event_time": "datetime64[us, UTC]", "amount": "float64"})
    sp = pd.DataFrame(spine, columns=["customer_id", "as_of"]).astype(
        {"customer_id": "int64", "as_of": "datetime64[us, UTC]"})
    sp["row_id"] = np.arange(len(sp), dtype="int64")
    fs = load_feature_set(DEFINITION)
    out = training_set_spark(fs, spark_frame(spark, ev), spark_frame(spark, sp)).toPandas()
    return out.sort_values("row_id").reset_index(drop=True)


def same_double(got: float, want: float) -> bool:
    """Equal bit for bit (so +0.0 is not -0.0), NaN equal to NaN."""
    return np.float64(got).tobytes() == np.float64(want).tobytes()


def test_sums_are_the_correctly_rounded_exact_sums(spark):
    got = sums(spark, list(CASES.values()))["amount_sum_1000d"].tolist()
    for (name, values), value in zip(CASES.items(), got):
        want = math.fsum(values) + 0.0
        assert same_double(value, want), f"{name}: {value!r} != fsum {want!r}"


def test_overflow_infinities_zero_and_nulls_follow_the_contract(spark):
    out = sums(spark, [values for values, _ in SPECIAL.values()])
    for (name, (_, want)), value, mean in zip(SPECIAL.items(), out["amount_sum_1000d"], out["amount_mean_1000d"]):
        if want is None:  # a null sum: the feature's default (0.0), and no mean
            assert value == 0.0 and math.isnan(mean), name
        else:
            assert same_double(value, want), f"{name}: {value!r} != {want!r}"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sliding_sums_equal_fsum_of_each_window(spark, seed):
    """Values over 600 orders of magnitude enter and leave a 10 s window label after label:
    each label's sum is fsum of exactly its window, not of what passed through it."""
    rng = np.random.default_rng(seed)
    n = 400
    values = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-300, 300, n)
    values[rng.random(n) < 0.2] *= 2.0 ** -800  # some subnormal-range values
    values[rng.random(n) < 0.05] = np.nan
    seconds = np.sort(rng.integers(0, 200, n))  # ties on time
    times = [T0 + int(s) * SECOND for s in seconds]
    labels = [T0 + int(s) * SECOND for s in range(0, 205, 3)]
    out = sums(spark, [values.tolist()], [labels], [times])
    for t, value in zip(labels, out["amount_sum_10s"]):
        seconds_before = (t - T0) / SECOND
        inside = values[(seconds >= seconds_before - 10) & (seconds < seconds_before) & ~np.isnan(values)]
        want = math.fsum(inside) + 0.0
        assert same_double(value, want), f"label at {t}: {value!r} != {want!r}"


# --- the events' exchange: columnar blocks for primitive columns, Spark's rows otherwise --------

EXCHANGE_DEFINITION = {
    "name": "exchange", "entity": ["region", "member"], "timestamp": "event_time", "as_of": "as_of",
    "source": "events",
    "aggregations": [
        {"column": "amount", "functions": ["count", "sum", "min", "stddev", "distinct_count", "last"],
         "windows": ["1h", "1d"]},
        {"column": "qty", "functions": ["last", "sum"], "windows": ["1d"]},
        {"column": "flag", "functions": ["last"], "windows": ["1d"]},
        {"column": "seen", "functions": ["last"], "windows": ["1d"]},
    ],
}


def exchange_frames(n_events: int, seed: int = 5, whole: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events of two integer keys (some null) with one hot entity holding most
    events (so one map task fills more than one block for one partition), and labels over
    every entity, some with null keys or time, some of entities without events. ``whole``:
    amounts in whole numbers (the blocks' integral form of doubles), up to 2^53."""
    rng = np.random.default_rng(seed)
    hot = rng.random(n_events) < 0.8
    region = pd.array(np.where(hot, 1, rng.integers(0, 12, n_events)), dtype="Int64")
    member = pd.array(np.where(hot, 1, rng.integers(0, 2, n_events)), dtype="Int64")
    region[rng.random(n_events) < 0.01] = pd.NA
    member[rng.random(n_events) < 0.01] = pd.NA
    seconds = rng.integers(0, 3 * 86_400, n_events)
    amount = pd.array(np.round(rng.normal(0, 100, n_events), 0 if whole else 2), dtype="Float64")
    if whole:
        amount[:3] = [2.0 ** 53 - 1, -(2.0 ** 53) + 1, 0.0]
    amount[rng.random(n_events) < 0.05] = pd.NA
    qty = pd.array(rng.integers(-5, 5, n_events), dtype="Int64")
    qty[rng.random(n_events) < 0.05] = pd.NA
    events = pd.DataFrame({
        "region": region, "member": member, "event_time": T0 + pd.to_timedelta(seconds, unit="s"),
        "amount": amount, "qty": qty, "flag": pd.array(rng.random(n_events) < 0.3, dtype="boolean"),
        "seen": T0 + pd.to_timedelta(rng.integers(0, 1000, n_events), unit="D")})
    events["event_time"] = events["event_time"].astype("datetime64[us, UTC]")
    events["seen"] = events["seen"].astype("datetime64[us, UTC]")
    n_labels = 400
    labels = pd.DataFrame({
        "row_id": np.arange(n_labels, dtype="int64"),
        "region": pd.array(rng.integers(0, 15, n_labels), dtype="Int64"),  # 12-14: no events
        "member": pd.array(rng.integers(0, 2, n_labels), dtype="Int64"),
        "as_of": (T0 + pd.to_timedelta(rng.integers(0, 4 * 86_400, n_labels), unit="s")).astype("datetime64[us, UTC]")})
    labels.loc[:20, "region"] = 1
    labels.loc[:20, "member"] = 1
    labels.loc[[30, 31], "region"] = pd.NA
    labels.loc[[32], "member"] = pd.NA
    labels.loc[[33], "as_of"] = pd.NaT
    return events, labels


def exchange_features(spark, events: pd.DataFrame, labels: pd.DataFrame, packed: bool) -> pd.DataFrame:
    from engine.features.spark import KERNEL_CLASS
    from engine.scoring.spark import scorer_class

    fs = load_feature_set(EXCHANGE_DEFINITION)
    ev, lb = spark_frame(spark, events).coalesce(1), spark_frame(spark, labels)
    if not packed:  # a string key: Spark's own exchange of rows
        ev = ev.withColumn("region", ev["region"].cast("string"))
        lb = lb.withColumn("region", lb["region"].cast("string"))
    assert scorer_class(spark, KERNEL_CLASS).packable(ev._jdf, "") is packed
    out = training_set_spark(fs, ev, lb).toPandas().sort_values("row_id").reset_index(drop=True)
    return out.drop(columns=["region", "member", "as_of"])


def test_columnar_exchange_of_events_equals_spark_exchange(spark):
    """Two keys, null keys on both sides, entities without events, partitions
    without rows, more than one block of one partition from one map task: the same features as
    the row exchange, and the counts a brute force finds."""
    events, labels = exchange_frames(90_000)
    packed = exchange_features(spark, events, labels, packed=True)
    rows = exchange_features(spark, events, labels, packed=False)
    pd.testing.assert_frame_equal(packed, rows)
    valid = events.dropna(subset=["region", "member"])
    for _, label in labels.iterrows():
        got = packed.loc[label["row_id"], "amount_count_1h"]
        if pd.isna(label["region"]) or pd.isna(label["member"]) or pd.isna(label["as_of"]):
            assert got == 0
            continue
        mine = valid[(valid["region"] == label["region"]) & (valid["member"] == label["member"])]
        inside = (mine["event_time"] >= label["as_of"] - pd.Timedelta(hours=1)) & (mine["event_time"] < label["as_of"])
        assert got == inside.sum(), label["row_id"]  # count: events, null amounts too


def test_columnar_exchange_with_few_events_leaves_partitions_empty(spark):
    events, labels = exchange_frames(3, seed=7)
    pd.testing.assert_frame_equal(exchange_features(spark, events, labels, packed=True),
                                  exchange_features(spark, events, labels, packed=False))


@pytest.mark.parametrize("negative_zero", [False, True])
def test_columnar_exchange_keeps_whole_amounts_and_negative_zero(spark, negative_zero):
    """Whole-number doubles travel as integers unless a block holds -0.0: either way every
    value arrives bit for bit (the last amount of the entity whose last event is -0.0 too)."""
    events, labels = exchange_frames(2_000, seed=9, whole=True)
    if negative_zero:
        last = events["event_time"].idxmax()
        events.loc[last, "amount"] = -0.0
        events.loc[last, ["region", "member"]] = [1, 1]
        labels.loc[0, "as_of"] = events.loc[last, "event_time"] + SECOND
    packed = exchange_features(spark, events, labels, packed=True)
    pd.testing.assert_frame_equal(packed, exchange_features(spark, events, labels, packed=False))
    if negative_zero:
        assert same_double(packed.loc[0, "amount_last_1h"], -0.0)


def test_columnar_exchange_with_many_partitions_sends_smaller_blocks(spark):
    """With many shuffle partitions a map task's open blocks share one row budget
    (``EventBlocks.blockRows``: 3,495 rows per block for 300 partitions, not 64K each): the hot
    entity's partition arrives in many blocks, and the features equal the row exchange's."""
    before = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", "300")
    try:
        events, labels = exchange_frames(40_000, seed=11)
        pd.testing.assert_frame_equal(exchange_features(spark, events, labels, packed=True),
                                      exchange_features(spark, events, labels, packed=False))
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", before)


# --- the kernel's sort by time: packed primitive keys, a comparator when they do not fit -------

SORT_DEFINITION = {
    "name": "sort_by_time", "entity": "customer_id", "timestamp": "event_time", "as_of": "as_of",
    "source": "events",
    "aggregations": [{"column": "amount", "functions": ["count", "sum", "last"], "windows": ["30d", "73000d"]}],
}


def test_groups_sorted_by_packed_keys_or_by_the_comparator_find_the_same_windows(spark):
    """Times spanning five centuries take 54 bits, so a group of 1,500 events (11 bits for its
    places) cannot be sorted as packed longs and falls back to the comparator, while the small
    groups beside it in its partition are packed: every window over both, with many equal times
    (arrival order must not matter), holds exactly the events a brute force finds."""
    rng = np.random.default_rng(17)
    day = 86_400_000_000
    start = int(pd.Timestamp("1700-01-01", tz="UTC").value // 1000)
    groups = {0: start + rng.choice(rng.integers(0, 500 * 365, 300), 1_500) * day}
    for entity in range(1, 31):
        groups[entity] = int(T0.value // 1000) + rng.choice(rng.integers(0, 400, 20), 50) * day
    events = pd.DataFrame([(e, t) for e, times in groups.items() for t in times], columns=["customer_id", "event_us"])
    events = events.sample(frac=1.0, random_state=3).reset_index(drop=True)  # arrival order: shuffled
    events["amount"] = rng.integers(-1000, 1000, len(events)).astype("float64")
    labels = pd.DataFrame([(e, t) for e, times in groups.items() for t in rng.choice(times, 40)],
                          columns=["customer_id", "as_of_us"])
    labels["row_id"] = np.arange(len(labels), dtype="int64")
    ev = events.assign(event_time=pd.to_datetime(events["event_us"], unit="us", utc=True)).drop(columns="event_us")
    lb = labels.assign(as_of=pd.to_datetime(labels["as_of_us"], unit="us", utc=True)).drop(columns="as_of_us")
    fs = load_feature_set(SORT_DEFINITION)
    out = training_set_spark(fs, spark_frame(spark, ev).coalesce(1), spark_frame(spark, lb)).toPandas()
    out = out.sort_values("row_id").reset_index(drop=True)
    for _, label in labels.iterrows():
        mine = events[events["customer_id"] == label["customer_id"]]
        got = out.loc[label["row_id"]]
        for name, days in (("30d", 30), ("73000d", 73_000)):
            inside = mine[(mine["event_us"] >= label["as_of_us"] - days * day) & (mine["event_us"] < label["as_of_us"])]
            assert got[f"amount_count_{name}"] == len(inside), (label["row_id"], name)
            assert got[f"amount_sum_{name}"] == math.fsum(inside["amount"]), (label["row_id"], name)
            latest = inside[inside["event_us"] == inside["event_us"].max()]["amount"].max() if len(inside) else math.nan
            assert same_double(got[f"amount_last_{name}"], latest), (label["row_id"], name)
