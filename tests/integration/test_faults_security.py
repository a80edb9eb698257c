# -*- coding: utf-8 -*-
"""Fault and abuse suite (issue #12): the shipped ClusterRole and the API token.

- ``rbac/clusterrole.yml`` is enough and holds nothing unused. For every (apiGroup, resource, verb
  [, resourceName]) in it, a ServiceAccount bound to the role minus that one verb runs the module
  call that needs it: the call must fail naming the verb and the resource (HTTP 403). Bound to the
  whole role, every one of those calls succeeds. A verb in the file without a scenario here (say,
  one added later) fails the completeness test.
- The token never shows: every Kubernetes module at ``-vvv`` with token auth from the ``K8S_AUTH_*``
  variables (what AWX's credential sets), on success, bad input, 403 and an unreachable API server,
  and a rollout that fails on a 403 with the token in ``node_maintenance_k8s_auth``: the token and
  its JWT parts appear in no output, async job file, report, Event or node annotation.

Tokens are registered with the integration conftest, whose ``run_module`` / ``run_playbook`` then
fail any test whose Ansible output shows one. One private control plane for the whole module;
each scenario is one module call, all calls of a kind in one ansible-playbook run.
"""
import base64
import collections
import json
import os
import stat
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.integration.conftest import (
    _ansible_env,
    leaked_secrets,
    node_manifest,
    own_cluster,
    register_secret,
    run_tasks,
    wait_for,
    wait_node_ready,
)

pytestmark = [pytest.mark.integration, pytest.mark.faults]

CLUSTERROLE = os.path.join(REPO_ROOT, "rbac", "clusterrole.yml")
PLAYBOOK = os.path.join(REPO_ROOT, "playbooks", "rolling-maintenance.yml")
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
LOCK = "kubeops-node-maintenance"
STATE_ANNOTATION = "maintenance.kubeops.io/state"
K8S_MODULES = ("k8s_cluster_guard", "k8s_maintenance_lock", "k8s_node_cordon", "k8s_node_drain",
               "k8s_node_maintenance_state", "k8s_node_preflight", "k8s_node_remove", "k8s_node_taint",
               "k8s_node_wait", "k8s_workloads_healthy")


@pytest.fixture(scope="module")
def cluster():
    """A control plane of this module's own: it creates ClusterRoles, nodes and Leases in numbers."""
    with own_cluster("security") as started:
        yield started


# --- the ClusterRole, verb by verb ------------------------------------------------------------

Verb = collections.namedtuple("Verb", "group resource verb name")


def verb_id(verb):
    return "/".join([verb.group or "core", verb.resource, verb.verb] + ([verb.name] if verb.name else []))


def load_role():
    with open(CLUSTERROLE) as handle:
        (role,) = [doc for doc in yaml.safe_load_all(handle) if doc]
    return role


def role_verbs(role):
    """Every (apiGroup, resource, verb, resourceName or None) the role grants, in file order."""
    return [Verb(group, resource, verb, name)
            for rule in role["rules"] for group in rule["apiGroups"] for resource in rule["resources"]
            for verb in rule["verbs"] for name in rule.get("resourceNames") or [None]]


def rules_without(role, missing):
    """The role's rules, one per verb, except ``missing``: the role minus exactly that verb."""
    rules = []
    for verb in role_verbs(role):
        if verb == missing:
            continue
        rule = {"apiGroups": [verb.group], "resources": [verb.resource], "verbs": [verb.verb]}
        if verb.name:
            rule["resourceNames"] = [verb.name]
        rules.append(rule)
    assert len(rules) == len(role_verbs(role)) - 1, "%s is not in the role" % verb_id(missing)
    return rules


