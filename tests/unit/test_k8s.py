"""The Kubernetes manifests render, validate, and keep the invariants docs/deployment.md lists.

Every overlay is rendered with ``kubectl kustomize`` (the kustomize bundled with
the image's kubectl). Built-in kinds are validated by ``kubernetes-validate``
against the schemas of Kubernetes ``K8S_VERSION``, strictly (unknown fields
are errors); the Strimzi and Prometheus-operator resources by
``k8s/validate/validate.mjs`` against their CRDs' OpenAPI schemas (the
``@kubernetes-models`` packages pinned in ``k8s/validate/package-lock.json``).
Then the invariants: probes, limits, non-root, read-only root file systems;
the dataflow's process count; the spec, schema and rule copies.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from riffle.config.cluster import peer_addresses

ROOT = Path(__file__).parents[2]
K8S = ROOT / "k8s"
OVERLAYS = ("staging", "production", "production-pubsub")
K8S_VERSION = "1.33.0"
"""The Kubernetes version the manifests are validated against (GKE's stable channel)."""
CUSTOM = ("kafka.strimzi.io/", "monitoring.coreos.com/")

Doc = dict[str, Any]


@functools.cache
def rendered(overlay: str) -> list[Doc]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl (with its bundled kustomize) is needed to render k8s/")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    )
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    (found,) = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    return found


def pod_specs(docs: list[Doc]) -> list[tuple[str, Doc]]:
    return [
        (d["metadata"]["name"], d["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")
    ] + [
        (d["metadata"]["name"], d["spec"]["jobTemplate"]["spec"]["template"]["spec"])
        for d in of_kind(docs, "CronJob")
    ]


def env_of(container: Doc) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_built_in_kinds_are_valid_for_the_pinned_kubernetes(overlay: str) -> None:
    problems = []
    for doc in rendered(overlay):
        if doc["apiVersion"].startswith(CUSTOM):
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{doc['kind']} {doc['metadata']['name']}: {exc.message}")
    assert not problems, problems


@pytest.fixture(scope="session")
def crd_validator() -> Path:
    """``k8s/validate`` with its pinned packages installed (``npm ci`` on first use)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are needed to validate the Strimzi and Prometheus resources")
    folder = K8S / "validate"
    if not (folder / "node_modules").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=folder,
            check=True,
            capture_output=True,
        )
    return folder / "validate.mjs"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_are_valid_for_their_crds(overlay: str, crd_validator: Path) -> None:
    docs = [d for d in rendered(overlay) if d["apiVersion"].startswith(CUSTOM)]
    assert {d["kind"] for d in docs} >= {"PrometheusRule", "PodMonitor"}
    result = subprocess.run(
        ["node", str(crd_validator)], input=json.dumps(docs), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok ") == len(docs)


def test_the_validators_refuse_what_is_wrong(crd_validator: Path) -> None:
    """Both checks can fail: a misspelt field, a count that is not a number."""
    deployment = one(rendered("production"), "Deployment", "riffle-api")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    topic = json.loads(json.dumps(one(rendered("production"), "KafkaTopic", "riffle.events")))
    topic["spec"]["partitions"] = "twelve"
    result = subprocess.run(
        ["node", str(crd_validator)], input=json.dumps([topic]), capture_output=True, text=True
    )
    assert result.returncode == 1 and "partitions must be integer" in result.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_probes_limits_and_runs_as_non_root_read_only(overlay: str) -> None:
    """Probes for every long-running container; the rest for jobs and init containers too."""
    problems = []
    jobs = {d["metadata"]["name"] for d in of_kind(rendered(overlay), "CronJob")}
    for name, pod in pod_specs(rendered(overlay)):
        context = pod.get("securityContext", {})
        if context.get("runAsNonRoot") is not True or context.get("runAsUser", 0) == 0:
            problems.append(f"{name}: pod not non-root")
        for container in pod.get("initContainers", []) + pod["containers"]:
            where = f"{name}/{container['name']}"
            resources = container.get("resources", {})
            problems += [
                f"{where}: {part} must set cpu and memory"
                for part in ("requests", "limits")
                if set(resources.get(part, {})) != {"cpu", "memory"}
            ]
            own = container.get("securityContext", {})
            if own.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: root file system not read-only")
            if own.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: privilege escalation allowed")
            if own.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{where}: capabilities not dropped")
            if container in pod.get("initContainers", []) or name in jobs:
                continue
            problems += [
                f"{where}: no {probe}"
                for probe in ("livenessProbe", "readinessProbe")
                if probe not in container
            ]
    assert not problems, problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_dataflow_cluster_is_as_large_as_its_statefulset(overlay: str) -> None:
    docs = rendered(overlay)
    flow = one(docs, "StatefulSet", "riffle-flow")
    pod = flow["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    (main,) = pod["containers"]
    env = env_of(main)
    replicas = flow["spec"]["replicas"]
    size = int(env["RIFFLE_CLUSTER_SIZE"])
    addresses = peer_addresses(env["RIFFLE_CLUSTER_ADDRESSES"], size)
    assert replicas == size == len(addresses)
    # Process n's address is pod n's name under the headless Service, on the cluster port.
    service = one(docs, "Service", flow["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"]
    for n, address in enumerate(addresses):
        assert address.startswith(f"riffle-flow-{n}.{service['metadata']['name']}.")
        assert address.endswith(":2101")
    assert env["RIFFLE_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["RIFFLE_METRICS_PORT_PER_PROCESS"] == "false"
    # One recovery partition per process at the store's creation; each on its own volume.
    assert int(env_of(init)["RECOVERY_PARTITIONS"]) == replicas
    assert "--pod" in init["args"] and "--exist-ok" in init["args"]
    recovery = env["RIFFLE_RECOVERY_DIR"]
    assert [m["mountPath"] for m in main["volumeMounts"] if m["name"] == "recovery"] == [recovery]
    assert [c["metadata"]["name"] for c in flow["spec"]["volumeClaimTemplates"]] == ["recovery"]
    assert float(env["RIFFLE_RECOVERY_BACKUP_SECONDS"]) > 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_maps_hold_the_spec_and_schemas_of_the_repository(overlay: str) -> None:
    docs = rendered(overlay)
    maps = {d["metadata"]["name"].rsplit("-", 1)[0]: d for d in of_kind(docs, "ConfigMap")}
    spec = (ROOT / "config" / "demo.yaml").read_text(encoding="utf-8")
    assert maps["riffle-spec"]["data"] == {"spec.yaml": spec}
    schemas = {
        f"{path.parent.name}.{path.name}": path.read_text(encoding="utf-8")
        for path in (ROOT / "config" / "schemas").glob("*/*.json")
    }
    assert maps["riffle-schemas"]["data"] == schemas
    mounted = {f"{path.parent.name}/{path.name}" for path in (ROOT / "config/schemas").glob("*/*")}
    for name, pod in pod_specs(docs):
        for volume in pod.get("volumes", []):
            if (
                volume.get("configMap", {}).get("name")
                == maps["riffle-schemas"]["metadata"]["name"]
            ):
                items = {i["key"]: i["path"] for i in volume["configMap"]["items"]}
                assert set(items) == set(schemas) and set(items.values()) == mounted, name
    settings = maps["riffle-settings"]["data"]
    assert settings["RIFFLE_SPEC"] == "/etc/riffle/spec/spec.yaml"
    assert settings["RIFFLE_SCHEMAS_DIR"] == "/etc/riffle/schemas"
    assert settings["RIFFLE_ENVIRONMENT"] == "production"
    assert settings["RIFFLE_WAREHOUSE"].startswith("bigquery://")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_resolve_and_images_are_pinned(overlay: str) -> None:
    docs = rendered(overlay)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for name, pod in pod_specs(docs):
        account = pod.get("serviceAccountName")
        assert account is None or ("ServiceAccount", account) in names, name
        for container in pod.get("initContainers", []) + pod["containers"]:
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image
            for source in container.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in names
            for value in env_of(container).values():
                if isinstance(value, dict) and "secretKeyRef" in value:
                    # Secrets are made outside the manifests (docs/deployment.md#secrets).
                    assert value["secretKeyRef"]["name"] == "riffle-secrets"
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names
    for account in of_kind(docs, "ServiceAccount"):
        identity = account["metadata"].get("annotations", {}).get("iam.gke.io/gcp-service-account")
        project = overlay.split("-")[0].replace("production", "prod")
        assert identity is None or identity.endswith(f"@riffle-{project}.iam.gserviceaccount.com")


def test_the_prometheus_rule_carries_the_rule_file() -> None:
    rules = yaml.safe_load((K8S / "monitoring" / "riffle-rules.yaml").read_text(encoding="utf-8"))
    for overlay in OVERLAYS:
        rule = one(rendered(overlay), "PrometheusRule", "riffle")
        assert rule["spec"] == rules


def test_production_runs_kafka_redis_with_persistence_and_bigquery() -> None:
    docs = rendered("production")
    topics = {d["metadata"]["name"]: d["spec"] for d in of_kind(docs, "KafkaTopic")}
    assert set(topics) == {"riffle.events", "riffle.deadletter", "riffle.alerts"}
    flow = one(docs, "StatefulSet", "riffle-flow")
    assert topics["riffle.events"]["partitions"] % flow["spec"]["replicas"] == 0
    redis = one(docs, "StatefulSet", "riffle-redis")["spec"]["template"]["spec"]["containers"][0]
    assert redis["args"][:2] == ["--appendonly", "yes"]
    pubsub = {d["metadata"]["name"]: d for d in of_kind(rendered("production-pubsub"), "ConfigMap")}
    (settings,) = [d["data"] for name, d in pubsub.items() if name.startswith("riffle-settings")]
    assert settings["RIFFLE_SOURCE"] == settings["RIFFLE_INGEST_BROKER"] == "pubsub"
    # Google Cloud alone: no Kafka at all; the notifier reads Pub/Sub under its own identity.
    assert not [d for d in rendered("production-pubsub") if "strimzi" in d["apiVersion"]]
    notifier = one(rendered("production-pubsub"), "ServiceAccount", "riffle-notifier")
    assert (
        "riffle-notifier@" in notifier["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
    )


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not installed (apt-get install prometheus; .ci/run does)")
    return found


def test_rules_pass_promtool_check_and_their_unit_tests() -> None:
    tool = promtool()
    folder = K8S / "monitoring"
    check = subprocess.run(
        [tool, "check", "rules", "riffle-rules.yaml"], cwd=folder, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    tests = subprocess.run(
        [tool, "test", "rules", "riffle-rules.test.yaml"],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    assert tests.returncode == 0 and "SUCCESS" in tests.stdout, tests.stdout + tests.stderr
