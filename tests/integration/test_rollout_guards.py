"""Rollout guards, windows, batches, hooks, notifications and drain escalation (issue #11), on the real
local control plane with kwok nodes and action none (or a reboot that the test stops before any host
is needed). Every wait is on a condition; no assertion is about how long something took.
"""
import http.server
import json
import os
import re
import socket
import threading
import time
import urllib.parse
from datetime import datetime, timedelta, timezone

import pytest

from tests.integration.conftest import is_ready
from tests.integration.test_rolling_maintenance import PLAYBOOK, deployment, node_record

pytestmark = pytest.mark.integration

CONTROL_PLANE = "node-role.kubernetes.io/control-plane"
POOL = "kubeops.test/pool"


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------

def wait_ready_pods(cluster, namespace, app, want, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        pods = cluster.core.list_namespaced_pod(namespace, label_selector="app=%s" % app).items
        ready = [p for p in pods if is_ready(p)]
        if len(ready) >= want:
            return ready
        assert time.monotonic() < deadline, "%s: fewer than %d ready pods after %ss" % (app, want, timeout)
        time.sleep(0.5)


def untouched(cluster, name):
    node = cluster.core.read_node(name)
    return (not node.spec.unschedulable and node_record(cluster, name) == {}
            and not [t for t in node.spec.taints or [] if t.key.startswith("maintenance.kubeops.io")])


def events(cluster, name):
    return cluster.core.list_namespaced_event("default", field_selector="involvedObject.name=%s" % name).items


def lock_holder(cluster, namespace):
    from kubernetes.client import ApiException

    try:
        return cluster.coordination.read_namespaced_lease("kubeops-node-maintenance", namespace).spec.holder_identity
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


class JSONServer:
    """An HTTP server on 127.0.0.1 that records every GET and POST (method, path, headers, body,
    status) and answers it with the JSON of ``self.answer(request)``, a ``(status, body)``."""

    def __init__(self):
        self.requests = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                request = {"method": self.command, "path": self.path, "headers": dict(self.headers),
                           "body": self.rfile.read(length).decode() if length else ""}
                request["status"], answer = owner.answer(request)
                owner.requests.append(request)
                payload = json.dumps(answer).encode()
                self.send_response(request["status"])
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

            def log_message(self, *args):  # quiet
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, request):
        raise NotImplementedError

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Receiver(JSONServer):
    """A webhook receiver: answers each request with the next of ``statuses`` (then 200)."""

    def __init__(self, statuses=()):
        self.statuses = list(statuses)
        super().__init__()

    def answer(self, request):
        status = self.statuses.pop(0) if self.statuses else 200
        return status, {"health": "true"} if status == 200 else {"health": "false"}

    def bodies(self):
        return [json.loads(r["body"]) for r in self.requests if r["method"] == "POST" and r["status"] == 200]


@pytest.fixture
def receiver():
    started = []

    def _start(statuses=()):
        started.append(Receiver(statuses))
        return started[-1]

    yield _start
    for item in started:
        item.close()


def closed_port_url():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    return "http://127.0.0.1:%d/hook" % port