class Env:
    """Objects for the scenarios, made as the admin; ServiceAccounts and their tokens."""

    def __init__(self, cluster, workdir):
        from kubernetes import client

        self.cluster = cluster
        self.workdir = workdir
        self.suffix = uuid.uuid4().hex[:5]
        self.namespace = self.new_namespace("sec")
        with open(cluster.kubeconfig) as handle:
            ca_data = json.load(handle)["clusters"][0]["cluster"]["certificate-authority-data"]
        self.ca_file = os.path.join(workdir, "ca.crt")
        with open(self.ca_file, "w") as handle:
            handle.write(base64.b64decode(ca_data).decode())
        self.client = client
        self.nodes = []

    def new_namespace(self, prefix):
        from kubernetes import client

        name = "%s-%s" % (prefix, uuid.uuid4().hex[:8])
        self.cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        return name

    def node(self, tag, unschedulable=False, ready=False):
        name = "%s-%s" % (tag, uuid.uuid4().hex[:5])
        self.cluster.core.create_node(node_manifest(name, unschedulable=unschedulable,
                                                    labels={"kubeops.test/pool": "security"}))
        self.nodes.append(name)
        if ready:
            wait_node_ready(self.cluster, name)
        return name

    def pod_on(self, node, name=None):
        """A bare pod bound to ``node`` (drains here run with force: true)."""
        name = name or "pod-%s" % node
        self.cluster.core.create_namespaced_pod(self.namespace, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "bare"}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
                     "tolerations": [{"operator": "Exists"}],
                     "containers": [{"name": "app", "image": "registry.invalid/app:1"}]}})
        return name

    def service_account(self, name, rules):
        """A ServiceAccount bound to a ClusterRole with ``rules`` (or to nothing when None); its token."""
        sa_name = "%s-%s" % (name, self.suffix)
        self.cluster.core.create_namespaced_service_account(
            self.namespace, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa_name}})
        if rules is not None:
            self.cluster.rbac.create_cluster_role({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                                                   "metadata": {"name": sa_name}, "rules": rules})
            self.cluster.rbac.create_cluster_role_binding({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": sa_name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": sa_name},
                "subjects": [{"kind": "ServiceAccount", "name": sa_name, "namespace": self.namespace}]})
        token = self.cluster.core.create_namespaced_service_account_token(
            sa_name, self.namespace, {"spec": {"expirationSeconds": 3600}}).status.token
        register_secret(token, "the token of serviceaccount %s/%s" % (self.namespace, sa_name))
        return token

    def user(self, name):
        return "system:serviceaccount:%s:%s-%s" % (self.namespace, name, self.suffix)

    def allowed(self, name, verb):
        review = self.client.AuthorizationV1Api(self.cluster.api_client).create_subject_access_review({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": self.user(name), "groups": ["system:serviceaccounts", "system:authenticated"],
                     "resourceAttributes": {
                         "group": verb.group, "resource": verb.resource.split("/")[0],
                         "subresource": verb.resource.split("/")[1] if "/" in verb.resource else None,
                         "verb": verb.verb, "name": verb.name, "namespace": self.namespace}}})
        return bool(review.status.allowed)

    def auth_env(self, token, host=None):
        """What AWX's Kubernetes bearer-token credential puts in the environment."""
        return {"K8S_AUTH_HOST": host or self.cluster.server, "K8S_AUTH_API_KEY": token,
                "K8S_AUTH_SSL_CA_CERT": self.ca_file, "K8S_AUTH_VERIFY_SSL": "True"}


def base_env(cluster, extra=None):
    """The test session's Ansible environment without any cluster access of its own."""
    env = _ansible_env(cluster)
    for key in [k for k in env if k.startswith("K8S_AUTH_") or k == "KUBECONFIG"]:
        del env[key]
    env.update(extra or {})
    return env


def module_task(name, module, args, environment=None):
    task = {"name": name, "kubeops.node_maintenance." + module: args, "ignore_errors": True}
    if environment is not None:
        task["environment"] = environment
    return task


# The module call that needs each verb. A setup makes what the call needs (as the admin) and returns
# (module, arguments); it runs twice, for the role minus the verb and for the whole role.
def _cordon(env, tag):
    return "k8s_node_cordon", {"name": env.node(tag)}


def _preflight(env, tag):
    return "k8s_node_preflight", {"name": [env.node(tag)], "timeout": 60}


def _remove(env, tag):
    return "k8s_node_remove", {"name": env.node(tag, unschedulable=True)}


def _drain(**extra):
    def setup(env, tag):
        node = env.node(tag)
        env.pod_on(node)
        return "k8s_node_drain", dict({"name": node, "force": True, "timeout": 120}, **extra)
    return setup


def _event(env, tag):
    return "k8s_node_maintenance_state", {
        "name": env.node(tag), "state": "present", "rollout": "rbac", "phase": "drain", "status": "in_progress",
        "event": {"reason": "MaintenanceDrain", "msg": "kubeops rollout rbac: drain started", "type": "Normal"}}


