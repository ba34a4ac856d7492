"""scale-deployment.yml and rollout-restart.yml.

Always: against an API server that is not there (a closed loopback port), where both must fail
cleanly on their first read, in check mode too, having changed nothing.

When KUBECONFIG names a reachable cluster (tests/ansible/run.sh starts a private local control
plane with tests/with-cluster.sh when its binaries are built: real kube-apiserver, etcd,
kube-controller-manager, kube-scheduler and kwok, whose fake node makes pods Ready), the
playbooks also run for real against it.
"""

from __future__ import annotations

import os
import socket
import time
import uuid

import pytest

KUBECONFIG = os.environ.get("KUBECONFIG", "")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dead_api(tmp_path):
    kc = tmp_path / "dead.kubeconfig"
    kc.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: dead\n"
        f"clusters:\n- name: dead\n  cluster:\n    server: https://127.0.0.1:{closed_port()}\n"
        "    insecure-skip-tls-verify: true\n"
        "users:\n- name: dead\n  user:\n    token: not-a-real-token\n"
        "contexts:\n- name: dead\n  context:\n    cluster: dead\n    user: dead\n"
    )
    return {"K8S_AUTH_KUBECONFIG": str(kc)}


@pytest.mark.parametrize("check", [False, True], ids=["real", "check-mode"])
@pytest.mark.parametrize(
    "playbook,params",
    [
        ("rollout-restart.yml", {"k8s_namespace": "shop", "deployment": "checkout"}),
        ("scale-deployment.yml", {"k8s_namespace": "shop", "deployment": "checkout", "replicas": 3}),
    ],
)
def test_an_unreachable_api_server_fails_cleanly_on_the_first_read(contract, dead_api, playbook, params, check):
    started = time.monotonic()
    run = contract.run(playbook, params, check=check, env=dead_api)
    assert run.rc == 2 and run.status == "failed", run.explain()
    assert run.result["failedTask"] == "Read the Deployment"
    assert "refused" in run.result["message"].lower() or "connect" in run.result["message"].lower()
    assert run.result["stats"]["changed"] == 0
    assert time.monotonic() - started < 120


# ---- against a real control plane


def api():
    from kubernetes import client, config

    config.load_kube_config(KUBECONFIG)
    return client


@pytest.fixture
def kube():
    if not KUBECONFIG:
        pytest.skip("no KUBECONFIG: run through tests/ansible/run.sh with the local control plane built "
                    "(tests/cluster/build.sh) to exercise the Kubernetes playbooks for real")
    client = api()
    try:
        client.VersionApi().get_code(_request_timeout=5)
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"KUBECONFIG {KUBECONFIG} is not reachable: {e}")
    ns = f"salve-t-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api()
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    yield client, ns
    core.delete_namespace(ns)


def make_deployment(client, ns, name="checkout", replicas=2, paused=False):
    apps = client.AppsV1Api()
    labels = {"app": name}
    body = client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            paused=paused,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name=name, image="registry.example/app:1")]),
            ),
        ),
    )
    apps.create_namespaced_deployment(ns, body)
    if not paused:
        wait_available(client, ns, name, replicas)


def wait_available(client, ns, name, replicas, timeout=60):
    apps = client.AppsV1Api()
    deadline = time.time() + timeout
    while time.time() < deadline:
        d = apps.read_namespaced_deployment(name, ns)
        if (d.status.available_replicas or 0) == replicas and (d.status.updated_replicas or 0) == replicas:
            return d
        time.sleep(0.5)
    raise AssertionError(f"{ns}/{name} never got {replicas} available replicas")


def pod_names(client, ns):
    return sorted(p.metadata.name for p in client.CoreV1Api().list_namespaced_pod(ns).items
                  if p.metadata.deletion_timestamp is None)


def k8s_env():
    return {"K8S_AUTH_KUBECONFIG": KUBECONFIG}