class Prometheus(JSONServer):
    """A stand-in for a Prometheus server: ``/api/v1/query`` (GET or POST, as the HTTP API takes it)
    answers with the next of ``answers``, the last one repeating; each is ``(HTTP status, JSON body)``
    in the format of Prometheus' docs/querying/api.md. Each request also records its ``query``."""

    def __init__(self, answers):
        self.answers = list(answers)
        super().__init__()

    def answer(self, request):
        request["path"], _sep, url_query = request["path"].partition("?")
        form = urllib.parse.parse_qs(request["body"] if request["method"] == "POST" else url_query)
        request["query"] = (form.get("query") or [None])[0]
        if request["path"] != "/api/v1/query":
            return 404, {"status": "error", "errorType": "not_found", "error": request["path"]}
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def prometheus_vector(*series):
    """An instant query's success answer: a vector of (labels, value) series."""
    return 200, {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": labels, "value": [round(time.time(), 3), value]} for labels, value in series]}}


PROMETHEUS_TIMEOUT = (503, {"status": "error", "errorType": "timeout",
                            "error": "query timed out in expression evaluation"})


@pytest.fixture
def prometheus():
    started = []

    def _start(*answers):
        started.append(Prometheus(answers))
        return started[-1]

    yield _start
    for item in started:
        item.close()


@pytest.fixture
def pool(cluster, namespace, make_node, run_playbook, tmp_path):
    """``pool(n, maintained)``: n kwok nodes labelled with this test's pool, the first ``maintained``
    in the inventory; returns a runner of the rolling playbook with action none."""

    def _make(count, maintained, labels=None):
        nodes = [make_node(labels=dict({POOL: namespace}, **(labels or {}).get(i, {}))) for i in range(count)]
        inventory = tmp_path / "inventory.ini"
        # kwok nodes have no host behind them: port 1 makes any accidental connection fail.
        inventory.write_text("[k8s_nodes]\n" + "".join(
            "%s ansible_host=127.0.0.1 ansible_port=1\n" % name for name in nodes[:maintained]))

        def run(rollout_id, _args=(), **extra):
            extra_vars = {"node_maintenance_rollout_id": rollout_id, "node_maintenance_action": "none",
                          "node_maintenance_lock_namespace": namespace,
                          "node_maintenance_report_dir": str(tmp_path / "reports"),
                          "node_maintenance_drain_timeout": 60, "node_maintenance_health_timeout": 60,
                          "node_maintenance_ready_timeout": 60, "node_maintenance_connect_timeout": 3,
                          "node_maintenance_preflight_fail_on": ["capacity"]}
            extra_vars.update(extra)
            return run_playbook(PLAYBOOK, extra_vars=extra_vars, inventory=str(inventory), args=_args)

        run.nodes = nodes
        run.report = lambda rollout_id: json.loads((tmp_path / "reports" / rollout_id / "report.json").read_text())
        run.report_md = lambda rollout_id: (tmp_path / "reports" / rollout_id / "report.md").read_text()
        return run

    return _make


# ------------------------------------------------------------------------------------------------
# k8s_cluster_guard on the cluster
# ------------------------------------------------------------------------------------------------

def test_guard_module_control_plane_and_min_ready(cluster, namespace, make_node, run_module):
    cp1 = make_node(labels={POOL: namespace, CONTROL_PLANE: ""})
    worker = make_node(labels={POOL: namespace})
    cordoned = make_node(labels={POOL: namespace}, unschedulable=True)
    selector = "%s=%s" % (POOL, namespace)

    refused = run_module("k8s_cluster_guard", {"name": cp1, "etcd_quorum": False})
    assert refused["failed"] and "last Ready control-plane node" in refused["msg"], refused
    assert refused["guards"][0]["guard"] == "control_plane" and refused["guards"][0]["status"] == "fail"
    # check mode answers the same, and changes nothing either way
    assert run_module("k8s_cluster_guard", {"name": cp1, "etcd_quorum": False}, check=True)["failed"]
    assert run_module("k8s_cluster_guard", {"name": worker, "etcd_quorum": False})["passed"]

    # 3 nodes in the pool, one cordoned: taking the worker leaves 1 (cp1) Ready and schedulable
    res = run_module("k8s_cluster_guard", {"name": worker, "control_plane": False, "etcd_quorum": False,
                                           "min_ready_nodes": 2, "node_selector": selector})
    assert res["failed"] and "leaves 1 of 3 nodes Ready and schedulable" in res["msg"], res["msg"]
    assert "%s (cordoned)" % cordoned in res["msg"]
    res = run_module("k8s_cluster_guard", {"name": worker, "control_plane": False, "etcd_quorum": False,
                                           "min_ready_nodes": "33%", "node_selector": selector})
    assert not res["failed"] and res["passed"], res
    assert res["guards"][0]["required"] == 1 and res["guards"][0]["available_after"] == 1

    # a second Ready control-plane node (even cordoned) lets the first go
    cluster.core.patch_node(cordoned, {"metadata": {"labels": {CONTROL_PLANE: ""}}})
    res = run_module("k8s_cluster_guard", {"name": cp1, "etcd_quorum": False})
    assert res["passed"] and res["guards"][0]["other_ready"] == [cordoned], res

    # wait_timeout: the guard waits for the cluster to be able to spare the node
    def uncordon_soon():
        time.sleep(2)
        cluster.core.patch_node(cordoned, {"spec": {"unschedulable": False}})

    threading.Thread(target=uncordon_soon, daemon=True).start()
    res = run_module("k8s_cluster_guard", {"name": worker, "control_plane": False, "etcd_quorum": False,
                                           "min_ready_nodes": 2, "node_selector": selector,
                                           "wait_timeout": 120, "poll_interval": 1})
    assert res["passed"] and res["checks"] >= 1, res


def test_guard_module_etcd_quorum_from_pods_and_endpoints(cluster, namespace, make_node, run_module, receiver):
    a, b, c = (make_node(labels={POOL: namespace}) for _index in range(3))

    def etcd_pod(name, node):
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {"component": "etcd", "tier": "control-plane"}},
                "spec": {"nodeName": node, "containers": [{"name": "etcd", "image": "registry.invalid/etcd:3"}]}}

    cluster.core.create_namespaced_pod(namespace, etcd_pod("etcd-a", a))
    cluster.core.create_namespaced_pod(namespace, etcd_pod("etcd-b", b))
    # a member bound to a node that does not exist never becomes Ready: an unhealthy member
    cluster.core.create_namespaced_pod(namespace, etcd_pod("etcd-gone", "gone-" + namespace))
    ready = {"etcd-a", "etcd-b"}
    deadline = time.monotonic() + 120
    while True:
        pods = cluster.core.list_namespaced_pod(namespace, label_selector="component=etcd").items
        if {p.metadata.name for p in pods if any(cd.type == "Ready" and cd.status == "True"
                                                 for cd in p.status.conditions or [])} >= ready:
            break
        assert time.monotonic() < deadline, "kwok did not make the etcd pods Ready"
        time.sleep(0.5)

    args = {"control_plane": False, "etcd_pod_namespace": namespace}
    refused = run_module("k8s_cluster_guard", dict(args, name=a))
    assert refused["failed"] and "etcd would lose quorum" in refused["msg"], refused["msg"]
    # (the pod garbage collector may already have removed the orphan: then 2 of 2 members, same numbers)
    etcd = [g for g in refused["guards"] if g["guard"] == "etcd_quorum"][0]
    assert (etcd["quorum"], etcd["healthy"], etcd["healthy_after"]) == (2, 2, 1)
    # the node without a member, and the unhealthy member's absence, do not matter
    assert run_module("k8s_cluster_guard", dict(args, name=c))["passed"]

    cluster.core.delete_collection_namespaced_pod(namespace, field_selector="metadata.name=etcd-gone",
                                                  grace_period_seconds=0)
    cluster.core.create_namespaced_pod(namespace, etcd_pod("etcd-c", c))
    deadline = time.monotonic() + 120
    while not run_module("k8s_cluster_guard", dict(args, name=a)).get("passed"):
        assert time.monotonic() < deadline, "3 healthy members should spare one"
        time.sleep(1)

    # a user-given endpoint list: /health read from the controller
    healthy = receiver()
    endpoints = [{"node": a, "url": healthy.url}, {"node": b, "url": healthy.url + "/"},
                 {"node": c, "url": closed_port_url().rsplit("/", 1)[0]}]
    res = run_module("k8s_cluster_guard", {"name": a, "control_plane": False, "etcd_endpoints": endpoints})
    assert res["failed"] and "lose quorum" in res["msg"] and "no answer" in res["msg"], res["msg"]
    assert [r["path"] for r in healthy.requests] == ["/health", "/health"]
    res = run_module("k8s_cluster_guard", {"name": c, "control_plane": False, "etcd_endpoints": endpoints})
    assert res["passed"], res


