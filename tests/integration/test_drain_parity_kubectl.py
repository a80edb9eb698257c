# -*- coding: utf-8 -*-
"""k8s_node_drain decides as ``kubectl drain`` does, proven against kubectl itself.

One kwok node carries a zoo of pods, one of each kind ``kubectl drain`` tells apart
(k8s.io/kubectl/pkg/drain/filters.go). For each of the 8 combinations of ``--ignore-daemonsets``,
``--delete-emptydir-data`` and ``--force``, the suite's own kubectl runs ``kubectl drain
--dry-run=server`` on the node and k8s_node_drain runs in check mode with the same options; the
test compares their decisions: refused or not, which pods block and by which rule, which pods are
evicted (or deleted) and which are left alone.

Where the module decides otherwise, the difference is one of ``DIFFERENCES`` (each documented in
the module's notes) and is asserted as such: the test fails if kubectl and the module agree where
a difference is expected, as it fails if they disagree anywhere else. The zoo's own table
(``ZOO``) says what kubectl is expected to decide, so a zoo that did not come out as built (a pod
completed or deleted by someone) fails the test instead of making both sides agree on less.

Holding the zoo still: kwok completes every running pod that a Job owns at once, so the Job's pod
is a completed one (as after a Job ran); the completed and failed bare pods get their phase from
the test once kwok has started them (kwok only moves Pending pods to Running). The garbage
collector would delete the pods whose owner does not exist, and a ReplicaSet scaled to 0 the pod
it owns: a ValidatingAdmissionPolicy lets no controller of kube-controller-manager but the
namespace controller delete the zoo's pods, so each pod stays exactly as built (its UID and
resourceVersion are checked after every kubectl run).
"""

import itertools
import json
import re
import time
import uuid

import pytest

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _pods
from tests.integration.conftest import (
    _ansible_env,
    create_namespace,
    node_manifest,
    run_tasks,
    wait_for,
    wait_node_ready,
)

pytestmark = pytest.mark.integration

HOLD_FINALIZER = "kubeops.test/hold"
# The pods the test deletes (each held by HOLD_FINALIZER), and the labels of those a ReplicaSet
# scaled to 0 owns.
LEAVING = ("leaving-owned", "leaving-scratch", "leaving-bare")
HOLDER = {"kubeops.test/holder": "yes"}
ZOO_LABEL = "kubeops.test/zoo"
CONTROLLER_MANAGER_USERS = "system:serviceaccount:kube-system:"
NAMESPACE_CONTROLLER = CONTROLLER_MANAGER_USERS + "namespace-controller"
GARBAGE_COLLECTOR = CONTROLLER_MANAGER_USERS + "generic-garbage-collector"

# kubectl's refusal texts (filters.go: daemonSetFatal, localStorageFatal, unmanagedFatal, and the
# DaemonSet lookup's NotFound error for an orphan) and the module's blocker for the same rule.
KUBECTL_RULES = (
    (re.compile(r"DaemonSet-managed Pods \(use --ignore-daemonsets to ignore\)$"), _pods.BLOCK_DAEMONSET),
    (re.compile(r'daemonsets\.apps "[^"]+" not found$'), _pods.BLOCK_ORPHANED_DAEMONSET),
    (re.compile(r"Pods with local storage \(use --delete-emptydir-data to override\)$"), _pods.BLOCK_EMPTYDIR),
    (re.compile(r"Pods that declare no controller \(use --force to override\)$"), _pods.BLOCK_UNMANAGED),
)

# The deliberate differences (k8s_node_drain's notes say each).
TERMINATING_WAITED = "terminating pods are waited for"
"""A pod with a deletionTimestamp is already going: the module waits for it (plan ``wait``) and
never refuses the drain for it; kubectl evicts it again, or refuses it without ``--force``
(no controller) or ``--delete-emptydir-data`` (emptyDir), which saves nothing."""
EVERY_RULE_NAMED = "every rule a pod breaks is named"
"""kubectl names the first rule a pod breaks (in its filter order); the module names all of them,
first that one, so one run says every option the pod needs."""
FINISHED_DELETED = "finished pods are deleted"
"""kubectl sends an eviction for a Succeeded or Failed pod, which the API server turns into a
deletion without consulting budgets; the module deletes it (plan ``delete``): the same outcome."""
DIFFERENCES = (TERMINATING_WAITED, EVERY_RULE_NAMED, FINISHED_DELETED)

