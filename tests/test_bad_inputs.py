"""Broken inputs a new user meets, on both engines, through ``run_job`` (the jobs' own error
handling): each test breaks one input of the test-size demo the way it breaks in practice,
then checks the exit code, the message (table, file, column, count) and that no table changed
(Delta versions before == after).

The stages run in process on the session's engines (``run_job`` with a body that calls them),
so the whole module takes seconds, not a job start per case.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from engine.backends.dask import DaskBackend
from engine.backends.spark import SparkBackend
from engine.cli import job_parser, run_job
from engine.conf import load_conf
from engine.errors import EXIT_CODES, UnreadableFile
from engine.demo_data import write_demo_tables
from engine.pipeline import (build_features, score_rows, train_model, validate_inputs,
                             validate_table)
from engine.run_context import RunContext

INPUTS = ("events", "labels", "to_score")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The demo's input tables (300 customers), written once; tests copy them."""
    lakehouse = tmp_path_factory.mktemp("demo")
    conf = load_conf("conf/test.yaml", overrides=[f"lakehouse={lakehouse}", "demo.customers=300"])
    write_demo_tables(RunContext.start(conf))
    return lakehouse


@pytest.fixture
def lakehouse(demo, tmp_path) -> Path:
    for name in INPUTS:
        shutil.copytree(demo / "tables" / name, tmp_path / "tables" / name)
    return tmp_path


def backend_for(engine_name, request):
    if engine_name == "spark":
        return SparkBackend(request.getfixturevalue("spark"))
    return DaskBackend(request.getfixturevalue("dask_cluster_client"), show_progress=False)


def as_job(lakehouse, backend, body, capsys, *overrides: str) -> tuple[int, str, str]:
    """``body(backend, ctx)`` run as a job is (``run_job``): exit code, stdout, stderr."""
    argv = ["--conf", "conf/test.yaml", "--set", f"lakehouse={lakehouse}"]
    for override in overrides:
        argv += ["--set", override]
    capsys.readouterr()
    code = run_job("test", job_parser("test"), lambda conf, ctx, args: body(backend, ctx), argv)
    out, err = capsys.readouterr()
    return code, out, err


def versions(lakehouse: Path) -> dict[str, int]:
    """Every Delta table under the lakehouse → its latest version."""
    return {str(log.parent.relative_to(lakehouse)): DeltaTable(str(log.parent)).version()
            for log in sorted(lakehouse.rglob("_delta_log"))}


def table_path(lakehouse: Path, name: str) -> str:
    return str(lakehouse / "tables" / name)


def read(lakehouse: Path, name: str) -> pd.DataFrame:
    return DeltaTable(table_path(lakehouse, name)).to_pandas()


def score_inputs(backend, ctx) -> None:
    validate_inputs(backend, ctx, "events", "to_score")
    build_features(backend, ctx, "to_score", "scoring_set", "score features")
    validate_table(backend, ctx, "scoring_set", ctx.conf.validation.scoring_suites,
                   stage="validate scoring set")


def train_inputs(backend, ctx) -> None:
    validate_inputs(backend, ctx, "events", "labels")
    build_features(backend, ctx, "labels", "training_set", "features")


# --- 2. garbage in: empty events, as-of beyond the events, all-default rows ------------------

def test_an_empty_events_table_stops_the_run_with_exit_4(engine_name, request, lakehouse, capsys):
    events = read(lakehouse, "events")
    write_deltalake(table_path(lakehouse, "events"), events.iloc[:0], mode="overwrite")
    before = versions(lakehouse)
    code, out, err = as_job(lakehouse, backend_for(engine_name, request), score_inputs, capsys)
    assert code == 4, err
    assert "events@v1" in err and "expect_table_row_count_to_be_between" in err
    assert versions(lakehouse) == before
    # Without the suite, the features stage refuses too, before writing.
    code, _, err = as_job(lakehouse, backend_for(engine_name, request), score_inputs, capsys,
                          "validation.suites.events=[]")
    assert code == 4 and "has no events" in err and "events (" in err
    assert versions(lakehouse) == before