# ------------------------------------------------------------------------------------------------
# guards in the rollout
# ------------------------------------------------------------------------------------------------

def test_a_guard_refuses_before_anything_changes_and_passes_when_met(cluster, namespace, pool, receiver):
    rollout = pool(3, 2, labels={0: {CONTROL_PLANE: ""}})
    first, second, spare = rollout.nodes

    refused = rollout("guarded", node_maintenance_guard_control_plane=True)
    assert refused.returncode != 0
    assert "last Ready control-plane node" in refused.stdout, refused.stdout[-4000:]
    assert "Nothing was changed on the node: a cluster guard refused it" in refused.stdout
    assert "lock was released" in refused.stdout
    assert untouched(cluster, first) and untouched(cluster, second)
    assert lock_holder(cluster, namespace) is None
    assert "MaintenanceFailed" in {e.reason for e in events(cluster, first)}
    report = {n["node"]: n for n in rollout.report("guarded")["nodes"]}
    assert report[first]["status"] == "failed" and report[first]["failed_phase"] == "guards"

    # an unhealthy health URL refuses too (checked after the other guards)
    unhealthy = receiver(statuses=[503])
    cluster.core.patch_node(spare, {"metadata": {"labels": {CONTROL_PLANE: ""}}})
    refused = rollout("guarded", node_maintenance_guard_control_plane=True,
                      node_maintenance_guard_health_url=unhealthy.url + "/healthz")
    assert refused.returncode != 0
    assert "The health URL reports healthy" in refused.stdout and "503" in refused.stdout, refused.stdout[-4000:]
    assert untouched(cluster, first)

    # met: another Ready control-plane node, 2 of the 3 pool nodes stay, a healthy URL
    healthy = receiver()
    res = rollout("guarded", node_maintenance_guard_control_plane=True,
                  node_maintenance_guard_min_ready_nodes="66%",
                  node_maintenance_guard_node_selector="%s=%s" % (POOL, namespace),
                  node_maintenance_guard_etcd_quorum=True, node_maintenance_guard_etcd_pod_namespace=namespace,
                  node_maintenance_guard_health_url=healthy.url + "/healthz")
    assert res.returncode == 0, res.stdout[-6000:]
    report = {n["node"]: n for n in rollout.report("guarded")["nodes"]}
    for name in (first, second):
        assert report[name]["status"] == "done"
        assert report[name]["guards"] == {"control_plane": "pass", "min_ready_nodes": "pass",
                                          "etcd_quorum": "skip", "health_url": "pass"}, report[name]
        assert not cluster.core.read_node(name).spec.unschedulable
    assert [r["path"] for r in healthy.requests] == ["/healthz", "/healthz"]
    assert "guards control_plane: pass" in rollout.report_md("guarded")


