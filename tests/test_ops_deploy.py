"""What operators deploy, checked offline with the real tools: promtool on the alerts, the Grafana
dashboard's PromQL, hadolint on the Dockerfile, kubernetes-validate on the core manifests and the
operators' published schemas on the SparkApplication and DaskJob. Each check is also shown to
fail on a planted mistake, so a check that cannot fail is noticed."""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

from engine.conf import load_conf
from engine.errors import ConfError
from engine.metrics import METRICS

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
DASK_CRD = REPO / "build" / "crds" / "dask-kubernetes-2026.3.0" / "daskjob.yaml"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"ghcr.io/lakescore/lakescore:{VERSION}"


def tool(name: str) -> str:
    found = shutil.which(name) or (str(BIN / name) if (BIN / name).exists() else None)
    if found is None:
        pytest.fail(f"{name} is not installed: run `make setup-ops` (scripts/setup_ops.sh installs it)")
    return found


def run(*cmd: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=300)


# --- Prometheus alerts ---------------------------------------------------------------------

def test_alert_rules_pass_promtool_check_and_their_unit_tests():
    checked = run(tool("promtool"), "check", "rules", "alerts.yml", cwd=DEPLOY / "prometheus")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run(tool("promtool"), "test", "rules", "alerts_test.yml", cwd=DEPLOY / "prometheus")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    config = run(tool("promtool"), "check", "config", "prometheus.yml", cwd=DEPLOY / "prometheus")
    assert config.returncode == 0, config.stdout + config.stderr