def test_rows_to_score_after_the_newest_event_stop_the_run_with_exit_4(engine_name, request,
                                                                        lakehouse, capsys):
    to_score = read(lakehouse, "to_score")
    to_score["as_of"] = pd.Timestamp("2030-01-01", tz="UTC")
    write_deltalake(table_path(lakehouse, "to_score"), to_score, mode="overwrite")
    before = versions(lakehouse)
    code, out, err = as_job(lakehouse, backend_for(engine_name, request), score_inputs, capsys)
    assert code == 4, err
    assert f"table to_score ({table_path(lakehouse, 'to_score')}) version 1: {len(to_score):,} of " \
           f"{len(to_score):,} rows have 'as_of' after" in err
    assert "more than 90 days after the newest event in events" in err
    assert versions(lakehouse) == before and "summary saved to" in out


def test_a_feature_table_of_all_default_rows_is_refused_before_scoring(engine_name, request,
                                                                       lakehouse, capsys):
    to_score = read(lakehouse, "to_score")
    to_score["customer_id"] += 1_000_000  # keys of another system: no events match
    write_deltalake(table_path(lakehouse, "to_score"), to_score, mode="overwrite")
    code, _, err = as_job(lakehouse, backend_for(engine_name, request), score_inputs, capsys)
    assert code == 4, err
    assert f"{len(to_score):,} of {len(to_score):,} rows (100.0%) have every feature at its " \
           "no-event default (amount_count_7d" in err
    assert "validation.max_default_share 90%" in err
    assert not (lakehouse / "tables" / "scores").exists()


# --- 3. damaged or mistyped files -------------------------------------------------------------

def first_file(lakehouse: Path, name: str) -> Path:
    delta = DeltaTable(table_path(lakehouse, name))
    return Path(delta.file_uris()[0].removeprefix("file://"))


def test_a_file_with_a_mistyped_column_is_exit_3_naming_table_file_and_column(engine_name, request,
                                                                              lakehouse, capsys):
    path = first_file(lakehouse, "events")
    data = pq.read_table(path)
    amount = data.schema.get_field_index("amount")
    data = data.set_column(amount, "amount", data["amount"].cast(pa.string()))  # "12.5" strings
    pq.write_table(data, path)
    before = versions(lakehouse)
    code, _, err = as_job(lakehouse, backend_for(engine_name, request), train_inputs, capsys)
    assert code == 3, err
    assert f"data file {path.name}" in err and "table events (" in err
    assert "column 'amount' is string (string) in this file but float in the table's schema" in err
    assert versions(lakehouse) == before


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_a_truncated_or_missing_file_is_exit_8_naming_the_file(engine_name, request, lakehouse,
                                                               capsys, damage):
    path = first_file(lakehouse, "events")
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.unlink()
    before = versions(lakehouse)
    code, _, err = as_job(lakehouse, backend_for(engine_name, request), train_inputs, capsys)
    assert code == UnreadableFile.exit_code == 8, err
    assert f"data file {path.name}" in err and "UnreadableFile" in err
    assert ("is missing" if damage == "missing" else "cannot be read as Parquet") in err
    assert versions(lakehouse) == before


def test_an_unexpected_error_still_ends_with_the_run_summary(engine_name, request, lakehouse, capsys):
    def body(backend, ctx):
        validate_inputs(backend, ctx, "to_score")
        ctx.summary.facts["reached"] = "yes"
        raise ZeroDivisionError("something lakescore did not foresee")

    code, out, err = as_job(lakehouse, backend_for(engine_name, request), body, capsys)
    assert code == 1
    assert "unexpected ZeroDivisionError: something lakescore did not foresee" in err
    assert "validate to_score" in out and "reached: yes" in out
    (summary,) = (lakehouse / "runs").glob("*/summary.json")
    assert json.loads(summary.read_text())["stages"][0]["stage"] == "validate to_score"


# --- 4. malformed spines ----------------------------------------------------------------------