def test_min_ready_guard_refuses_the_second_node_when_the_pool_is_short(cluster, namespace, pool):
    rollout = pool(3, 2)
    first, second, spare = rollout.nodes
    cluster.core.patch_node(spare, {"spec": {"unschedulable": True}})
    # pool of 3, one cordoned: taking a node leaves 1 < 2
    res = rollout("short", node_maintenance_guard_min_ready_nodes=2,
                  node_maintenance_guard_node_selector="%s=%s" % (POOL, namespace))
    assert res.returncode != 0
    assert "fewer than the 2 required" in res.stdout and "%s (cordoned)" % spare in res.stdout, res.stdout[-4000:]
    assert untouched(cluster, first) and untouched(cluster, second)


def test_a_prometheus_query_guard_holds_the_rollout_while_alerts_fire(cluster, namespace, pool, prometheus):
    rollout = pool(2, 1)
    target = rollout.nodes[0]
    secret = "prom-token-%s" % namespace
    query = 'ALERTS{alertstate="firing",severity="critical"}'
    firing = prometheus_vector(
        ({"__name__": "ALERTS", "alertname": "EtcdMembersDown", "alertstate": "firing", "severity": "critical"}, "1"),
        ({"__name__": "ALERTS", "alertname": "KubeAPIErrorBudgetBurn", "alertstate": "firing",
          "severity": "critical", "long": "1h"}, "1"))
    guard = {"node_maintenance_guard_prometheus_query": query,
             "node_maintenance_guard_prometheus_headers": {"Authorization": "Bearer " + secret}}

    def unquoted(res):
        return (res.stdout + res.stderr).replace('\\"', '"')

    # critical alerts fire: refused before anything changes, naming the query and what it returned
    server = prometheus(firing)
    refused = rollout("prom", _args=("-vvv",), node_maintenance_guard_prometheus_url=server.url + "/", **guard)
    assert refused.returncode != 0
    out = unquoted(refused)
    assert "cluster guard prometheus_query refused node %s" % target in out, refused.stdout[-4000:]
    assert "Prometheus query %s at %s/: returned 2 series" % (query, server.url) in out
    assert 'ALERTS{alertname="EtcdMembersDown",alertstate="firing",severity="critical"} = 1' in out
    assert "Nothing was changed on the node: a cluster guard refused it" in out
    assert untouched(cluster, target) and lock_holder(cluster, namespace) is None
    node = rollout.report("prom")["nodes"][0]
    assert node["status"] == "failed" and node["failed_phase"] == "guards"
    assert node["guards"] == {"prometheus_query": "fail"}, node
    assert [(r["method"], r["path"], r["query"]) for r in server.requests] == [("GET", "/api/v1/query", query)]
    assert server.requests[0]["headers"].get("Authorization") == "Bearer " + secret
    assert secret not in refused.stdout and secret not in refused.stderr, "the bearer token was printed (-vvv)"

    # Prometheus fails to answer (its query timeout; retried within the wait timeout), and nothing
    # listens: refusals, nothing changed
    failing = prometheus(PROMETHEUS_TIMEOUT)
    refused = rollout("prom", node_maintenance_guard_prometheus_url=failing.url,
                      node_maintenance_guard_wait_timeout=5, **guard)
    assert refused.returncode != 0
    out = unquoted(refused)
    assert "(waited node_maintenance_guard_wait_timeout 5s)" in out, refused.stdout[-4000:]
    assert "HTTP 503, timeout: query timed out in expression evaluation" in out
    assert len(failing.requests) == 2 and untouched(cluster, target)
    refused = rollout("prom", node_maintenance_guard_prometheus_url=closed_port_url().rsplit("/", 1)[0], **guard)
    assert refused.returncode != 0
    out = unquoted(refused)
    assert "(asked once, node_maintenance_guard_wait_timeout is 0)" in out, refused.stdout[-4000:]
    assert "no answer (" in out and "Connection refused" in out, refused.stdout[-4000:]
    assert untouched(cluster, target)
    assert secret not in out

    # the alerts resolve while the guard waits (POST this time): the node is maintained
    resolving = prometheus(firing, prometheus_vector())
    res = rollout("prom", node_maintenance_guard_prometheus_url=resolving.url,
                  node_maintenance_guard_prometheus_method="POST", node_maintenance_guard_wait_timeout=30, **guard)
    assert res.returncode == 0, res.stdout[-6000:]
    node = rollout.report("prom")["nodes"][0]
    assert node["status"] == "done" and node["guards"] == {"prometheus_query": "pass"}, node
    assert [(r["method"], r["query"]) for r in resolving.requests] == [("POST", query), ("POST", query)]
    assert not cluster.core.read_node(target).spec.unschedulable
    assert secret not in res.stdout and secret not in res.stderr


