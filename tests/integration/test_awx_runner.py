"""The rolling playbook as AWX runs it: through ansible-runner, with only the K8S_AUTH_* variables of
AWX's Kubernetes credential (host, bearer token, CA file, verify), and a ServiceAccount token bound
to nothing but the collection's ClusterRole (rbac/clusterrole.yml), so a verb missing from that role
fails the rollout. No kubeconfig anywhere: HOME is an empty directory and KUBECONFIG is unset.

The whole output of the run at -vvv (stdout, job events, artifacts) and the rollout report are
searched for the token afterwards.
"""
import base64
import json
import os
import shutil
import stat
import subprocess
import sys
import uuid

import pytest
import yaml

from tests.conftest import COLLECTIONS_ROOT, REPO_ROOT
from tests.integration.test_rolling_maintenance import deployment, wait_ready

pytestmark = pytest.mark.integration

PLAYBOOK = os.path.join(REPO_ROOT, "playbooks", "rolling-maintenance.yml")
CLUSTERROLE = os.path.join(REPO_ROOT, "rbac", "clusterrole.yml")
BINDING_EXAMPLE = os.path.join(REPO_ROOT, "rbac", "binding-example.yml")
STATE_ANNOTATION = "maintenance.kubeops.io/state"


def _load_all(path):
    with open(path) as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def _write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)


@pytest.fixture
def service_account_token(cluster, namespace):
    """A token of a new ServiceAccount bound only to the shipped ClusterRole (through the shipped
    binding example, its subject moved to the test namespace). Cluster-scoped names get a suffix so
    sessions sharing a cluster do not collide; the rules are used exactly as shipped."""
    suffix = uuid.uuid4().hex[:6]
    (role,) = _load_all(CLUSTERROLE)
    example = _load_all(BINDING_EXAMPLE)[0]["items"]
    (binding,) = [doc for doc in example if doc["kind"] == "ClusterRoleBinding"]
    (service_account,) = [doc for doc in example if doc["kind"] == "ServiceAccount"]
    role["metadata"]["name"] = "%s-%s" % (role["metadata"]["name"], suffix)
    binding["metadata"]["name"] = "%s-%s" % (binding["metadata"]["name"], suffix)
    binding["roleRef"]["name"] = role["metadata"]["name"]
    (subject,) = binding["subjects"]
    subject["namespace"] = namespace
    service_account["metadata"]["namespace"] = namespace

    cluster.core.create_namespaced_service_account(namespace, service_account)
    cluster.rbac.create_cluster_role(role)
    cluster.rbac.create_cluster_role_binding(binding)
    token = cluster.core.create_namespaced_service_account_token(
        subject["name"], namespace, {"spec": {"expirationSeconds": 3600}}).status.token
    try:
        yield {"token": token, "user": "system:serviceaccount:%s:%s" % (namespace, subject["name"]),
               "role": role}
    finally:
        cluster.rbac.delete_cluster_role_binding(binding["metadata"]["name"])
        cluster.rbac.delete_cluster_role(role["metadata"]["name"])


def _allowed(cluster, user, verb, resource, group="", namespace=None, name=None, subresource=None):
    from kubernetes import client

    attributes = {"verb": verb, "resource": resource, "group": group, "namespace": namespace, "name": name,
                  "subresource": subresource}
    review = client.AuthorizationV1Api(cluster.api_client).create_subject_access_review({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": ["system:serviceaccounts", "system:authenticated"],
                 "resourceAttributes": {k: v for k, v in attributes.items() if v is not None}}})
    return bool(review.status.allowed)