EVICT, SKIP = "evict", "skip"


class Pod:
    """One pod of the zoo: the rules kubectl applies to it, in its filter order (each lifted by
    the option of its module blocker), what kubectl does once they are lifted, and its state."""

    def __init__(self, rules=(), then=EVICT, finished=False, terminating=False):
        self.rules, self.then, self.finished, self.terminating = tuple(rules), then, finished, terminating

    def broken(self, options):
        return [rule for rule in self.rules if not options[rule[1]]]

    def kubectl(self, options):
        """("block", rule) or EVICT or SKIP, as kubectl decides."""
        broken = self.broken(options)
        return ("block", broken[0]) if broken else self.then


ZOO = {
    "web": Pod(),                                                   # a Deployment's pod
    "cache": Pod([_pods.BLOCK_EMPTYDIR]),                           # a Deployment's pod with emptyDir
    "db": Pod(),                                                    # a StatefulSet's pod
    "agent": Pod([_pods.BLOCK_DAEMONSET], then=SKIP),               # a DaemonSet's pod
    "ds-orphan": Pod([_pods.BLOCK_ORPHANED_DAEMONSET]),             # its DaemonSet does not exist
    "rs-orphan": Pod(),                                             # its ReplicaSet does not exist
    "bare": Pod([_pods.BLOCK_UNMANAGED]),                           # no controller
    "bare-scratch": Pod([_pods.BLOCK_EMPTYDIR, _pods.BLOCK_UNMANAGED]),  # no controller, emptyDir
    "done": Pod(finished=True),                                     # no controller, Succeeded
    "crashed": Pod(finished=True),                                  # no controller, emptyDir, Failed
    "job": Pod(finished=True),                                      # a Job's pod, Succeeded
    "static": Pod(then=SKIP),                                       # a mirror pod (kubelet's static pod)
    "leaving-owned": Pod(terminating=True),                         # terminating, a ReplicaSet's pod
    "leaving-scratch": Pod([_pods.BLOCK_EMPTYDIR], terminating=True),  # terminating, a ReplicaSet's, emptyDir
    "leaving-bare": Pod([_pods.BLOCK_UNMANAGED], terminating=True),  # terminating, no controller
}
OPTIONS = ("ignore_daemonsets", "delete_emptydir_data", "force")
COMBINATIONS = [dict(zip(OPTIONS, values)) for values in itertools.product((False, True), repeat=3)]


def combination_id(options):
    return "-".join(name if options[name] else "no_" + name for name in OPTIONS)


# --- the zoo ----------------------------------------------------------------------------------

def container():
    return [{"name": "app", "image": "registry.example/app:1"}]


def pod_spec(node=None, host=None, emptydir=False, restart="Always"):
    spec = {"containers": container(), "terminationGracePeriodSeconds": 0, "restartPolicy": restart}
    if node:
        spec["nodeName"] = node
    if host:
        spec["nodeSelector"] = {"kubernetes.io/hostname": host}
    if emptydir:
        spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]
        spec["containers"][0]["volumeMounts"] = [{"name": "scratch", "mountPath": "/scratch"}]
    return spec


def labels(key):
    return {ZOO_LABEL: key}


def template(key, spec):
    return {"metadata": {"labels": labels(key)}, "spec": spec}


def workload(kind, key, spec, **extra):
    group = "batch/v1" if kind == "Job" else "apps/v1"
    body = {"template": template(key, spec)}
    if kind != "Job":
        body["selector"] = {"matchLabels": labels(key)}
    body.update(extra)
    return {"apiVersion": group, "kind": kind, "metadata": {"name": key}, "spec": body}