# ------------------------------------------------------------------------------------------------
# hooks and webhook
# ------------------------------------------------------------------------------------------------

def test_hooks_run_in_order_and_the_webhook_gets_every_phase_without_the_secret(
        cluster, namespace, pool, receiver, tmp_path):
    rollout = pool(3, 2)
    log = tmp_path / "hooks.log"
    hooks = {}
    for hook in ("before_drain", "after_drain", "before_uncordon", "after_node"):
        path = tmp_path / ("%s.yml" % hook)
        # the hook runs against the inventory host; these kwok nodes have none, so it acts on the controller
        path.write_text(
            "- name: Record the hook\n"
            "  ansible.builtin.shell: echo \"%s {{ inventory_hostname }} $(%s get node {{ inventory_hostname }}"
            " -o jsonpath='{.spec.unschedulable}')\" >> %s\n"
            "  environment:\n    KUBECONFIG: %s\n"
            "  delegate_to: localhost\n  changed_when: false\n"
            % (hook, os.path.join(cluster.bin_dir, "kubectl"), log, cluster.kubeconfig))
        hooks["node_maintenance_hook_" + hook] = str(path)

    secret = "s3cr3t-token-%s" % namespace
    hook = receiver(statuses=[500])  # the first notification fails once and is retried
    res = rollout("notified", node_maintenance_webhook_url=hook.url + "/notify",
                  node_maintenance_webhook_headers={"Authorization": "Bearer " + secret},
                  node_maintenance_webhook_delay=0, node_maintenance_cluster="test-cluster",
                  node_maintenance_settle_seconds=1, **hooks)
    assert res.returncode == 0, res.stdout[-6000:]
    first, second = rollout.nodes[:2]

    seen = [((line.split(" ") + ["", ""])[:3]) for line in log.read_text().splitlines()]
    seen = [(hook_name, node, "true" if cordoned == "true" else "") for hook_name, node, cordoned in seen]
    expected = []
    for name in (first, second):  # (hook, node, node cordoned while it runs)
        expected += [("before_drain", name, ""), ("after_drain", name, "true"),
                     ("before_uncordon", name, "true"), ("after_node", name, "")]
    assert seen == expected, seen
    settled = re.findall(r"TASK \[[^\]]*Let the cluster settle after the previous node\][^\n]*\n(\w+): \[([^\]\s]+)",
                         res.stdout)
    assert settled == [("skipping", first), ("ok", second)], settled

    assert hook.requests[0]["status"] == 500 and hook.requests[1]["status"] == 200
    assert json.loads(hook.requests[0]["body"]) == json.loads(hook.requests[1]["body"])
    bodies = hook.bodies()
    for name in (first, second):
        mine = [(b["phase"], b["status"]) for b in bodies if b["node"] == name]
        assert mine == [("preflight", "done"), ("drain", "done"), ("action", "done"), ("return", "done"),
                        ("verify", "done"), ("after_node_hook", "done"), ("done", "done")], mine
    assert (bodies[-1]["node"], bodies[-1]["phase"], bodies[-1]["status"]) == (None, "rollout", "finished")
    done = [b for b in bodies if b["node"] == first and b["phase"] == "done"][0]
    assert done["cluster"] == "test-cluster" and done["rollout"] == "notified" and done["action"] == "none"
    assert set(done["durations"]) == {"preflight", "drain", "action", "return", "verify", "after_node_hook"}
    assert done["elapsed_seconds"] > 0 and done["timestamp"].endswith("Z")
    assert {r["headers"].get("Authorization") for r in hook.requests} == {"Bearer " + secret}
    assert all(secret not in r["body"] for r in hook.requests)
    assert secret not in res.stdout and secret not in res.stderr


