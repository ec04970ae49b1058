"""The run manifest: every job writes runs/<run_id>/manifest.json with what made the run, secrets
redacted, through the storage layer (a local lakehouse and an S3 one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import ManifestMismatch
from engine.manifest import REDACTED, Manifest, read_manifest, redact, redact_argument

REPO = Path(__file__).resolve().parents[1]
PLANTED = "planted-Secret-9f3c1b"


def run_job(name: str, lakehouse: str, *extra: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable)
    cmd = [sys.executable, "-m", f"jobs.{name}", "--conf", str(REPO / "conf/test.yaml"),
           "--set", f"lakehouse={lakehouse}", *extra]
    return subprocess.run(cmd, cwd=cwd, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=600)


def test_redact_replaces_secret_keys_and_uri_passwords_and_names_them():
    conf = {"storage_options": {"AWS_ACCESS_KEY_ID": "AKIA1", "AWS_SECRET_ACCESS_KEY": PLANTED,
                                "AWS_REGION": "eu-west-1"},
            "registry": {"tracking_uri": f"postgresql://ml:{PLANTED}@db:5432/mlflow"},
            "spark": {"options": {"spark.hadoop.fs.s3a.secret.key": PLANTED, "spark.ui.port": 4040}},
            "layout": {"scores": {"keys": ["customer_id"]}}}
    out, found = redact(conf)
    assert PLANTED not in json.dumps(out)
    assert out["storage_options"]["AWS_SECRET_ACCESS_KEY"] == REDACTED
    assert out["storage_options"]["AWS_REGION"] == "eu-west-1"
    assert out["registry"]["tracking_uri"] == f"postgresql://ml:{REDACTED}@db:5432/mlflow"
    assert out["layout"] == conf["layout"]  # "keys" is not a secret
    assert sorted(found) == ["registry.tracking_uri", "spark.options.spark.hadoop.fs.s3a.secret.key",
                             "storage_options.AWS_ACCESS_KEY_ID", "storage_options.AWS_SECRET_ACCESS_KEY"]
    assert redact_argument(f"storage_options.AWS_SECRET_ACCESS_KEY={PLANTED}").endswith(REDACTED)
    assert redact_argument("--engine") == "--engine"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    lakehouse = tmp_path_factory.mktemp("manifest_lakehouse")
    result = run_job("generate", str(lakehouse), "--set", f"storage_options.AWS_SECRET_ACCESS_KEY={PLANTED}",
                     "--run-id", "gen-1")
    assert result.returncode == 0, result.stderr[-4000:]
    return lakehouse, result


def test_every_job_writes_a_manifest_with_versions_features_and_runtime(generated):
    lakehouse, result = generated
    path = lakehouse / "runs" / "gen-1" / "manifest.json"
    assert f"manifest: {path}" in result.stdout
    manifest = read_manifest(str(path))
    assert manifest.job == "generate" and manifest.run_id == "gen-1"
    assert set(manifest.outputs) == {"events", "labels", "to_score"}
    assert all(o["version"] == 0 for o in manifest.outputs.values())
    assert manifest.features["name"] and len(manifest.features["hash"]) == 64
    assert "aggregations" in manifest.features["yaml"] or "features" in manifest.features["yaml"]
    assert manifest.engine["name"] == "spark" and manifest.engine["settings"]["master"] == "local[2]"
    assert manifest.lakescore["version"] and manifest.lakescore["git_commit"]
    runtime = manifest.runtime
    assert runtime["python"].startswith("3.11") and runtime["java"].startswith("17")
    for library in ("pyarrow", "numpy", "pandas", "deltalake", "h2o", "great-expectations", "pyspark"):
        assert library in runtime["libraries"], library
    assert manifest.conf["demo"]["customers"] == 600


def test_a_planted_secret_appears_nowhere_in_the_manifest(generated):
    lakehouse, _ = generated
    text = (lakehouse / "runs" / "gen-1" / "manifest.json").read_text()
    assert PLANTED not in text
    manifest = json.loads(text)
    assert manifest["conf"]["storage_options"]["AWS_SECRET_ACCESS_KEY"] == REDACTED
    assert "storage_options.AWS_SECRET_ACCESS_KEY" in manifest["redacted"]
    assert any(a.endswith(REDACTED) for a in manifest["argv"])


def test_a_manifest_of_another_lakescore_version_is_refused(generated, tmp_path):
    lakehouse, _ = generated
    raw = json.loads((lakehouse / "runs" / "gen-1" / "manifest.json").read_text())
    raw["lakescore"]["version"] = "0.0.1"
    other = tmp_path / "manifest.json"
    other.write_text(json.dumps(raw))
    with pytest.raises(ManifestMismatch, match=r"written by lakescore 0\.0\.1.*this is lakescore"):
        read_manifest(str(other))
    raw["format"] = 99
    other.write_text(json.dumps(raw))
    with pytest.raises(ManifestMismatch, match="manifest format 99"):
        Manifest.from_json(other.read_text(), str(other))


def test_the_manifest_is_written_to_an_s3_lakehouse_through_the_storage_layer(tmp_path, s3_options):
    import boto3

    # moto takes any secret: plant one, and it must not reach the manifest.
    options = {**s3_options, "AWS_SECRET_ACCESS_KEY": PLANTED}
    client = boto3.client("s3", endpoint_url=options["AWS_ENDPOINT_URL"], aws_access_key_id="test",
                          aws_secret_access_key=PLANTED, region_name="us-east-1")
    sets = [a for k, v in options.items() for a in ("--set", f'storage_options.{k}="{v}"')]
    result = run_job("generate", "s3://lake/manifest-house", *sets, "--run-id", "s3-gen", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    body = client.get_object(Bucket="lake", Key="manifest-house/runs/s3-gen/manifest.json")["Body"].read().decode()
    assert PLANTED not in body
    manifest = read_manifest("s3://lake/manifest-house/runs/s3-gen/manifest.json", options)
    assert manifest.outputs["events"]["path"] == "s3://lake/manifest-house/tables/events"