def test_labels_without_the_label_column_are_exit_3_before_writing(engine_name, request, lakehouse, capsys):
    labels = read(lakehouse, "labels").drop(columns="churned")
    write_deltalake(table_path(lakehouse, "labels"), labels, mode="overwrite", schema_mode="overwrite")
    before = versions(lakehouse)
    code, _, err = as_job(lakehouse, backend_for(engine_name, request), train_inputs, capsys)
    assert code == 3, err
    assert "version 1 has no label column 'churned'; its columns are customer_id, as_of" in err
    assert versions(lakehouse) == before and not (lakehouse / "tables" / "training_set").exists()


def test_duplicate_spine_rows_are_exit_4_naming_the_count(engine_name, request, lakehouse, capsys):
    labels = read(lakehouse, "labels")
    write_deltalake(table_path(lakehouse, "labels"), labels.iloc[:100], mode="append")
    to_score = read(lakehouse, "to_score")
    write_deltalake(table_path(lakehouse, "to_score"), to_score.iloc[:50], mode="append")
    before = versions(lakehouse)
    code, _, err = as_job(lakehouse, backend_for(engine_name, request), train_inputs, capsys)
    assert code == 4, err
    assert "labels@v1" in err
    assert "expect_compound_columns_to_be_unique(customer_id,as_of): 200 unexpected" in err
    code, _, err = as_job(lakehouse, backend_for(engine_name, request), score_inputs, capsys)
    assert code == 4 and "to_score@v1" in err
    assert "expect_compound_columns_to_be_unique(customer_id,as_of): 100 unexpected" in err
    assert versions(lakehouse) == before


def test_duplicate_label_rows_are_set_aside_under_policy_quarantine(engine_name, request, lakehouse, capsys):
    labels = read(lakehouse, "labels")
    write_deltalake(table_path(lakehouse, "labels"), labels.iloc[:100], mode="append")
    code, _, err = as_job(lakehouse, backend_for(engine_name, request), train_inputs, capsys,
                          "validation.policy=quarantine")
    assert code == 0, err
    quarantined = read(lakehouse, "quarantine/labels")
    assert len(quarantined) == 200  # every row of a duplicated (customer_id, as_of)
    training = read(lakehouse, "training_set")
    assert len(training) == len(labels) - 100
    assert not training.duplicated(["customer_id", "as_of"]).any()


# --- 2. rescoring a batch replaces what its previous run wrote --------------------------------

@pytest.fixture(scope="module")
def model(demo, request):
    """One H2O model on the demo's training set (built on Dask)."""
    request.getfixturevalue("h2o_cluster")
    conf = load_conf("conf/test.yaml", overrides=[f"lakehouse={demo}"])
    ctx = RunContext.start(conf)
    ctx.output_suffix = "model"
    backend = DaskBackend(request.getfixturevalue("dask_cluster_client"), show_progress=False)
    build_features(backend, ctx, "labels", "training_set", "features")
    return train_model(backend, ctx)


def test_rescoring_a_batch_replaces_the_dates_its_previous_run_wrote(engine_name, request, lakehouse,
                                                                     model, capsys):
    to_score = read(lakehouse, "to_score")
    wrong = to_score.assign(as_of=to_score["as_of"] - pd.Timedelta(days=1))  # a plausible wrong date
    backend = backend_for(engine_name, request)

    def score(backend, ctx):
        score_inputs(backend, ctx)
        score_rows(backend, ctx, model)

    def dates(table: str) -> dict[str, int]:
        scores = read(lakehouse, table)
        return scores.groupby(scores["score_date"].astype(str)).size().to_dict()

    right_day = str(to_score["as_of"].iloc[0].date())
    wrong_day = str(wrong["as_of"].iloc[0].date())
    for batch, table in ((None, "scores"), ("daily", "scores_batch")):
        overrides = [f"tables.scores=tables/{table}", "drift.enabled=false"] + \
            ([f"score.batch={batch}"] if batch else [])
        write_deltalake(table_path(lakehouse, "to_score"), wrong, mode="overwrite")
        assert as_job(lakehouse, backend, score, capsys, *overrides)[0] == 0
        write_deltalake(table_path(lakehouse, "to_score"), to_score, mode="overwrite")
        code, _, err = as_job(lakehouse, backend, score, capsys, *overrides)
        assert code == 0, err
    n = len(to_score)
    # Without a batch, a rerun replaces only the dates it writes: the wrong date stays.
    assert dates("scores") == {wrong_day: n, right_day: n}
    # With score.batch, the rerun replaces everything the batch's previous run wrote, in one commit.
    assert dates("scores_batch") == {right_day: n}
    last = DeltaTable(table_path(lakehouse, "scores_batch")).history(1)[0]
    assert last["lakescore.score_batch"] == "daily" and last["operation"] != "DELETE"
    assert DeltaTable(table_path(lakehouse, "scores_batch")).version() == 1