def _private_data_dir(root, cluster, token, nodes, rollout_id):
    """The layout AWX hands to ansible-runner: project/, inventory/, env/extravars, env/envvars."""
    project = os.path.join(root, "project")
    os.makedirs(project)
    # the job template's playbook and the file it imports, side by side as in the repository
    for playbook in (PLAYBOOK, os.path.join(os.path.dirname(PLAYBOOK), "rolling_maintenance.yml")):
        shutil.copy(playbook, os.path.join(project, os.path.basename(playbook)))
    # No real host behind a kwok node: action none never connects; port 1 makes any accidental
    # connection fail instead of reaching this machine.
    _write(os.path.join(root, "inventory", "hosts"), "[k8s_nodes]\n" + "".join(
        "%s ansible_host=127.0.0.1 ansible_port=1\n" % name for name in nodes))
    _write(os.path.join(root, "env", "extravars"), json.dumps({
        "node_maintenance_rollout_id": rollout_id,
        "node_maintenance_action": "none",
        "node_maintenance_lock_wait_timeout": 300,
        "node_maintenance_drain_timeout": 180,
        "node_maintenance_health_timeout": 180,
        "node_maintenance_ready_timeout": 120,
    }))
    # AWX writes the credential's CA data to a file in the private data dir and points
    # K8S_AUTH_SSL_CA_CERT at it.
    with open(cluster.kubeconfig) as handle:
        ca_data = json.load(handle)["clusters"][0]["cluster"]["certificate-authority-data"]
    ca_path = os.path.join(root, "env", "k8s_ca.crt")
    _write(ca_path, base64.b64decode(ca_data).decode(), mode=0o600)
    _write(os.path.join(root, "env", "envvars"), json.dumps({
        "K8S_AUTH_HOST": cluster.server,
        "K8S_AUTH_API_KEY": token,
        "K8S_AUTH_SSL_CA_CERT": ca_path,
        "K8S_AUTH_VERIFY_SSL": "True",
    }), mode=0o600)
    _write(os.path.join(root, "env", "cmdline"), "-vvv")
    return project


def _runner_env(home):
    """The environment of the execution environment: the collection and its Python installed, no
    kubeconfig, nothing of this test session's (KUBECONFIG, K8S_AUTH_KUBECONFIG, HOME)."""
    return {
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": home,
        "LANG": "C.UTF-8",
        "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS_ROOT,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
    }


def _failures(artifacts):
    """The failed tasks of the run, from ansible-runner's job events: what a failed run shows first."""
    lines = []
    events_dir = os.path.join(artifacts, "job_events")
    for name in sorted(os.listdir(events_dir)) if os.path.isdir(events_dir) else ():
        with open(os.path.join(events_dir, name)) as handle:
            event = json.load(handle)
        if event.get("event") == "runner_on_failed" and not event["event_data"].get("ignore_errors"):
            data = event["event_data"]
            lines.append("%s: %s" % (data.get("task"), (data.get("res") or {}).get("msg")))
    return "\n".join(lines)


def _files_under(root):
    for base, _dirs, files in os.walk(root):
        for name in files:
            yield os.path.join(base, name)