def owner(kind, name, uid, api_version="apps/v1"):
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": True,
            "blockOwnerDeletion": False}


def bare(key, node, owners=(), annotations=None, finalizers=None, emptydir=False, extra_labels=None):
    meta = {"name": key, "labels": dict(labels(key), **(extra_labels or {})), "annotations": dict(annotations or {})}
    if owners:
        meta["ownerReferences"] = list(owners)
    if finalizers:
        meta["finalizers"] = list(finalizers)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": pod_spec(node=node, emptydir=emptydir, restart="Never")}


def hold_policy(namespace):
    """Only the namespace controller, of kube-controller-manager's controllers, may delete the zoo's pods."""
    name = "kubeops-test-hold-" + namespace
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {"failurePolicy": "Fail",
                 "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                         "operations": ["DELETE"], "resources": ["pods"]}]},
                 "validations": [{"expression": "!request.userInfo.username.startsWith('%s') || "
                                                "request.userInfo.username == '%s'"
                                                % (CONTROLLER_MANAGER_USERS, NAMESPACE_CONTROLLER),
                                  "message": "the drain parity test's zoo stays as built"}]}}
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {
                     "kubernetes.io/metadata.name": namespace}}}}}
    return name, [policy, binding]


def apply(cluster, namespace, *objects):
    for obj in objects:
        obj["metadata"].setdefault("namespace", namespace)
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))


def zoo_pods(cluster, namespace):
    """The zoo's pods by their key (``ZOO``), as dicts."""
    items = cluster.api_client.sanitize_for_serialization(cluster.core.list_namespaced_pod(namespace))["items"]
    return dict(((p["metadata"].get("labels") or {}).get(ZOO_LABEL, p["metadata"]["name"]), p) for p in items)


def state_of(pods):
    """What must not change while the zoo is used: each pod's UID, resourceVersion, phase, and
    whether it is terminating."""
    return dict((key, (p["metadata"]["uid"], p["metadata"]["resourceVersion"], p["status"].get("phase"),
                       bool(p["metadata"].get("deletionTimestamp")))) for key, p in pods.items())


class Zoo:
    def __init__(self, cluster, node, namespace):
        self.cluster, self.node, self.namespace = cluster, node, namespace
        self.built = None
        self.names = {}

    def pods(self):
        return zoo_pods(self.cluster, self.namespace)

    def node_pods(self):
        """``namespace/name`` of every pod bound to the node, whatever its namespace."""
        pods = self.cluster.core.list_pod_for_all_namespaces(field_selector="spec.nodeName=%s" % self.node).items
        return sorted("%s/%s" % (p.metadata.namespace, p.metadata.name) for p in pods)

    def settled(self):
        """The zoo as built once nothing moves: every pod in its state, two reads a second apart the same."""
        def ready():
            pods = self.pods()
            if sorted(pods) != sorted(ZOO):
                return None
            for key, pod in pods.items():
                meta, phase = pod["metadata"], pod["status"].get("phase")
                if ZOO[key].terminating != bool(meta.get("deletionTimestamp")):
                    return None
                if ZOO[key].finished != (phase in ("Succeeded", "Failed")):
                    return None
                if not ZOO[key].finished and not ZOO[key].terminating and phase != "Running":
                    return None
                if key == "job" and meta.get("finalizers"):
                    return None  # the Job controller has not counted it yet
            return state_of(pods)

        def still():
            first = ready()
            if not first:
                return None
            time.sleep(1)
            return first if ready() == first else None

        return wait_for("the zoo on node/%s to settle" % self.node, still, timeout=90, interval=0.5)