def test_a_failing_after_node_hook_is_recorded_as_that_with_the_node_back_in_service(cluster, pool, tmp_path):
    rollout = pool(2, 1)
    target = rollout.nodes[0]
    fixed = tmp_path / "fixed"
    hook = tmp_path / "after_node.yml"
    hook.write_text("- name: Post-maintenance check\n  ansible.builtin.command: test -e %s\n"
                    "  delegate_to: localhost\n  changed_when: false\n" % fixed)

    res = rollout("hooked", node_maintenance_hook_after_node=str(hook))
    assert res.returncode != 0
    record = node_record(cluster, target)
    assert (record["phase"], record["status"]) == ("after_node_hook", "failed"), record
    assert record["message"].startswith("Post-maintenance check: "), record["message"]
    assert record["phases"]["verify"]["status"] == "done", "the health gate passed before the hook"
    node = cluster.core.read_node(target)
    assert not node.spec.unschedulable, "the node is back in service: only the hook failed"
    assert not [t for t in node.spec.taints or [] if t.key.startswith("maintenance.kubeops.io")]
    assert "The node's maintenance itself finished: it is back in service" in res.stdout, res.stdout[-4000:]
    assert "left cordoned" not in res.stdout
    failed = [e for e in events(cluster, target) if e.reason == "MaintenanceFailed"]
    assert failed and "stopped at phase after_node_hook" in failed[-1].message
    report = rollout.report("hooked")["nodes"][0]
    assert (report["status"], report["failed_phase"]) == ("failed", "after_node_hook")

    # the hook's cause fixed, a re-run resumes at the hook: health gate, hook, done; no second drain
    fixed.write_text("")
    res = rollout("hooked", node_maintenance_hook_after_node=str(hook))
    assert res.returncode == 0, res.stdout[-6000:]
    report = rollout.report("hooked")["nodes"][0]
    assert (report["status"], report["resumed_from"]) == ("done", "after_node_hook"), report
    assert set(report["phases"]) == {"verify", "after_node_hook"}, report["phases"]
    assert node_record(cluster, target)["status"] == "done"


def test_a_webhook_that_is_down_does_not_fail_the_rollout_unless_required(cluster, namespace, pool):
    rollout = pool(2, 1)
    down = closed_port_url()
    res = rollout("down", node_maintenance_webhook_url=down, node_maintenance_webhook_retries=1,
                  node_maintenance_webhook_delay=0)
    assert res.returncode == 0, res.stdout[-6000:]
    assert "WARNING: webhook notification (preflight done) not delivered" in res.stdout
    assert node_record(cluster, rollout.nodes[0])["status"] == "done"

    required = rollout("required", node_maintenance_webhook_url=down, node_maintenance_webhook_retries=1,
                       node_maintenance_webhook_delay=0, node_maintenance_webhook_required=True)
    assert required.returncode != 0
    assert "node_maintenance_webhook_required is true" in required.stdout, required.stdout[-4000:]
    assert "Nothing was changed on the node" in required.stdout  # it stopped at the end of the pre-drain checks


# ------------------------------------------------------------------------------------------------
# window and batches
# ------------------------------------------------------------------------------------------------