def test_alert_unit_tests_fail_when_an_alert_stops_firing(tmp_path):
    for name in ("alerts.yml", "alerts_test.yml"):
        shutil.copy(DEPLOY / "prometheus" / name, tmp_path / name)
    rules = tmp_path / "alerts.yml"
    rules.write_text(rules.read_text().replace("lakescore_drift_psi > 0.2", "lakescore_drift_psi > 0.5"))
    tested = run(tool("promtool"), "test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert tested.returncode != 0 and "LakescoreFeatureDrift" in tested.stdout + tested.stderr


def alert_metric_names() -> set[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return {name for group in rules["groups"] for rule in group["rules"]
            for name in promql_metric_names(rule["expr"])}


def test_alerts_name_only_metrics_the_jobs_push():
    assert alert_metric_names() <= {m.name for m in METRICS}


# --- Grafana dashboard ---------------------------------------------------------------------

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                "or", "unless", "offset", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: what is left once strings, label
    matchers, ranges, grouping clauses, function calls, keywords and numbers are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\$\{?\w+\}?", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        following = text[match.end():].lstrip()
        if following.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def dashboard() -> dict:
    return json.loads((DEPLOY / "grafana" / "dashboards" / "lakescore.json").read_text())


def dashboard_queries(board: dict) -> list[str]:
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for variable in board["templating"]["list"]:
        found = re.match(r"label_values\((.*),\s*\w+\)$", str(variable.get("query", "")))
        if found:
            exprs.append(found.group(1))
    return exprs


def dashboard_metric_names(board: dict) -> set[str]:
    return {name for expr in dashboard_queries(board) for name in promql_metric_names(expr)}


def test_metric_name_extraction_sees_through_promql():
    expr = 'time() - max by (job) (lakescore_a{job=~"$job", x="y"}) / rate(lakescore_b[5m]) > bool 3'
    assert promql_metric_names(expr) == {"lakescore_a", "lakescore_b"}


def test_dashboard_queries_are_valid_promql(tmp_path):
    """promtool parses each query as a recording rule (Grafana's variables replaced by a
    match-all), so a syntax error in a panel fails here rather than on the wall screen."""
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard_query_{i}", "expr": expr.replace("$job", ".*").replace("$engine", ".*")}
        for i, expr in enumerate(dashboard_queries(dashboard()))]}]}
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = run(tool("promtool"), "check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dashboard_names_only_declared_metrics_and_shows_each_area():
    board = dashboard()
    names = dashboard_metric_names(board)
    assert names <= {m.name for m in METRICS}, names - {m.name for m in METRICS}
    for needed in ("lakescore_run_exit_code", "lakescore_stage_seconds", "lakescore_stage_rows_out",
                   "lakescore_validation_expectations_failed", "lakescore_drift_psi",
                   "lakescore_scoring_rows_per_second", "lakescore_model_info"):
        assert needed in names


def test_a_dashboard_query_naming_an_unknown_metric_is_caught():
    board = copy.deepcopy(dashboard())
    board["panels"][0]["targets"][0]["expr"] = 'lakescore_run_exitcode{job=~"$job"}'
    assert dashboard_metric_names(board) - {m.name for m in METRICS} == {"lakescore_run_exitcode"}


def test_grafana_provisioning_points_at_a_dashboards_folder():
    provisioning = yaml.safe_load((DEPLOY / "grafana" / "provisioning.yaml").read_text())
    (provider,) = provisioning["providers"]
    assert provisioning["apiVersion"] == 1 and provider["type"] == "file"
    assert provider["options"]["path"]
    assert dashboard()["uid"] and all(p["datasource"]["uid"] == "${datasource}" for p in dashboard()["panels"])


# --- Container image -----------------------------------------------------------------------

def test_dockerfile_passes_hadolint():
    linted = run(tool("hadolint"), "Dockerfile")
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_hadolint_fails_a_dockerfile_with_known_mistakes(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nWORKDIR app\n")
    linted = run(tool("hadolint"), str(bad))
    assert linted.returncode != 0 and "DL3007" in linted.stdout


def test_dockerfile_installs_through_the_setup_script_and_constraints():
    text = (REPO / "Dockerfile").read_text()
    stages = re.split(r"(?m)^FROM ", text)[1:]
    assert len(stages) == 2, "a build stage and a final stage"
    build, final = stages
    assert "bash scripts/setup.sh" in build and "constraints.txt" in build
    assert "pip wheel" in build and "dist/lakescore-*.whl" in build
    (packages,) = re.findall(r"apt-get install -y --no-install-recommends ([^\\&]+)", final)
    assert "openjdk-17-jre-headless" in packages.split()
    for build_tool in ("openjdk-17-jdk-headless", "gcc", "build-essential", "make", "git"):
        assert build_tool not in packages.split(), f"{build_tool} in the final stage"
    assert re.search(r"(?m)^USER (?!root|0\b)\S+", final)
    assert f'org.opencontainers.image.version="{VERSION}"' in final
    # the files the build copies exist, and the ones .dockerignore drops are not needed
    for source in re.findall(r"(?m)^COPY (?!--from)(.+) \S+$", text):
        for item in source.split():
            assert (REPO / item).exists(), f"Dockerfile copies {item}, which does not exist"
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", "build", "lakehouse", ".git"} <= set(ignored)


# --- Kubernetes ----------------------------------------------------------------------------

def manifests() -> list[tuple[Path, dict]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")) + [DEPLOY / "airflow" / "pod_template.yaml"]:
        docs += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


CORE = {"ConfigMap", "Secret", "ServiceAccount", "Role", "RoleBinding", "CronJob", "Pod"}


def test_core_manifests_pass_kubernetes_validate_strict():
    paths = sorted({str(p) for p, doc in manifests() if doc["kind"] in CORE})
    checked = run(tool("kubernetes-validate"), "--strict", *paths)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ERROR" not in checked.stdout


def test_kubernetes_validate_strict_fails_a_planted_wrong_field(tmp_path):
    (path, doc), = [(p, d) for p, d in manifests() if d["kind"] == "CronJob"]
    bad = copy.deepcopy(doc)
    bad["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    planted = tmp_path / "cronjob.yaml"
    planted.write_text(yaml.safe_dump(bad))
    checked = run(tool("kubernetes-validate"), "--strict", str(planted))
    assert checked.returncode != 0, checked.stdout + checked.stderr
    assert "imagePullPolicyy" in checked.stdout + checked.stderr


def strict(schema):
    """A CRD or OpenAPI schema as the API server applies it with strict field validation:
    an object that lists its properties rejects others; ``x-kubernetes-*`` markers dropped,
    ``x-kubernetes-preserve-unknown-fields`` kept open; OpenAPI's ``int-or-string`` allowed both."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in out and "additionalProperties" not in out \
            and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@functools.cache
def daskjob_schema() -> dict:
    if not DASK_CRD.exists():
        pytest.fail(f"{DASK_CRD} is missing: run `make setup-ops` (scripts/setup_ops.sh caches the "
                    "Dask operator's CRD from its PyPI wheel)")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRD is 470 kB of YAML
    crd = yaml.load(DASK_CRD.read_text(), Loader=loader)
    assert crd["spec"]["group"] == "kubernetes.dask.org" and crd["spec"]["names"]["kind"] == "DaskJob"
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = strict(version["schema"]["openAPIV3Schema"])
    # the API server checks metadata itself; the CRD only says "object"
    schema["properties"]["metadata"] = {"type": "object"}
    schema["properties"]["apiVersion"] = {"const": "kubernetes.dask.org/v1"}
    schema["properties"]["kind"] = {"const": "DaskJob"}
    return schema


@functools.cache
def sparkapplication_schema() -> dict:
    """The Kubeflow Spark operator's SparkApplication schema as its authors publish it on PyPI
    (kubeflow-spark-api, the models generated from the operator's OpenAPI spec)."""
    from kubeflow_spark_api.models import SparkV1beta2SparkApplication

    schema = strict(SparkV1beta2SparkApplication.model_json_schema(by_alias=True))
    schema["properties"]["metadata"] = {"type": "object"}
    schema["properties"]["apiVersion"] = {"const": "sparkoperator.k8s.io/v1beta2"}
    schema["properties"]["kind"] = {"const": "SparkApplication"}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
    return schema


def custom_resource(kind: str) -> dict:
    (doc,) = [d for _, d in manifests() if d["kind"] == kind]
    return doc


SCHEMAS = {"SparkApplication": sparkapplication_schema, "DaskJob": daskjob_schema}


@functools.cache
def validator(kind: str) -> jsonschema.protocols.Validator:
    """One validator per schema, built once (the DaskJob CRD's schema is 470 kB; meta-checking
    it would take half a minute and prove nothing about our manifests)."""
    schema = SCHEMAS[kind]()
    return jsonschema.validators.validator_for(schema)(schema)


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_custom_resources_match_their_operators_published_schema(kind):
    validator(kind).validate(custom_resource(kind))


@pytest.mark.parametrize("kind, plant", [
    ("SparkApplication", lambda d: d["spec"]["driver"].update(memoryy="4g")),
    ("SparkApplication", lambda d: d["spec"].pop("sparkVersion")),
    ("DaskJob", lambda d: d["spec"]["cluster"]["spec"]["worker"].update(replica=4)),
    ("DaskJob", lambda d: d["spec"]["job"]["spec"]["containers"][0].update(imagee="x")),
])
def test_a_planted_wrong_field_fails_the_operator_schema(kind, plant):
    doc = copy.deepcopy(custom_resource(kind))
    plant(doc)
    with pytest.raises(jsonschema.ValidationError):
        validator(kind).validate(doc)


def test_dask_crd_is_cached_with_its_license():
    daskjob_schema()
    assert "BSD" in (DASK_CRD.parent / "LICENSE").read_text()[:2000] or \
        "Redistribution" in (DASK_CRD.parent / "LICENSE").read_text()


def images(node) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "image" and isinstance(v, str)] + \
            [i for v in node.values() for i in images(v)]
    if isinstance(node, list):
        return [i for v in node for i in images(v)]
    if isinstance(node, str) and node.startswith("spark.kubernetes.container.image="):
        return [node.split("=", 1)[1]]
    return []


def test_every_manifest_and_the_dag_use_the_image_the_dockerfile_builds():
    found = [i for _, doc in manifests() for i in images(doc)]
    assert found and set(found) == {IMAGE}, set(found)
    assert f'"{IMAGE}"' in (DEPLOY / "airflow" / "lakescore_dag.py").read_text()


def test_configmap_conf_loads_with_lakescore_and_holds_no_secret(tmp_path):
    doc = custom_resource("ConfigMap")
    conf_file = tmp_path / "cluster.yaml"
    conf_file.write_text(doc["data"]["cluster.yaml"])
    conf = load_conf(conf_file)
    assert conf.metrics.pushgateway and conf.openlineage.transport == "http"
    text = json.dumps(doc).lower()
    for secret in ("secret_access_key", "access_key_id", "password", "token"):
        assert secret not in text
    secret_doc = custom_resource("Secret")
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(secret_doc["stringData"])


def test_a_conf_key_that_does_not_exist_in_the_configmap_is_caught(tmp_path):
    conf_file = tmp_path / "cluster.yaml"
    conf_file.write_text(custom_resource("ConfigMap")["data"]["cluster.yaml"]
                         + "metrics:\n  push_gateway: http://x:9091\n")
    with pytest.raises(ConfError, match="push_gateway"):
        load_conf(conf_file)


def job_commands(node) -> list[list[str]]:
    """Argument lists in the manifests that run a lakescore job (contain ``--conf``)."""
    if isinstance(node, dict):
        return [c for v in node.values() for c in job_commands(v)]
    if isinstance(node, list):
        if "--conf" in node and all(isinstance(x, str) for x in node):
            return [node]
        return [c for v in node for c in job_commands(v)]
    return []


def test_the_jobs_manifests_run_exist_with_the_arguments_they_pass():
    from jobs.score import main  # noqa: F401 - the module the manifests run

    commands = [c for _, doc in manifests() for c in job_commands(doc)]
    assert len(commands) >= 3
    for command in commands:
        at = command.index("--conf")
        if command[at + 1].startswith("spark."):
            at = len(command) - 1 - command[::-1].index("--conf")
        assert command[at + 1] == "/etc/lakescore/cluster.yaml", command
        scripts = [c for c in command if c.endswith(".py")] + \
            [f"jobs/{c.split('.', 1)[1]}.py" for c in command if c.startswith("jobs.")]
        for script in scripts:
            assert (REPO / "jobs" / Path(script).name).exists(), script
        assert "--engine" not in command or command[command.index("--engine") + 1] in ("spark", "dask")


def test_operate_doc_lists_every_metric_and_alert():
    doc = (REPO / "docs" / "operate.md").read_text()
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alerts = [rule["alert"] for group in rules["groups"] for rule in group["rules"]]
    missing = [m.name for m in METRICS if f"`{m.name}`" not in doc] + [a for a in alerts if f"`{a}`" not in doc]
    assert not missing, f"docs/operate.md does not describe {missing}"


def test_dask_workers_in_the_manifest_get_lakescores_allocator_settings():
    """The DaskJob's workers set what lakescore's local clusters set (``WORKER_MALLOC_ENV``), so
    the manifest cannot drift from it (the operator's schema above accepts the env entries)."""
    from engine.session import WORKER_MALLOC_ENV

    worker = custom_resource("DaskJob")["spec"]["cluster"]["spec"]["worker"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in worker.get("env", [])}
    assert {name: env.get(name) for name in WORKER_MALLOC_ENV} == {k: str(v) for k, v in WORKER_MALLOC_ENV.items()}