@pytest.fixture(scope="module")
def zoo(cluster):
    from kubernetes import client

    namespace = create_namespace(cluster, "t-drain-parity")
    node = "kwok-parity-%s" % uuid.uuid4().hex[:6]
    cluster.core.create_node(node_manifest(node))
    node_uid = wait_node_ready(cluster, node).metadata.uid
    policy, hold = hold_policy(namespace)
    zoo = Zoo(cluster, node, namespace)
    try:
        apply(cluster, namespace, *hold)
        holder = cluster.apps.create_namespaced_replica_set(namespace, {
            "metadata": {"name": "holder"},
            "spec": {"replicas": 0, "selector": {"matchLabels": HOLDER},
                     "template": {"metadata": {"labels": HOLDER}, "spec": pod_spec(host=node)}}})
        apply(cluster, namespace, bare("bare", node))

        def held():
            # The policy is in force once the garbage collector may no longer delete a pod.
            res = cluster.kubectl("delete", "pod", "bare", "-n", namespace, "--dry-run=server",
                                  "--as", GARBAGE_COLLECTOR, check=False)
            return res.returncode != 0 and "stays as built" in res.stderr
        wait_for("the zoo's hold policy to be in force", held, timeout=30, interval=0.5)

        mirror = {"kubernetes.io/config.mirror": "d41d8cd98f00b204e9800998ecf8427e",
                  "kubernetes.io/config.source": "file"}
        apply(cluster, namespace,
              workload("Deployment", "web", pod_spec(host=node), replicas=1),
              workload("Deployment", "cache", pod_spec(host=node, emptydir=True), replicas=1),
              workload("StatefulSet", "db", pod_spec(host=node), replicas=1, serviceName="db"),
              workload("DaemonSet", "agent", pod_spec(host=node)),
              workload("Job", "job", pod_spec(host=node, restart="Never")),
              bare("ds-orphan", node, [owner("DaemonSet", "gone-agent", str(uuid.uuid4()))]),
              bare("rs-orphan", node, [owner("ReplicaSet", "gone-web-5d8f7c", str(uuid.uuid4()))]),
              bare("bare-scratch", node, emptydir=True),
              bare("done", node),
              bare("crashed", node, emptydir=True),
              # As the kubelet makes a mirror pod: the annotations and the Node as its controller.
              bare("static", node, [owner("Node", node, node_uid, api_version="v1")], annotations=mirror),
              bare("leaving-owned", node, [owner("ReplicaSet", "holder", holder.metadata.uid)],
                   finalizers=[HOLD_FINALIZER], extra_labels=HOLDER),
              bare("leaving-scratch", node, [owner("ReplicaSet", "holder", holder.metadata.uid)],
                   finalizers=[HOLD_FINALIZER], extra_labels=HOLDER, emptydir=True),
              bare("leaving-bare", node, finalizers=[HOLD_FINALIZER]))

        def started():
            pods = zoo_pods(cluster, namespace)
            return all(key in pods and pods[key]["status"].get("phase") == "Running"
                       for key in ("done", "crashed") + LEAVING)
        wait_for("kwok to start the pods the test moves on", started)
        cluster.core.patch_namespaced_pod_status("done", namespace, {"status": {"phase": "Succeeded"}})
        cluster.core.patch_namespaced_pod_status("crashed", namespace, {"status": {"phase": "Failed"}})
        for name in LEAVING:
            cluster.core.delete_namespaced_pod(name, namespace)
        zoo.built = zoo.settled()
        zoo.names = dict((p["metadata"]["name"], key) for key, p in zoo.pods().items())
        yield zoo
    finally:
        for kind, name in (("validatingadmissionpolicybinding", policy), ("validatingadmissionpolicy", policy)):
            cluster.kubectl("delete", kind, name, "--ignore-not-found", check=False)
        for name in LEAVING:
            try:
                cluster.core.patch_namespaced_pod(name, namespace, {"metadata": {"finalizers": None}})
            except client.ApiException:
                pass
        try:
            cluster.core.patch_node(node, {"spec": {"unschedulable": False}})
        except client.ApiException:
            pass
        for delete in (lambda: cluster.core.delete_namespace(namespace, grace_period_seconds=0),
                       lambda: cluster.core.delete_node(node)):
            try:
                delete()
            except client.ApiException:
                pass


# --- the two drains ---------------------------------------------------------------------------