def test_window_and_batches_leave_the_rest_untouched_for_the_next_run(cluster, namespace, pool, tmp_path):
    rollout = pool(4, 3)
    first, second, third = rollout.nodes[:3]

    # a window that has already closed: nothing starts, the rollout ends cleanly
    past = (datetime.now(timezone.utc) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    res = rollout("windowed", node_maintenance_window_end=past)
    assert res.returncode == 0, res.stdout[-6000:]
    assert "stopped cleanly" in res.stdout and "the maintenance window ended" in res.stdout
    assert all(untouched(cluster, name) for name in (first, second, third))
    report = rollout.report("windowed")
    assert report["left_for_next_run"] == [first, second, third]
    assert lock_holder(cluster, namespace) is None

    # a window that closes mid-rollout: the first node fits (the estimate is 1 s) but takes until
    # 30 s before the end (a hook waits there), so by its measured duration the next one does not fit
    end = time.time() + 100
    wait_hook = tmp_path / "slow.yml"
    wait_hook.write_text(
        "- name: Keep the first node busy until shortly before the window closes\n"
        "  ansible.builtin.wait_for:\n    timeout: \"{{ [(%f - now(utc=true).timestamp() - 30) | int, 0] | max }}\"\n"
        "  delegate_to: localhost\n  when: inventory_hostname == ansible_play_hosts_all[0]\n" % end)
    res = rollout("windowed", node_maintenance_window_end=datetime.fromtimestamp(end, timezone.utc).isoformat(),
                  node_maintenance_window_node_estimate=1, node_maintenance_hook_after_drain=str(wait_hook))
    assert res.returncode == 0, res.stdout[-6000:]
    assert node_record(cluster, first)["status"] == "done"
    assert untouched(cluster, second) and untouched(cluster, third)
    report = rollout.report("windowed")
    assert [n["status"] for n in report["nodes"]] == ["done", "deferred", "deferred"]
    assert report["left_for_next_run"] == [second, third]
    assert report["stopped_reason"].startswith("maintenance window: "), report["stopped_reason"]
    assert "Left for the next run" in rollout.report_md("windowed")
    assert lock_holder(cluster, namespace) is None

    # the next run, one node per run: the done node is skipped, one more is done, the last is left
    res = rollout("windowed", node_maintenance_max_nodes=1)
    assert res.returncode == 0, res.stdout[-6000:]
    assert [n["status"] for n in rollout.report("windowed")["nodes"]] == ["skipped", "done", "deferred"]
    assert "node_maintenance_max_nodes (1) reached" in rollout.report("windowed")["stopped_reason"]
    assert untouched(cluster, third)

    # and the last run finishes the rest (with a settle delay, only before a node that follows one done)
    res = rollout("windowed", node_maintenance_settle_seconds=1)
    assert res.returncode == 0, res.stdout[-6000:]
    assert [n["status"] for n in rollout.report("windowed")["nodes"]] == ["skipped", "skipped", "done"]
    assert rollout.report("windowed")["left_for_next_run"] == []
    settled = re.findall(r"TASK \[[^\]]*Let the cluster settle after the previous node\][^\n]*\n(\w+):", res.stdout)
    assert settled == ["skipping"], "no node was maintained before it in this run: no settle delay"


# ------------------------------------------------------------------------------------------------
# staged drain escalation
# ------------------------------------------------------------------------------------------------

def test_a_stuck_drain_escalates_to_deleting_when_opted_in(cluster, namespace, pool):
    rollout = pool(2, 1)
    target, spare = rollout.nodes
    cluster.core.patch_node(spare, {"spec": {"unschedulable": True}})
    cluster.apps.create_namespaced_deployment(namespace, deployment("db", 1, namespace))
    cluster.policy.create_namespaced_pod_disruption_budget(namespace, {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "db"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}})
    pod = wait_ready_pods(cluster, namespace, "db", 1)[0]
    assert pod.spec.node_name == target
    cluster.core.patch_node(spare, {"spec": {"unschedulable": False}})

    res = rollout("escalated", node_maintenance_drain_timeout=8, node_maintenance_drain_final_timeout=90,
                  node_maintenance_drain_escalate_delete=True)
    assert res.returncode == 0, res.stdout[-6000:]
    assert "drain escalated" in res.stdout and "%s/%s" % (namespace, pod.metadata.name) in res.stdout
    node = rollout.report("escalated")["nodes"][0]
    assert node["status"] == "done"
    stages = node["drain_stages"]
    assert [s["stage"] for s in stages] == ["evict", "delete"]
    assert "eviction did not finish in 8s; 1 pods left: %s/%s" % (namespace, pod.metadata.name) in stages[0]["outcome"]
    assert stages[1]["deleted"] == ["%s/%s" % (namespace, pod.metadata.name)]
    escalated = [e for e in events(cluster, target) if e.reason == "MaintenanceDrainEscalated"]
    assert escalated and pod.metadata.name in escalated[0].message and escalated[0].type == "Warning"
    assert "drain stage 2 (delete" in rollout.report_md("escalated")
    wait_ready_pods(cluster, namespace, "db", 1)


def owners(cluster, namespace, app):
    """The ReplicaSet names of an app's pods."""
    pods = cluster.core.list_namespaced_pod(namespace, label_selector="app=%s" % app).items
    return {ref.name for p in pods for ref in p.metadata.owner_references or [] if ref.kind == "ReplicaSet"}


def moved(record):
    return {(w["namespace"], w["owner_kind"], w["owner_name"]) for w in record.get("moved_workloads", [])}


def pinned(cluster, namespace, target, spare, *apps, finalizers=None):
    """Deployments of one replica each, scheduled onto ``target`` (the spare cordoned meanwhile)."""
    cluster.core.patch_node(spare, {"spec": {"unschedulable": True}})
    for app in apps:
        body = deployment(app, 1, namespace)
        if finalizers and app in finalizers:
            body["spec"]["template"]["metadata"]["finalizers"] = finalizers[app]
        cluster.apps.create_namespaced_deployment(namespace, body)
    for app in apps:
        assert wait_ready_pods(cluster, namespace, app, 1)[0].spec.node_name == target
    cluster.core.patch_node(spare, {"spec": {"unschedulable": False}})