def _healthy(kind):
    def setup(env, _tag):
        if kind == "PodDisruptionBudget":
            return "k8s_workloads_healthy", {"pdbs": [{"namespace": env.namespace, "name": "web"}], "timeout": 0}
        return "k8s_workloads_healthy", {"workloads": [{"kind": kind, "namespace": env.namespace, "name": "web"}],
                                         "timeout": 0}
    return setup


def _lock(kured_check=False, existing=False):
    def setup(env, tag):
        namespace = env.new_namespace("lock-" + tag[:20])
        if existing:  # a Lease nobody holds, as a released lock leaves it
            env.cluster.coordination.create_namespaced_lease(namespace, {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": LOCK},
                "spec": {"leaseTransitions": 1}})
        return "k8s_maintenance_lock", {"name": LOCK, "namespace": namespace, "holder": "rbac-" + tag,
                                        "kured_check": kured_check, "duration_seconds": 60, "timeout": 20}
    return setup


def _expect(**fields):
    """A check of the successful (whole role) result."""
    def check(result):
        return {key: result.get(key) for key in fields if result.get(key) != fields[key]}
    return check


def _drained(action):
    def check(result):
        actions = [pod["action"] for pod in result.get("pods", [])]
        return None if actions == [action] else {"pods": actions}
    return check


# (setup, check of the whole role's result) per verb id.
SCENARIOS = {
    "core/nodes/get": (_cordon, _expect(changed=True)),
    "core/nodes/list": (_preflight, _expect(ok=True)),
    "core/nodes/patch": (_cordon, _expect(changed=True)),
    "core/nodes/delete": (_remove, _expect(changed=True)),
    "core/pods/list": (_drain(), _drained("evicted")),
    "core/pods/delete": (_drain(disable_eviction=True), _drained("deleted")),
    "core/pods/eviction/create": (_drain(), _drained("evicted")),
    "core/persistentvolumes/list": (_preflight, _expect(ok=True)),
    "core/events/create": (_event, _expect(changed=True)),
    "storage.k8s.io/volumeattachments/list": (_drain(wait_for_volume_detach=True), _drained("evicted")),
    "policy/poddisruptionbudgets/list": (_healthy("PodDisruptionBudget"), _expect(healthy=True)),
    "apps/deployments/list": (_healthy("Deployment"), _expect(healthy=True)),
    "apps/replicasets/list": (_preflight, _expect(ok=True)),
    "apps/statefulsets/list": (_healthy("StatefulSet"), _expect(healthy=True)),
    "apps/daemonsets/get": (_lock(kured_check=True), _expect(acquired=True, outcome="created")),
    "apps/daemonsets/list": (_healthy("DaemonSet"), _expect(healthy=True)),
    "coordination.k8s.io/leases/create": (_lock(), _expect(acquired=True, outcome="created")),
    "coordination.k8s.io/leases/get/kubeops-node-maintenance": (_lock(existing=True), _expect(acquired=True)),
    "coordination.k8s.io/leases/update/kubeops-node-maintenance": (
        _lock(existing=True), _expect(acquired=True, outcome="acquired")),
}
ROLE_VERBS = role_verbs(load_role())


@pytest.fixture(scope="module")
def env(cluster, tmp_path_factory):
    return Env(cluster, str(tmp_path_factory.mktemp("security")))