def kubectl_drain(zoo, options):
    """kubectl drain --dry-run=server's decisions: ``{"refused", "blocked": {pod key: rule},
    "evicted": {pod keys}}`` (kubectl names no evictions when it refuses)."""
    res = zoo.cluster.kubectl(
        "drain", zoo.node, "--dry-run=server", "--timeout=60s",
        "--ignore-daemonsets=%s" % str(options["ignore_daemonsets"]).lower(),
        "--delete-emptydir-data=%s" % str(options["delete_emptydir_data"]).lower(),
        "--force=%s" % str(options["force"]).lower(), check=False)
    out = "stdout:\n%s\nstderr:\n%s" % (res.stdout, res.stderr)
    assert "node/%s cordoned (server dry run)" % zoo.node in res.stdout, out
    refusal = re.search(r'unable to drain node "%s" due to error: (.*), continuing command' % re.escape(zoo.node),
                        res.stderr)
    blocked = {}
    if refusal:
        pods = r"(?:%s/[a-z0-9.-]+(?:, )?)+" % re.escape(zoo.namespace)
        for found in re.finditer(r"cannot delete (.+?): (%s)" % pods, refusal.group(1)):
            rules = [rule for pattern, rule in KUBECTL_RULES if pattern.search(found.group(1))]
            assert len(rules) == 1, "kubectl's refusal %r is none of KUBECTL_RULES\n%s" % (found.group(1), out)
            for ref in found.group(2).rstrip(", ").split(", "):
                key = zoo.names[ref.split("/", 1)[1]]
                assert key not in blocked, "kubectl named %s twice\n%s" % (ref, out)
                blocked[key] = rules[0]
        assert blocked, "kubectl refused naming no pod of the zoo\n%s" % out
        assert res.returncode != 0, out
    else:
        assert res.returncode == 0 and "node/%s drained (server dry run)" % zoo.node in res.stdout, out
    evicted = set()
    for namespace, name in re.findall(r"^evicting pod ([^/\s]+)/(\S+) \(server dry run\)$", res.stdout, re.M):
        assert namespace == zoo.namespace, "kubectl evicts %s/%s, not of the zoo\n%s" % (namespace, name, out)
        evicted.add(zoo.names[name])
    return {"refused": bool(refusal), "blocked": blocked, "evicted": evicted, "output": out}


@pytest.fixture(scope="module")
def module_runs(zoo, cluster, tmp_path_factory):
    """k8s_node_drain in check mode with each combination of options, as one task each of one
    ansible-playbook run (one Ansible start, not 8): ``{combination_id: result}``."""
    tasks = [{"name": combination_id(options), "check_mode": True, "ignore_errors": True,
              "kubeops.node_maintenance.k8s_node_drain": dict(options, name=zoo.node, timeout=60)}
             for options in COMBINATIONS]
    res, results = run_tasks(str(tmp_path_factory.mktemp("drain-parity")), "drain-parity", tasks,
                             _ansible_env(cluster))
    assert sorted(results) == sorted(t["name"] for t in tasks), res.stdout[-3000:] + res.stderr[-3000:]
    # Check mode changes nothing either.
    assert not cluster.core.read_node(zoo.node).spec.unschedulable
    assert state_of(zoo.pods()) == zoo.built
    return results


def module_drain(zoo, module_runs, options):
    """k8s_node_drain's check-mode decisions: ``{"refused", "plans": {key: plan}, "blockers": {key: [rule]}}``."""
    result = dict(module_runs[combination_id(options)])
    result.setdefault("failed", False)
    refused = result.get("stopped_by") == "refused"
    assert result["failed"] == refused and result.get("stopped_by") in (None, "refused"), result.get("msg")
    plans, blockers = {}, {}
    for pod in result["pods"]:
        ref = "%s/%s" % (pod["namespace"], pod["name"])
        assert pod["namespace"] == zoo.namespace, "the module drains %s, not of the zoo" % ref
        key = zoo.names[pod["name"]]
        plans[key] = pod["plan"]
        blockers[key] = [(b["reason"], b["option"]) for b in pod["blockers"]]
    return {"refused": refused, "plans": plans, "blockers": blockers, "msg": result.get("msg")}