# --- 6. an object-store lakehouse -------------------------------------------------------------

def s3_keys(options, prefix: str) -> list[str]:
    import boto3

    client = boto3.client("s3", endpoint_url=options["AWS_ENDPOINT_URL"], aws_access_key_id="test",
                          aws_secret_access_key="test", region_name="us-east-1")
    pages = client.get_paginator("list_objects_v2").paginate(Bucket="lake", Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_an_object_store_lakehouse_keeps_run_files_there(engine_name, request, lakehouse, capsys,
                                                         s3_options, monkeypatch, tmp_path):
    """Reports and the summary go to the s3:// run directory, never to a local ./s3:/ folder.
    (The tables stay local here: Spark reads s3:// only with hadoop-aws, which cannot be
    installed on this machine; Dask's S3 reads are in test_storage_s3.)"""
    monkeypatch.chdir(tmp_path)
    root = f"house-{engine_name}"
    options = [f"lakehouse=s3://lake/{root}", f"tables.events={table_path(lakehouse, 'events')}",
               f"tables.to_score={table_path(lakehouse, 'to_score')}",
               *(f"storage_options.{k}='{v}'" for k, v in s3_options.items())]
    code, out, err = as_job(lakehouse, backend_for(engine_name, request),
                            lambda backend, ctx: validate_inputs(backend, ctx, "events", "to_score"),
                            capsys, *options)
    assert code == 0, err
    keys = s3_keys(s3_options, root)
    assert sum(k.endswith("/summary.json") for k in keys) == 1
    assert sum(f"/validation/{engine_name}/events" in k and k.endswith(".json") for k in keys) == 1
    assert sum(f"/validation/{engine_name}/to_score" in k and k.endswith(".html") for k in keys) == 1
    assert f"summary saved to s3://lake/{root}/runs/" in out
    assert not (tmp_path / "s3:").exists() and not any(Path(tmp_path).glob("s3*"))


@pytest.mark.parametrize("broken", ["no such bucket", "endpoint down"])
def test_an_unusable_object_store_is_exit_9_with_a_clear_message(engine_name, request, lakehouse,
                                                                 capsys, s3_options, broken):
    options = dict(s3_options)
    bucket = "lake"
    if broken == "no such bucket":
        bucket = "no-such-bucket"
    else:
        import socket

        with socket.socket() as sock:  # a port nobody listens on
            sock.bind(("127.0.0.1", 0))
            options["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{sock.getsockname()[1]}"
    overrides = [f"lakehouse=s3://{bucket}/house", *(f"storage_options.{k}='{v}'" for k, v in options.items())]
    code, out, err = as_job(lakehouse, backend_for(engine_name, request),
                            lambda backend, ctx: validate_inputs(backend, ctx, "events"),
                            capsys, *overrides)
    assert code == 9, err
    assert f"StorageUnavailable: object store at s3://{bucket}/house cannot be used" in err
    assert "Check the endpoint, credentials, bucket" in err and "Traceback" not in err


# --- the exit-code table ----------------------------------------------------------------------

def test_readme_exit_code_table_matches_the_errors():
    readme = Path(__file__).resolve().parents[1].joinpath("README.md").read_text()
    for code, meaning in EXIT_CODES.items():
        assert f"| {code} | {meaning} |" in readme, (code, meaning)


# --- the twelve kinds that the tests above do not already cover (docs/bad_input.md) --

def restore(lakehouse: Path, demo: Path, name: str) -> None:
    """Put the demo's clean copy of an input table back (the fix before the rerun)."""
    shutil.rmtree(lakehouse / "tables" / name)
    shutil.copytree(demo / "tables" / name, lakehouse / "tables" / name)


def test_a_file_lacking_a_column_the_features_read_is_exit_3_and_the_fixed_rerun_runs(
        engine_name, request, demo, lakehouse, capsys):
    """Kind 1 (a column present in some files only): Delta reads a file without the column as
    nulls, which would silently change the features; refused before anything is computed."""
    path = first_file(lakehouse, "events")
    pq.write_table(pq.read_table(path).drop_columns(["amount"]), path)
    before = versions(lakehouse)
    files = len(DeltaTable(table_path(lakehouse, "events")).file_uris())
    no_suites = ("validation.suites.events=[]", "validation.suites.labels=[]")  # not the point here
    code, _, err = as_job(lakehouse, backend_for(engine_name, request), train_inputs, capsys, *no_suites)
    assert code == 3, err
    assert f"1 of {files} data files lack column(s) ['amount'] that this job reads" in err
    assert f"data file {path.name}" in err and "table events (" in err
    assert versions(lakehouse) == before
    restore(lakehouse, demo, "events")
    code, _, err = as_job(lakehouse, backend_for(engine_name, request), train_inputs, capsys, *no_suites)
    assert code == 0, err
    assert DeltaTable(table_path(lakehouse, "training_set")).version() == 0


def test_null_keys_and_times_in_events_are_exit_4_naming_column_and_count(
        engine_name, request, demo, lakehouse, capsys):
    """Kind 2: null keys and null times are refused by the events suite; a null amount is kept
    (count counts the event, sum and mean ignore the value: conf/features/customer.yaml)."""
    events = read(lakehouse, "events")
    bad = events.iloc[:6].copy()
    bad["customer_id"] = bad["customer_id"].astype("Int64")
    bad.loc[bad.index[:3], "customer_id"] = None
    bad.loc[bad.index[3:5], "event_time"] = None
    bad.loc[bad.index[5:], "amount"] = None
    schema = DeltaTable(table_path(lakehouse, "events")).schema().to_arrow()
    write_deltalake(table_path(lakehouse, "events"),
                    pa.Table.from_pandas(bad, schema=pa.schema(schema), preserve_index=False),
                    mode="append")
    before = versions(lakehouse)
    code, _, err = as_job(lakehouse, backend_for(engine_name, request), train_inputs, capsys)
    assert code == 4, err
    assert "events@v1" in err
    assert "expect_column_values_to_not_be_null(customer_id): 3 unexpected" in err
    assert "expect_column_values_to_not_be_null(event_time): 2 unexpected" in err
    assert "(amount)" not in err  # the null amount is not an error
    assert versions(lakehouse) == before


def test_events_whose_amount_column_is_text_are_exit_3_naming_it(engine_name, request, demo,
                                                                 lakehouse, capsys):
    """Kind 3 (a string column where a number is expected) for a whole table, where the file
    check of the mistyped-file test above has nothing to compare against."""
    events = read(lakehouse, "events")
    events["amount"] = events["amount"].map(lambda v: f"{v:.2f}")
    write_deltalake(table_path(lakehouse, "events"), events, mode="overwrite", schema_mode="overwrite")
    before = versions(lakehouse)
    code, _, err = as_job(lakehouse, backend_for(engine_name, request), train_inputs, capsys)
    assert code == 4, err  # the events suite meets it first
    assert "events@v1" in err and "expect_column_values_to_be_between(amount): could not be evaluated" in err
    # without the suite, the features stage refuses the column's type before computing
    code, _, err = as_job(lakehouse, backend_for(engine_name, request), train_inputs, capsys,
                          "validation.suites.events=[]")
    assert code == 3, err
    assert "column 'amount' of the events table is string, expected numeric" in err
    assert versions(lakehouse) == before


def test_one_entity_with_half_of_all_events_completes_with_its_features_right(
        engine_name, request, lakehouse, capsys):
    """Kind 6: skew. One customer gets as many events as all others together (half of all);
    the features job completes and that customer's counts are exact."""
    # a fifth of the demo's customers keeps the test fast; the skew is what matters
    labels = read(lakehouse, "labels")
    kept = sorted(labels["customer_id"].unique())[:60]
    labels = labels[labels["customer_id"].isin(kept)].reset_index(drop=True)
    events = read(lakehouse, "events")
    events = events[events["customer_id"].isin(kept)].reset_index(drop=True)
    write_deltalake(table_path(lakehouse, "labels"), labels, mode="overwrite")
    write_deltalake(table_path(lakehouse, "events"), events, mode="overwrite")
    hot = int(kept[0])
    extra = events.assign(customer_id=hot)
    write_deltalake(table_path(lakehouse, "events"), extra, mode="append")
    code, _, err = as_job(lakehouse, backend_for(engine_name, request), train_inputs, capsys)
    assert code == 0, err
    everything = pd.concat([events, extra], ignore_index=True)
    assert (everything["customer_id"] == hot).sum() >= len(everything) / 2
    training = read(lakehouse, "training_set")
    assert len(training) == len(labels)
    mine = everything[everything["customer_id"] == hot]
    for _, row in training[training["customer_id"] == hot].iterrows():
        inside = (mine["event_time"] >= row["as_of"] - pd.Timedelta(days=30)) & (mine["event_time"] < row["as_of"])
        assert row["amount_count_30d"] == inside.sum()


def test_time_zone_naive_event_times_are_exit_3_naming_the_column(engine_name, request, lakehouse,
                                                                  capsys):
    """Kind 10 (time-zone-naive timestamps): a naive event time has no instant; refused naming
    the column instead of being read in the session's zone."""
    events = read(lakehouse, "events")
    events["event_time"] = events["event_time"].dt.tz_localize(None)
    write_deltalake(table_path(lakehouse, "events"), events, mode="overwrite", schema_mode="overwrite")
    before = versions(lakehouse)
    code, _, err = as_job(lakehouse, backend_for(engine_name, request), train_inputs, capsys)
    assert code == 3, err
    assert f"column 'event_time' for table events ({table_path(lakehouse, 'events')}) is a " \
           "time-zone-naive timestamp; lakescore stores UTC instants" in err
    assert versions(lakehouse) == before


def test_a_table_path_that_does_not_exist_is_exit_2_naming_it(engine_name, request, lakehouse,
                                                             capsys, tmp_path):
    """Kind 11 (a table path that does not exist)."""
    missing = tmp_path / "no" / "such" / "events"
    code, _, err = as_job(lakehouse, backend_for(engine_name, request), train_inputs, capsys,
                          f"tables.events={missing}")
    assert code == 2, err
    assert "TableNotFound" in err and str(missing) in err
    assert not (lakehouse / "tables" / "training_set").exists()


@pytest.mark.parametrize("fault", ["unknown key", "wrong type", "bad window"])
def test_bad_conf_is_exit_2_naming_the_key_before_any_work(engine_name, request, lakehouse, capsys,
                                                          tmp_path, fault):
    """Kind 11 through a job on each engine (conf and definitions are checked before any engine
    work; tests/test_conf.py and tests/test_features.py check every message in detail)."""
    if fault == "bad window":
        text = Path("conf/features/customer.yaml").read_text()
        assert "windows: [7d, 30d, 90d]" in text
        features = tmp_path / "features.yaml"
        features.write_text(text.replace("windows: [7d, 30d, 90d]", "windows: [7x, 30d, 90d]"))
        # the definitions are loaded by the features stage: skip the input suites before it
        overrides, expected = [f"features={features}", "validation.suites.events=[]",
                               "validation.suites.labels=[]"], "'7x'"
    elif fault == "wrong type":
        overrides, expected = ["dask.n_workers=two"], "conf.dask.n_workers: expected int"
    else:
        overrides, expected = ["spark.shufle_partitions=3"], "shufle_partitions"
    before = versions(lakehouse)
    code, _, err = as_job(lakehouse, backend_for(engine_name, request), train_inputs, capsys,
                          f"engine={engine_name}", *overrides)
    assert code == 2, err
    assert expected in err and ("DefinitionError" if fault == "bad window" else "ConfError") in err
    assert versions(lakehouse) == before and not (lakehouse / "tables" / "training_set").exists()