def test_rollout_restart_replaces_every_pod_and_waits_for_the_rollout(contract, kube):
    client, ns = kube
    make_deployment(client, ns)
    before = pod_names(client, ns)
    dry = contract.run("rollout-restart.yml", {"k8s_namespace": ns, "deployment": "checkout"}, check=True, env=k8s_env())
    assert dry.rc == 0, dry.explain()
    tmpl = client.AppsV1Api().read_namespaced_deployment("checkout", ns).spec.template.metadata.annotations or {}
    assert "kubectl.kubernetes.io/restartedAt" not in tmpl, "check mode must not patch"

    run = contract.run("rollout-restart.yml", {"k8s_namespace": ns, "deployment": "checkout", "wait_timeout": 120},
                       env=k8s_env())
    assert run.rc == 0 and run.status == "succeeded", run.explain()
    d = client.AppsV1Api().read_namespaced_deployment("checkout", ns)
    assert "kubectl.kubernetes.io/restartedAt" in d.spec.template.metadata.annotations
    assert d.status.updated_replicas == 2 and d.status.available_replicas == 2
    time.sleep(2)
    assert not set(before) & set(pod_names(client, ns)), "old pods must be gone"


def test_rollout_restart_refuses_a_paused_or_missing_deployment(contract, kube):
    client, ns = kube
    make_deployment(client, ns, paused=True)
    paused = contract.run("rollout-restart.yml", {"k8s_namespace": ns, "deployment": "checkout"}, env=k8s_env())
    assert paused.rc == 4 and paused.status == "refused", paused.explain()
    missing = contract.run("rollout-restart.yml", {"k8s_namespace": ns, "deployment": "nope"}, env=k8s_env())
    assert missing.rc == 4 and missing.status == "refused", missing.explain()


def test_scale_sets_replicas_and_waits_until_they_are_ready(contract, kube):
    client, ns = kube
    make_deployment(client, ns, replicas=2)
    dry = contract.run("scale-deployment.yml", {"k8s_namespace": ns, "deployment": "checkout", "replicas": 4},
                       check=True, env=k8s_env())
    assert dry.rc == 0, dry.explain()
    assert client.AppsV1Api().read_namespaced_deployment("checkout", ns).spec.replicas == 2
    run = contract.run("scale-deployment.yml", {"k8s_namespace": ns, "deployment": "checkout", "replicas": 4,
                                                "wait_timeout": 120}, env=k8s_env())
    assert run.rc == 0 and run.status == "succeeded", run.explain()
    d = client.AppsV1Api().read_namespaced_deployment("checkout", ns)
    assert d.spec.replicas == 4 and d.status.ready_replicas == 4
    again = contract.run("scale-deployment.yml", {"k8s_namespace": ns, "deployment": "checkout", "replicas": 4},
                         env=k8s_env())
    assert again.rc == 0 and again.result["stats"]["changed"] == 0, again.explain()


def make_hpa(client, ns, min_replicas=2, max_replicas=3):
    client.AutoscalingV2Api().create_namespaced_horizontal_pod_autoscaler(ns, client.V2HorizontalPodAutoscaler(
        metadata=client.V1ObjectMeta(name="checkout"),
        spec=client.V2HorizontalPodAutoscalerSpec(
            min_replicas=min_replicas, max_replicas=max_replicas,
            scale_target_ref=client.V2CrossVersionObjectReference(api_version="apps/v1", kind="Deployment",
                                                                  name="checkout"),
            metrics=[client.V2MetricSpec(type="Resource", resource=client.V2ResourceMetricSource(
                name="cpu", target=client.V2MetricTarget(type="Utilization", average_utilization=80)))],
        ),
    ))


def test_scale_raises_the_hpas_max_replicas_when_an_hpa_manages_the_deployment(contract, kube):
    client, ns = kube
    make_deployment(client, ns, replicas=2)
    make_hpa(client, ns)
    run = contract.run("scale-deployment.yml", {"k8s_namespace": ns, "deployment": "checkout", "replicas": 6,
                                                "wait_timeout": 120}, env=k8s_env())
    assert run.rc == 0 and run.status == "succeeded", run.explain()
    hpa = client.AutoscalingV2Api().read_namespaced_horizontal_pod_autoscaler("checkout", ns)
    assert hpa.spec.max_replicas == 6
    assert "HPA checkout maxReplicas" in run.output
    low = contract.run("scale-deployment.yml", {"k8s_namespace": ns, "deployment": "checkout", "replicas": 1},
                       env=k8s_env())
    assert low.rc == 4 and low.status == "refused", low.explain()
    assert client.AutoscalingV2Api().read_namespaced_horizontal_pod_autoscaler("checkout", ns).spec.max_replicas == 6