@pytest.fixture(scope="module")
def verb_runs(env, cluster):
    """Each scenario run twice: as a ServiceAccount bound to the role minus its verb, and as one
    bound to the whole role. Two ansible-playbook runs side by side, one task per scenario."""
    role = load_role()
    verbs = [v for v in ROLE_VERBS if verb_id(v) in SCENARIOS]
    full_token = env.service_account("full", role["rules"])
    tokens = {verb_id(v): env.service_account("minus-%d" % i, rules_without(role, v)) for i, v in enumerate(verbs)}
    # The authorizer's caches have the new bindings once a review says so.
    for index, verb in enumerate(verbs):
        other = next(v for v in ROLE_VERBS if v != verb and not v.name and v.resource != "pods/eviction")
        wait_for("the role of %s to be in force" % verb_id(verb),
                 lambda: env.allowed("minus-%d" % index, other) and not env.allowed("minus-%d" % index, verb), 30)
    wait_for("the whole role to be in force", lambda: all(env.allowed("full", v) for v in verbs), 30)

    vars_file = os.path.join(env.workdir, "auth.json")
    with open(vars_file, "w") as handle:
        json.dump({"auth": {key: env.auth_env(token) for key, token in dict(tokens, full=full_token).items()}},
                  handle)
    os.chmod(vars_file, 0o600)
    minus_tasks, full_tasks = [], []
    for index, verb in enumerate(verbs):
        setup, _check = SCENARIOS[verb_id(verb)]
        module, args = setup(env, "m%d" % index)
        minus_tasks.append(module_task(verb_id(verb), module, args, "{{ auth[%s] }}" % json.dumps(verb_id(verb))))
        module, args = setup(env, "f%d" % index)
        full_tasks.append(module_task(verb_id(verb), module, args, "{{ auth.full }}"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        minus = pool.submit(run_tasks, env.workdir, "rbac-minus-one-verb", minus_tasks, base_env(cluster), vars_file=vars_file)
        full = pool.submit(run_tasks, env.workdir, "rbac-whole-role", full_tasks, base_env(cluster), vars_file=vars_file)
        return {"minus": minus.result()[1], "full": full.result()[1]}


def test_every_verb_of_the_clusterrole_has_a_scenario():
    ids = [verb_id(v) for v in ROLE_VERBS]
    assert len(ids) == len(set(ids)), "a verb is granted twice in rbac/clusterrole.yml"
    assert not sorted(set(ids) - set(SCENARIOS)), \
        "verbs of rbac/clusterrole.yml with no scenario that needs them: add one here, or drop the verb"
    assert not sorted(set(SCENARIOS) - set(ids)), "scenarios for verbs rbac/clusterrole.yml no longer grants"


@pytest.mark.parametrize("verb", ROLE_VERBS, ids=verb_id)
def test_each_verb_of_the_clusterrole_is_needed_and_enough(verb_runs, verb):
    key = verb_id(verb)
    assert key in SCENARIOS, "no scenario for %s" % key
    refused = verb_runs["minus"][key]
    assert refused.get("failed"), "%s succeeded without %s: the role grants more than it needs\n%s" % (
        refused.get("invocation", {}).get("module_args", {}).get("name"), key, json.dumps(refused)[:2000])
    msg = refused["msg"]
    assert "403" in msg and 'cannot %s resource "%s"' % (verb.verb, verb.resource) in msg, msg
    granted = verb_runs["full"][key]
    assert not granted.get("failed"), "with the whole role: %s" % granted.get("msg")
    wrong = SCENARIOS[key][1](granted)
    assert not wrong, "with the whole role, %s returned %s" % (key, wrong)


# --- the token never shows --------------------------------------------------------------------

PATHS = ("success", "bad_input", "forbidden", "unreachable")


def every_module(env, path, nodes, tag, results_file):
    """One task per Kubernetes module for ``path`` (success, bad_input, forbidden, unreachable);
    the last task writes every result (as Ansible keeps it, no_log values masked) to ``results_file``."""
    node, spare = nodes
    lock_ns = env.new_namespace("leak-" + path.replace("_", "-")[:10])
    quick = {"success": 120, "bad_input": "soon", "forbidden": 5, "unreachable": 1}[path]
    once = "soon" if path == "bad_input" else 0
    calls = [
        ("k8s_node_cordon", {"name": node, "timeout": quick}),
        ("k8s_node_taint", {"name": node, "taints": [{"key": "kubeops.test/leak", "effect": "NoSchedule"}],
                            "timeout": quick}),
        ("k8s_node_maintenance_state", {"name": node, "state": "present", "rollout": tag, "phase": "drain",
                                        "status": "in_progress", "msg": "leak test", "timeout": quick,
                                        "event": {"reason": "MaintenanceDrain", "msg": "kubeops rollout %s" % tag}}),
        ("k8s_node_preflight", {"name": [node], "timeout": quick}),
        ("k8s_node_drain", {"name": node, "force": True, "timeout": quick}),
        ("k8s_node_wait", {"name": node, "ready": True, "timeout": quick}),
        ("k8s_workloads_healthy", {"workloads": [{"kind": "Deployment", "namespace": env.namespace, "name": "web"}],
                                   "timeout": once}),
        ("k8s_cluster_guard", {"name": node, "control_plane": False, "etcd_quorum": False, "min_ready_nodes": 1,
                               "wait_timeout": once}),
        ("k8s_maintenance_lock", {"name": LOCK, "namespace": lock_ns, "holder": tag, "kured_check": True,
                                  "timeout": quick}),
        ("k8s_node_remove", {"name": spare, "timeout": quick}),
    ]
    assert sorted(module for module, _args in calls) == sorted(K8S_MODULES)
    tasks = []
    for module, args in calls:
        task = module_task(module, module, args)
        task["register"] = "r_" + module
        tasks.append(task)
    if path == "unreachable":
        # Each module retries a refused connection until its own floor (up to 30 s): all at once.
        for task in tasks:
            task.update({"async": 180, "poll": 0})
            task.pop("ignore_errors")
        tasks += [{"name": "wait for " + module, "ansible.builtin.async_status": {"jid": "{{ r_%s.ansible_job_id }}" % module},
                   "register": "r_" + module, "until": "r_%s.finished" % module, "retries": 180, "delay": 1,
                   "ignore_errors": True} for module in K8S_MODULES]
    tasks.append({"name": "write the results", "ansible.builtin.copy": {
        "dest": results_file, "mode": "0600",
        "content": "{{ %s | to_nice_json }}" % ("{%s}" % ", ".join("%r: r_%s" % (m, m) for m in K8S_MODULES))}})
    return tasks


def closed_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket is closed


def test_the_token_never_shows(cluster, env, tmp_path):
    role = load_role()
    full = env.service_account("leak-full", role["rules"])
    nobody = env.service_account("leak-nobody", None)
    eviction = next(v for v in ROLE_VERBS if v.resource == "pods/eviction")
    no_eviction = env.service_account("leak-rollout", rules_without(role, eviction))
    wait_for("the roles to be in force", lambda: env.allowed("leak-full", eviction)
             and env.allowed("leak-rollout", Verb("", "nodes", "patch", None)), 30)

    # Per module path a node with a pod to drain and a cordoned spare to remove.
    nodes = {}
    for path in PATHS:
        label = path.replace("_", "-")
        nodes[path] = (env.node("leak-" + label, ready=True), env.node("leak-spare-" + label, unschedulable=True))
        env.pod_on(nodes[path][0])
    # The rollout: two nodes of a pool with a Deployment on them; its token may do anything but evict.
    pool = {"kubeops.test/pool": "leak"}
    rollout_nodes = [env.node("leak-rollout", ready=True) for _index in range(2)]
    for name in rollout_nodes:
        cluster.core.patch_node(name, {"metadata": {"labels": pool}})
    cluster.apps.create_namespaced_deployment(env.namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "leaky"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "leaky"}},
                 "template": {"metadata": {"labels": {"app": "leaky"}}, "spec": {
                     "nodeSelector": pool, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "app", "image": "registry.invalid/leaky:1"}]}}}})
    wait_for("leaky's pods running", lambda: len(
        [p for p in cluster.core.list_namespaced_pod(env.namespace, label_selector="app=leaky").items
         if p.spec.node_name in rollout_nodes and p.status.phase == "Running"]) == 2, 120)

    work = str(tmp_path)
    async_dir = os.path.join(work, "async")
    inventory = os.path.join(work, "rollout.ini")
    with open(inventory, "w") as handle:
        handle.write("[k8s_nodes]\n" + "".join("%s ansible_host=127.0.0.1 ansible_port=1\n" % n for n in rollout_nodes))
    secret_vars = os.path.join(work, "secret-vars.json")
    with open(secret_vars, "w") as handle:  # as a vault or a survey hands it over: not on the command line
        json.dump({"node_maintenance_k8s_auth": {"host": cluster.server, "api_key": no_eviction,
                                                 "ca_cert": env.ca_file, "validate_certs": True}}, handle)
    os.chmod(secret_vars, 0o600)
    rollout_vars = {"node_maintenance_rollout_id": "leak", "node_maintenance_action": "none",
                    "node_maintenance_lock_namespace": env.namespace,
                    "node_maintenance_report_dir": os.path.join(work, "reports"),
                    "node_maintenance_drain_timeout": 30, "node_maintenance_preflight_fail_on": []}

    def module_path(path):
        host = "https://127.0.0.1:%d" % closed_port() if path == "unreachable" else None
        token = {"success": full, "bad_input": full, "forbidden": nobody, "unreachable": full}[path]
        results_file = os.path.join(work, "results-%s.json" % path)
        process_env = base_env(cluster, dict(env.auth_env(token, host), ANSIBLE_ASYNC_DIR=async_dir))
        res = run_tasks(work, "every-module-" + path,
                        every_module(env, path, nodes[path], "leak-" + path.replace("_", "-"), results_file),
                        process_env, args=["-vvv"], callback="ansible.builtin.default")[0]
        assert os.path.exists(results_file), "%s: %s\n%s" % (path, res.stdout[-3000:], res.stderr[-2000:])
        with open(results_file) as handle:
            return res, json.load(handle)

    def the_rollout():
        return subprocess.run([ANSIBLE_PLAYBOOK, "-vvv", "-i", inventory, PLAYBOOK, "-e", "@" + secret_vars,
                               "-e", json.dumps(rollout_vars)], capture_output=True, text=True,
                              env=base_env(cluster, {"ANSIBLE_ASYNC_DIR": async_dir}), timeout=900, check=False)

    with ThreadPoolExecutor(max_workers=len(PATHS) + 1) as workers:
        futures = {path: workers.submit(module_path, path) for path in PATHS}
        futures["rollout"] = workers.submit(the_rollout)
        runs = {name: future.result() for name, future in futures.items()}

    # Each path did what it is about: a run that never reached the modules would prove nothing.
    problems = []
    expected = {"success": None, "bad_input": "timeout", "forbidden": "forbidden (403)",
                "unreachable": "gave up at the timeout"}
    for path, words in expected.items():
        res, results = runs[path]
        if "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" not in res.stdout:
            problems.append("%s: no no_log value in the -vvv output (did the token reach the modules?)" % path)
        for module in K8S_MODULES:
            result = results[module]
            if words is None and result.get("failed"):
                problems.append("success: %s failed: %s" % (module, result.get("msg")))
            elif words is not None and not (result.get("failed") and words in str(result.get("msg"))):
                problems.append("%s: %s did not fail saying %r: %s" % (path, module, words, result.get("msg")))
    assert not problems, "\n".join(problems)

    rollout = runs["rollout"]
    assert rollout.returncode != 0, rollout.stdout[-4000:]
    assert "pods/eviction" in rollout.stdout, rollout.stdout[-4000:]
    records = {name: json.loads((cluster.core.read_node(name).metadata.annotations or {}).get(STATE_ANNOTATION, "{}"))
               for name in rollout_nodes}
    failed = [name for name, rec in records.items() if rec.get("status") == "failed"]
    assert len(failed) == 1, records
    assert records[failed[0]]["phase"] == "drain" and "pods/eviction" in records[failed[0]]["message"], records
    with open(os.path.join(work, "reports", "leak", "report.json")) as handle:
        assert "pods/eviction" in handle.read(), "the report says why the node failed"

    # Nowhere: outputs, the files the runs left (async job results, results, reports), Events, nodes.
    leaks = []
    for name, run in runs.items():
        res = run[0] if isinstance(run, tuple) else run
        leaks += ["%s %s: %s" % (name, where, found)
                  for where, text in (("stdout", res.stdout), ("stderr", res.stderr)) for found in leaked_secrets(text)]
    scanned = []
    for base, _dirs, files in os.walk(work):
        for file_name in files:
            path = os.path.join(base, file_name)
            if path == secret_vars:  # holds the token by design (0600), as AWX's env/extravars does
                continue
            with open(path, "rb") as handle:
                found = leaked_secrets(handle.read().decode("utf-8", "replace"))
            scanned.append(os.path.relpath(path, work))
            leaks += ["%s: %s" % (os.path.relpath(path, work), f) for f in found]
    assert stat.S_IMODE(os.stat(secret_vars).st_mode) == 0o600
    assert any(p.startswith("reports") for p in scanned) and any(p.startswith("async") for p in scanned), scanned
    events = cluster.core.list_event_for_all_namespaces().items
    assert any("pods/eviction" in (e.message or "") for e in events), "the failure's Event has the API's words"
    for event in events:
        leaks += ["event %s/%s: %s" % (event.metadata.namespace, event.metadata.name, f)
                  for f in leaked_secrets(json.dumps(cluster.api_client.sanitize_for_serialization(event)))]
    for node in cluster.core.list_node().items:
        leaks += ["node %s: %s" % (node.metadata.name, f) for f in leaked_secrets(json.dumps(node.metadata.annotations or {}))]
    assert not leaks, "the token appears in: %s" % "; ".join(leaks)