def expected_module(kubectl, options):
    """The module's decision for each pod, from kubectl's, through the named differences:
    ``{key: (plan, [blocker rule], difference or None)}``. A pod kubectl says nothing about (it
    refused, and the pod is not one that blocks it) gets the plan of the zoo's table."""
    expected = {}
    for key, pod in ZOO.items():
        rules = [rule[:2] for rule in pod.broken(options)]
        if key in kubectl["blocked"]:
            first = kubectl["blocked"][key][:2]
            if pod.terminating:
                expected[key] = ("wait", [], TERMINATING_WAITED)
            else:
                # kubectl's rule is the module's first; any more are EVERY_RULE_NAMED.
                expected[key] = ("refuse", [first] + [r for r in rules if r != first],
                                 EVERY_RULE_NAMED if len(rules) > 1 else None)
            continue
        said = not kubectl["refused"]
        then = (EVICT if key in kubectl["evicted"] else SKIP) if said else pod.then
        if pod.terminating:
            expected[key] = ("wait", [], TERMINATING_WAITED if said else None)
        elif then == EVICT and pod.finished:
            expected[key] = ("delete", [], FINISHED_DELETED if said else None)
        else:
            expected[key] = (then, [], None)
    return expected


# --- tests ------------------------------------------------------------------------------------

def test_kubectl_is_of_the_api_servers_version(cluster):
    """kubectl drain decides client-side: the rules compared are those of the suite's kubectl,
    which must be of the API server's minor version (the eviction API answers the dry runs)."""
    versions = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    client, server = versions["clientVersion"], versions["serverVersion"]
    assert (client["major"], client["minor"]) == (server["major"], server["minor"]), versions


@pytest.mark.parametrize("options", COMBINATIONS, ids=combination_id)
def test_module_decides_as_kubectl_drain(zoo, module_runs, options):
    kubectl = kubectl_drain(zoo, options)
    # kubectl's server dry run changes nothing: the node stays schedulable, every pod as built.
    assert not zoo.cluster.core.read_node(zoo.node).spec.unschedulable
    assert state_of(zoo.pods()) == zoo.built
    assert zoo.node_pods() == sorted("%s/%s" % (zoo.namespace, name) for name in zoo.names)

    # The zoo is what its table says, as kubectl sees it.
    model = dict((key, pod.kubectl(options)) for key, pod in ZOO.items())
    blocking = dict((key, d[1]) for key, d in model.items() if isinstance(d, tuple))
    assert kubectl["refused"] == bool(blocking), kubectl["output"]
    assert kubectl["blocked"] == blocking, kubectl["output"]
    assert kubectl["evicted"] == (set() if blocking else set(k for k, d in model.items() if d == EVICT)), \
        kubectl["output"]

    module = module_drain(zoo, module_runs, options)
    assert module["refused"] == kubectl["refused"], (module["msg"], kubectl["output"])
    assert sorted(module["plans"]) == sorted(ZOO)
    differences = set()
    for key, want in sorted(expected_module(kubectl, options).items()):
        got = (module["plans"][key], module["blockers"][key])
        plan, blockers, difference = want
        assert got == (plan, blockers), "%s: module %s, expected %s (%s); kubectl:\n%s" % (
            key, got, (plan, blockers), difference or "the same as kubectl", kubectl["output"])
        if difference:
            differences.add(difference)
    # Which named differences this combination shows: the zoo has a pod for each.
    expect = set()
    if not options["force"] or not options["delete_emptydir_data"] or not kubectl["refused"]:
        expect.add(TERMINATING_WAITED)
    if not options["delete_emptydir_data"] and not options["force"]:
        expect.add(EVERY_RULE_NAMED)
    if not kubectl["refused"]:
        expect.add(FINISHED_DELETED)
    assert differences == expect