def test_rolling_playbook_through_ansible_runner_with_a_least_privilege_token(
        cluster, namespace, make_node, service_account_token, tmp_path):
    token = service_account_token["token"]
    user = service_account_token["user"]
    pool = namespace
    nodes = [make_node(labels={"kubeops.test/pool": pool}) for _index in range(3)]
    cluster.apps.create_namespaced_deployment(namespace, deployment("web", 3, pool))
    cluster.policy.create_namespaced_pod_disruption_budget(namespace, {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}})
    wait_ready(cluster, namespace, "web", 3, timeout=180)

    # The shipped files are what kubectl applies (the example's namespace does not exist here).
    applied = cluster.kubectl("apply", "--dry-run=client", "-o", "name", "-f", CLUSTERROLE, "-f", BINDING_EXAMPLE)
    assert sorted(applied.stdout.split()) == sorted([
        "clusterrole.rbac.authorization.k8s.io/kubeops-node-maintenance",
        "clusterrolebinding.rbac.authorization.k8s.io/kubeops-node-maintenance",
        "secret/kubeops-node-maintenance-token", "serviceaccount/kubeops-node-maintenance"])

    # The role grants what the modules use and not more: a few things it must not allow.
    assert _allowed(cluster, user, "create", "pods", subresource="eviction", namespace=namespace)
    assert _allowed(cluster, user, "update", "leases", "coordination.k8s.io", "kube-system", "kubeops-node-maintenance")
    for verb, resource, group, ns, name in [
            ("get", "secrets", "", namespace, None),
            ("create", "pods", "", namespace, None),
            ("update", "nodes", "", None, None),
            ("delete", "leases", "coordination.k8s.io", "kube-system", "kubeops-node-maintenance"),
            ("update", "leases", "coordination.k8s.io", "kube-node-lease", nodes[0]),
            ("patch", "deployments", "apps", namespace, "web")]:
        assert not _allowed(cluster, user, verb, resource, group, ns, name), (verb, resource, ns, name)

    root = str(tmp_path / "private_data_dir")
    home = str(tmp_path / "home")
    os.makedirs(home)
    rollout_id = "awx-" + uuid.uuid4().hex[:6]
    project = _private_data_dir(root, cluster, token, nodes[:2], rollout_id)
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-runner"), "run", root,
           "-p", "rolling-maintenance.yml", "--ident", "job"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_runner_env(home), cwd=str(tmp_path),
                         timeout=1800, check=False)
    artifacts = os.path.join(root, "artifacts", "job")
    tail = "%s\n--- failed tasks ---\n%s" % (res.stdout[-3000:] + res.stderr[-2000:], _failures(artifacts))
    assert res.returncode == 0, tail
    with open(os.path.join(artifacts, "status")) as handle:
        assert handle.read().strip() == "successful", tail
    assert "<localhost> ESTABLISH LOCAL CONNECTION" in res.stdout, "the run was verbose (-vvv)"

    # The rollout did its work as the ServiceAccount: nodes back in service, recorded, lock released.
    for name in nodes[:2]:
        node = cluster.core.read_node(name)
        assert not node.spec.unschedulable
        assert json.loads(node.metadata.annotations[STATE_ANNOTATION])["status"] == "done"
    lease = cluster.coordination.read_namespaced_lease("kubeops-node-maintenance", "kube-system")
    assert lease.spec.holder_identity is None, "the lock is released after the last node"
    report_dir = os.path.join(project, "rollout-reports", rollout_id)
    with open(os.path.join(report_dir, "report.json")) as handle:
        report = json.load(handle)
    assert [n["status"] for n in report["nodes"]] == ["done", "done"]
    assert sum(n["pods_evicted"] for n in report["nodes"]) >= 1, "the drain moved pods (evictions were allowed)"
    assert not os.path.exists(os.path.join(home, ".kube")), "nothing read or wrote a kubeconfig"

    # The token appears nowhere in what the run printed or left behind, except the two files that
    # hold the job's environment by design: the env/envvars we handed in, and ansible-runner's own
    # record of the command and its environment (artifacts/<ident>/command), both 0600; AWX deletes
    # the private data dir after the job.
    secrets = [token] + [part for part in token.split(".")[1:] if len(part) >= 16]
    by_design = {os.path.join(root, "env", "envvars"), os.path.join(artifacts, "command")}
    for path in by_design:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    texts = {"ansible-runner stdout": res.stdout, "ansible-runner stderr": res.stderr}
    scanned = []
    for path in _files_under(root):
        if path in by_design:
            continue
        with open(path, "rb") as handle:
            texts[os.path.relpath(path, root)] = handle.read().decode("utf-8", "replace")
        scanned.append(os.path.relpath(path, root))
    assert any(p.startswith(os.path.join("artifacts", "job", "job_events")) for p in scanned)
    assert any(p.startswith(os.path.join("project", "rollout-reports")) for p in scanned)
    leaks = sorted(where for where, text in texts.items() if any(secret in text for secret in secrets))
    assert not leaks, "the service account token appears in: %s" % ", ".join(leaks)
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in res.stdout, "the token reached the modules (and was masked)"
