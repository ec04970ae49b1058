"""Policy ``quarantine``: exactly the rows failed row-level expectations blame are set aside, with
their reasons; the rest go on; failures that blame no row still stop the job, writing nothing.

Expected rows are computed here independently with pandas from the injected defects, and the
engines' splits are compared with them on both engines.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable, write_deltalake

from engine.backends.dask import DaskBackend
from engine.backends.spark import SparkBackend
from engine.conf import load_conf
from engine.errors import ValidationFailed
from engine.pipeline import validate_table
from engine.policies.quarantine import row_rules
from engine.run_context import RunContext
from engine.validation.suite import QUARANTINE_REASONS, ExpectationSpec, Suite
from tests.test_validation import ROWS, feature_frame, run, spread

SEGMENTS = ["retail", "sme", "corporate"]
NOT_NULL = "expect_column_values_to_not_be_null(amount_sum_7d)"
BETWEEN = "expect_column_values_to_be_between(amount_count_30d)"
IN_SET = "expect_column_values_to_be_in_set(segment)"
UNIQUE = "expect_compound_columns_to_be_unique(customer_id,as_of)"

SUITE = Suite("rows", "<rows>", (
    ExpectationSpec("expect_table_row_count_to_be_between", {"min_value": 1}),
    ExpectationSpec("expect_column_values_to_not_be_null", {"column": "amount_sum_7d"}),
    ExpectationSpec("expect_column_values_to_be_between",
                    {"column": "amount_count_30d", "min_value": 0, "max_value": 5}),
    ExpectationSpec("expect_column_values_to_be_in_set", {"column": "segment", "value_set": SEGMENTS}),
    ExpectationSpec("expect_compound_columns_to_be_unique", {"column_list": ["customer_id", "as_of"]}),
    # Tolerated by mostly: its 2 rows are not blamed, since the expectation passes.
    ExpectationSpec("expect_column_values_to_not_be_null", {"column": "amount_sum_30d", "mostly": 0.99}),
))


def dirty_frame() -> tuple[pd.DataFrame, dict[int, set[str]]]:
    """A frame with injected defects, and the reasons each blamed row (by ``row``) has."""
    frame = feature_frame()
    frame["segment"] = [SEGMENTS[i % 3] for i in range(ROWS)]
    frame["row"] = np.arange(ROWS, dtype="int64")
    blamed: dict[int, set[str]] = {}

    def blame(rows, reason):
        for row in rows:
            blamed.setdefault(int(row), set()).add(reason)

    nulls = spread(ROWS, 5)
    frame.loc[nulls, "amount_sum_7d"] = np.nan
    out_of_range = [nulls[1], 17, 640, 1111]  # one row also has a null
    frame.loc[out_of_range, "amount_count_30d"] = [-1, 6, 99, -5]
    unknown = [33, 777]
    frame.loc[unknown, "segment"] = "martian"
    frame.loc[[50, 950], "amount_sum_30d"] = np.nan
    # Duplicate (customer_id, as_of): rows 100 and 1000 share a key, 200/300/400 another.
    for column in ("customer_id", "as_of"):
        frame.loc[1000, column] = frame.loc[100, column]
        frame.loc[[300, 400], column] = frame.loc[200, column]
    blame(nulls, NOT_NULL)
    blame(out_of_range, BETWEEN)
    blame(unknown, IN_SET)
    blame([100, 1000, 200, 300, 400], UNIQUE)
    return frame, blamed


def split(engine_name, request, frame, rules):
    if engine_name == "spark":
        import pyarrow as pa
        from pyspark.sql.pandas.types import from_arrow_schema

        spark = request.getfixturevalue("spark")
        schema = from_arrow_schema(pa.Schema.from_pandas(frame, preserve_index=False))
        kept, bad = SparkBackend(spark).quarantine_split(
            spark.createDataFrame(frame, schema=schema), rules, {"quarantine_run_id": "r1"})
        return kept.toPandas(), bad.toPandas()
    import dask.dataframe as dd

    backend = DaskBackend(request.getfixturevalue("dask_cluster_client"), show_progress=False)
    kept, bad = backend.quarantine_split(dd.from_pandas(frame, npartitions=3), rules,
                                         {"quarantine_run_id": "r1"})
    return kept.compute(), bad.compute()


def test_quarantine_keeps_exactly_the_good_rows(engine_name, request):
    frame, blamed = dirty_frame()
    report = run(engine_name, frame, SUITE)
    rules = row_rules([report])
    assert [r.reason for r in rules] == [NOT_NULL, BETWEEN, IN_SET, UNIQUE]
    kept, bad = split(engine_name, request, frame, rules)

    assert len(bad) == len(blamed)
    assert {int(i): set(r.split("; ")) for i, r in zip(bad["row"], bad[QUARANTINE_REASONS])} \
        == blamed
    assert set(bad["quarantine_run_id"]) == {"r1"}
    # Exactly the good rows go on, unchanged, and they pass the whole suite.
    expected_kept = frame[~frame["row"].isin(list(blamed))]
    assert len(kept) + len(bad) == ROWS
    pd.testing.assert_frame_equal(kept.sort_values("row").reset_index(drop=True),
                                  expected_kept.reset_index(drop=True), check_dtype=False)
    assert run(engine_name, kept, SUITE).success
    # Each failed expectation's unexpected count is the number of rows it blames.
    for outcome in report.failures():
        label = f"{outcome.expectation_type}({outcome.column})"
        assert outcome.unexpected_count == sum(label in reasons for reasons in blamed.values())


# --- through the pipeline's validate stage, on Delta tables -------------------------------------

@pytest.fixture
def lakehouse(tmp_path):
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"name": "rows", "expectations": [
        {"type": s.type, "kwargs": dict(s.kwargs)} for s in SUITE.expectations]}))
    return tmp_path


def context(lakehouse, engine_name, *overrides):
    conf = load_conf("conf/test.yaml", overrides=[
        f"lakehouse={lakehouse}", f"validation.training_suites=[{lakehouse / 'suite.json'}]",
        "validation.training_policy=quarantine", *overrides])
    ctx = RunContext.start(conf)
    ctx.output_suffix = engine_name
    return ctx


def backend_for(engine_name, request):
    if engine_name == "spark":
        return SparkBackend(request.getfixturevalue("spark"))
    return DaskBackend(request.getfixturevalue("dask_cluster_client"), show_progress=False)


def test_validate_stage_quarantines_bad_rows_and_the_table_keeps_the_rest(engine_name, request, lakehouse):
    frame, blamed = dirty_frame()
    ctx = context(lakehouse, engine_name)
    table = ctx.table("training_set")
    write_deltalake(table.path, frame, mode="overwrite")
    validate_table(backend_for(engine_name, request), ctx, "training_set",
                   ctx.conf.validation.training_suites)

    kept = DeltaTable(table.path)
    assert kept.version() == 1
    kept_ids = set(kept.to_pandas()["row"])
    assert kept_ids == set(frame["row"]) - set(blamed)
    quarantine = DeltaTable(f"{ctx.table('quarantine').path}/{table.name}")
    bad = quarantine.to_pandas()
    assert {int(i): set(r.split("; ")) for i, r in zip(bad["row"], bad[QUARANTINE_REASONS])} \
        == blamed
    assert set(bad["quarantine_run_id"]) == {ctx.run_id}
    assert set(bad["quarantine_source"]) == {f"{table.name}@v0"}
    # The kept version records where its rows came from and the validations that judged them.
    meta = kept.history(1)[0]
    assert json.loads(meta["lakescore.inputs"]) == {table.name: 0}
    assert json.loads(meta["lakescore.validation_ids"]) == ctx.validation_ids[table.name][:1]
    stage = ctx.summary.stages[-1]
    assert stage.note.startswith(f"quarantined {len(blamed)} rows")
    assert stage.rows_out == len(kept_ids)


def test_a_failure_that_blames_no_row_still_fails_and_writes_nothing(engine_name, request, lakehouse):
    frame, _ = dirty_frame()
    ctx = context(lakehouse, engine_name)
    table = ctx.table("training_set")
    write_deltalake(table.path, frame, mode="overwrite")
    suite = json.loads((lakehouse / "suite.json").read_text())
    suite["expectations"].append({"type": "expect_column_mean_to_be_between",
                                  "kwargs": {"column": "amount_sum_90d", "max_value": 1}})
    (lakehouse / "suite.json").write_text(json.dumps(suite))
    with pytest.raises(ValidationFailed) as failed:
        validate_table(backend_for(engine_name, request), ctx, "training_set",
                       ctx.conf.validation.training_suites)
    message = str(failed.value)
    assert "expect_column_mean_to_be_between(amount_sum_90d): observed" in message
    assert "quarantine cannot settle" in message and f"{NOT_NULL}: 5 unexpected" in message
    assert DeltaTable(table.path).version() == 0
    assert not Path(f"{ctx.table('quarantine').path}/{table.name}").exists()


def test_policy_is_chosen_per_table(lakehouse):
    conf = load_conf("conf/test.yaml", overrides=["validation.scoring_policy=warn"])
    assert conf.validation.policy_for("scoring_set") == "warn"
    assert conf.validation.policy_for("training_set") == "fail"