def test_a_drain_that_timed_out_records_what_it_moved_for_the_resumed_health_gate(cluster, namespace, pool):
    rollout = pool(2, 1)
    target, spare = rollout.nodes
    # web has no budget and is evicted at once; db's budget allows no eviction: the drain stops part-way
    pinned(cluster, namespace, target, spare, "web", "db")
    cluster.policy.create_namespaced_pod_disruption_budget(namespace, {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "db"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}})
    web_rs, db_rs = owners(cluster, namespace, "web"), owners(cluster, namespace, "db")

    res = rollout("timed-out", node_maintenance_drain_timeout=8)
    assert res.returncode != 0
    record = node_record(cluster, target)
    assert (record["phase"], record["status"]) == ("drain", "failed"), record
    assert moved(record) == {(namespace, "ReplicaSet", name) for name in web_rs}, record.get("moved_workloads")
    assert cluster.core.read_node(target).spec.unschedulable

    # the budget relaxed, the re-run resumes at the drain: it moves db only, and its health gate also
    # checks web, which only the first run's record remembers
    cluster.policy.delete_namespaced_pod_disruption_budget("db", namespace)
    res = rollout("timed-out")
    assert res.returncode == 0, res.stdout[-6000:]
    node = rollout.report("timed-out")["nodes"][0]
    assert (node["status"], node["resumed_from"]) == ("done", "drain"), node
    assert node["pods_evicted"] == 1 and node["workloads_checked"] == 2, node
    assert moved(node_record(cluster, target)) == {(namespace, "ReplicaSet", name) for name in web_rs | db_rs}


def test_an_escalated_drain_that_fails_at_its_final_timeout_records_the_pods_it_deleted(cluster, namespace, pool):
    rollout = pool(2, 1)
    target, spare = rollout.nodes
    hold = "kubeops.test/hold"
    # db's budget refuses eviction (stage 2 deletes it); held's pod never goes (a finalizer), so the
    # drain is still not finished at the final timeout
    pinned(cluster, namespace, target, spare, "db", "held", finalizers={"held": [hold]})
    cluster.policy.create_namespaced_pod_disruption_budget(namespace, {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "db"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}})
    db_pod = wait_ready_pods(cluster, namespace, "db", 1)[0].metadata.name
    db_rs = owners(cluster, namespace, "db")
    try:
        res = rollout("escalated-fails", node_maintenance_drain_timeout=5, node_maintenance_drain_final_timeout=12,
                      node_maintenance_drain_escalate_delete=True)
        assert res.returncode != 0
        assert "not finished at the final timeout (12s)" in res.stdout, res.stdout[-4000:]
        record = node_record(cluster, target)
        assert (record["phase"], record["status"]) == ("drain", "failed"), record
        assert {(namespace, "ReplicaSet", name) for name in db_rs} <= moved(record), record.get("moved_workloads")
        stages = rollout.report("escalated-fails")["nodes"][0]["drain_stages"]
        assert [s["stage"] for s in stages] == ["evict", "delete"]
        assert "%s/%s" % (namespace, db_pod) in stages[1]["deleted"], stages
        assert stages[1]["outcome"].startswith("still not drained at the final timeout"), stages
    finally:
        for pod in cluster.core.list_namespaced_pod(namespace, label_selector="app=held").items:
            cluster.core.patch_namespaced_pod(pod.metadata.name, namespace, {"metadata": {"finalizers": None}})


# ------------------------------------------------------------------------------------------------
# reboot only when required, reboot proof
# ------------------------------------------------------------------------------------------------

def test_reboot_if_required_skips_nodes_that_need_nothing_before_draining(cluster, namespace, pool, tmp_path):
    rollout = pool(3, 2)
    quiet, due = rollout.nodes[:2]
    flags = tmp_path / "flags"
    flags.mkdir()
    (flags / due).write_text("")
    res = rollout("if-required", node_maintenance_action="reboot_if_required",
                  node_maintenance_reboot_required_command=["test", "-e", str(flags) + "/{{ inventory_hostname }}"],
                  node_maintenance_reboot_required_on_controller=True,
                  node_maintenance_reboot_require_new_boot_id=True)
    report = {n["node"]: n for n in rollout.report("if-required")["nodes"]}
    assert report[quiet]["status"] == "skipped" and report[quiet]["reboot_required"] is False
    assert report[quiet]["message"].startswith("no reboot required, not drained: `test -e "), report[quiet]
    assert untouched(cluster, quiet), "a node that needs no reboot is not drained"
    # the node that needs one is drained and goes on to the reboot, which this kwok node cannot do:
    # it has no host, and (with the reboot proof on) no boot ID to prove a reboot by
    assert report[due]["reboot_required"] is True and report[due]["phases"].get("drain") is not None
    assert res.returncode != 0
    kwok_boot_id = cluster.core.read_node(due).status.node_info.boot_id
    if kwok_boot_id:
        assert "Reach the host before the reboot" in report[due]["failed_task"], report[due]
    else:
        assert report[due]["failed_task"].startswith("Reboot proof"), report[due]
        assert "cannot be proven" in report[due]["message"]
    assert node_record(cluster, due)["phase"] == "action"
