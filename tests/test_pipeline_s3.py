"""The whole pipeline on Dask with the lakehouse on S3 (a moto server on 127.0.0.1): the demo
tables, features, validation, training (H2O reads a local copy of the training set), the
registry's artifacts (the MOJO) and the scores all live in the bucket, read and written through
the storage layer with ``storage_options``; nothing lands in a local lakehouse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


def test_whole_pipeline_on_dask_with_the_lakehouse_on_s3(s3_options, tmp_path):  # noqa: F811
    import boto3
    from deltalake import DeltaTable

    conf = yaml.safe_load((REPO / "conf" / "test.yaml").read_text())
    lakehouse = "s3://lake/house"
    conf.update(lakehouse=lakehouse, storage_options=dict(s3_options),
                registry={"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"})
    conf.setdefault("h2o", {})["port"] = int(os.environ.get("LAKESCORE_TEST_H2O_PORT", "54321")) + 20
    conf_file = tmp_path / "s3.yaml"
    conf_file.write_text(yaml.safe_dump(conf))
    work = tmp_path / "cwd"
    work.mkdir()
    result = subprocess.run([sys.executable, "-m", "jobs.pipeline", "--engines", "dask", "--conf", str(conf_file)],
                            cwd=work, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

    options = dict(s3_options)
    scores = DeltaTable(f"{lakehouse}/tables/scores", storage_options=options).to_pandas()
    to_score = DeltaTable(f"{lakehouse}/tables/to_score", storage_options=options).to_pandas()
    assert len(scores) == len(to_score) and scores["score"].between(0, 1).all()
    assert not scores.duplicated(["customer_id", "as_of", "model_id"]).any()
    s3 = boto3.client("s3", endpoint_url=options["AWS_ENDPOINT_URL"], aws_access_key_id="test",
                      aws_secret_access_key="test", region_name="us-east-1")
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="lake", Prefix="house/")
            for o in page.get("Contents", [])]
    assert any(k.startswith("house/registry/artifacts/") and k.endswith(".mojo") for k in keys), keys[:20]
    assert any(k.startswith("house/tables/training_set/") for k in keys)
    assert not (work / "lakehouse").exists() and not (REPO / "s3:").exists()
