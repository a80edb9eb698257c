"""Drain benchmark: kubeops.node_maintenance.k8s_node_drain vs kubectl drain vs kubernetes.core.k8s_drain.

Not a test. Runs on the local control plane of tests/testbed (started here unless --kubeconfig
names a running one), with kwok nodes, and prints for every tool and scenario the wall time and
the API requests the API server counted (``apiserver_request_total`` deltas from /metrics).

Scenarios (fresh namespace and nodes for every run, so no run sees another's leftovers):
  pods-300  one node with 300 pods of one Deployment, no PodDisruptionBudget
  pdb-60    one node with 60 pods: 6 Deployments of 10, each behind a PDB with maxUnavailable 1
Replacements land on two spare nodes that are uncordoned just before the drain.

Besides the three tools, ``floor`` (pods-300 only) is no tool at all: every eviction sent at once
over kept-alive connections, timed from the first eviction to the last pod deleted (seen by a
watch). It is what the control plane itself needs on this machine, so the report can say how close
each tool comes to it and how much faster than another tool any tool could possibly be here.

Wall time is the whole command as a user runs it (``ansible localhost -m ...`` for both modules,
so Ansible's start-up is included for both; the kubeops module also reports its own seconds).

Request counts: the metrics have no client label, so the table shows the requests only a drain
client makes (evictions, pod GETs, pod/PDB lists, node GET/PATCH, discovery) and, separately, the
total over all components (controllers, scheduler and kwok react to every eviction the same way,
whatever tool caused it). Left out of the client column: pod DELETEs (kwok deletes every
terminating pod, which drowns a drain client's own deletes) and PDB LISTs (the API server's
eviction handler lists the namespace's PDBs for every eviction, over its loopback client).

    python benchmarks/bench_drain.py                       # start a cluster, run everything, stop it
    python benchmarks/bench_drain.py --kubeconfig ~/.cache/kubeops-node-maintenance/run/cluster/kubeconfig
    python benchmarks/bench_drain.py --scenarios pods-300 --tools kubeops,kubectl
"""

import argparse
import http.client
import json
import threading
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, urlsplit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTBED = os.path.join(REPO, "tests", "testbed")
sys.path.insert(0, REPO)
from tests.conftest import COLLECTIONS_ROOT  # noqa: E402  (also builds the collection symlink tree)
from tests.integration.conftest import _testbed_paths  # noqa: E402  (the test bed's cache and binaries)

KWOK_ANNOTATION = {"kwok.x-k8s.io/node": "fake"}
TOOLS = ("kubeops", "kubectl", "k8s_drain", "floor")
SCENARIOS = ("pods-300", "pdb-60")
METRIC_RE = re.compile(r'^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$')
LABEL_RE = re.compile(r'(\w+)="([^"]*)"')


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# --- cluster access ---------------------------------------------------------------------------

class Cluster:
    def __init__(self, kubeconfig, bin_dir):
        self.kubeconfig = kubeconfig
        self.kubectl_bin = os.path.join(bin_dir, "kubectl")
        with open(kubeconfig) as handle:
            config = json.load(handle)
        self.server = config["clusters"][0]["cluster"]["server"]
        self._ctx = self._ssl_context(config)

    def _ssl_context(self, config):
        import base64

        tmp = tempfile.mkdtemp(prefix="bench-tls-")
        paths = {}
        user = config["users"][0]["user"]
        for key, data in (("ca", config["clusters"][0]["cluster"]["certificate-authority-data"]),
                          ("crt", user["client-certificate-data"]), ("key", user["client-key-data"])):
            paths[key] = os.path.join(tmp, key)
            with open(paths[key], "wb") as handle:
                handle.write(base64.b64decode(data))
            os.chmod(paths[key], 0o600)
        ctx = ssl.create_default_context(cafile=paths["ca"])
        ctx.load_cert_chain(paths["crt"], paths["key"])
        return ctx

    def kubectl(self, *args, input=None, check=True, timeout=600):
        res = subprocess.run([self.kubectl_bin, "--kubeconfig", self.kubeconfig] + list(args), input=input,
                             capture_output=True, text=True, timeout=timeout, check=False)
        if check and res.returncode:
            raise SystemExit("kubectl %s failed: %s" % (" ".join(args), res.stderr))
        return res

    def get_json(self, path):
        with urllib.request.urlopen(self.server + path, context=self._ctx, timeout=30) as resp:
            return json.load(resp)

    def metrics(self):
        """apiserver_request_total as a Counter keyed by (verb, resource/subresource)."""
        with urllib.request.urlopen(self.server + "/metrics", context=self._ctx, timeout=30) as resp:
            text = resp.read().decode()
        counts = Counter()
        for line in text.splitlines():
            match = METRIC_RE.match(line)
            if not match:
                continue
            labels = dict(LABEL_RE.findall(match.group(1)))
            resource = labels.get("resource") or "(non-resource)"
            if labels.get("subresource"):
                resource += "/" + labels["subresource"]
            counts[(labels.get("verb"), resource)] += float(match.group(2))
        return counts

    def apply(self, objects):
        self.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))


# --- scenario set-up --------------------------------------------------------------------------

def node_manifest(name, labels, unschedulable=False, pods="500"):
    capacity = {"cpu": "500", "memory": "2Ti", "pods": pods}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": dict(KWOK_ANNOTATION),
                         "labels": dict(labels, **{"kubernetes.io/hostname": name, "type": "kwok"})},
            "spec": {"unschedulable": unschedulable},
            "status": {"capacity": capacity, "allocatable": capacity}}


def deployment(namespace, name, replicas, node_selector):
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}],
                                           "nodeSelector": node_selector}}}}


def pdb(namespace, name):
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name, "namespace": namespace},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": name}}}}


def wait(what, predicate, timeout=300, interval=0.5):
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise SystemExit("set-up timed out waiting for %s" % what)
        time.sleep(interval)


def ready_pods_on(cluster, namespace, node):
    pods = cluster.get_json("/api/v1/namespaces/%s/pods?fieldSelector=spec.nodeName%%3D%s" % (namespace, node))["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])]


def set_up(cluster, scenario):
    run_id = uuid.uuid4().hex[:6]
    namespace = "bench-%s-%s" % (scenario, run_id)
    group = {"bench-group": namespace}
    node = "bench-%s-%s-target" % (scenario, run_id)
    spares = ["bench-%s-%s-spare-%d" % (scenario, run_id, i) for i in range(2)]
    cluster.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
                   node_manifest(node, group)] + [node_manifest(s, group, unschedulable=True) for s in spares])
    wait("serviceaccount", lambda: cluster.kubectl("-n", namespace, "get", "sa", "default", check=False).returncode == 0)
    if scenario == "pods-300":
        total = 300
        cluster.apply([deployment(namespace, "web", total, group)])
        budgets = []
    else:
        total = 60
        budgets = ["svc-%d" % i for i in range(6)]
        cluster.apply([deployment(namespace, name, 10, group) for name in budgets]
                      + [pdb(namespace, name) for name in budgets])
    wait("%d ready pods on %s" % (total, node), lambda: len(ready_pods_on(cluster, namespace, node)) == total)
    for name in budgets:
        wait("pdb %s settled" % name, lambda name=name: (
            cluster.get_json("/apis/policy/v1/namespaces/%s/poddisruptionbudgets/%s" % (namespace, name))
            .get("status", {}).get("disruptionsAllowed") == 1))
    for spare in spares:
        cluster.kubectl("uncordon", spare)
    return {"namespace": namespace, "node": node, "spares": spares, "pods": total}


def tear_down(cluster, setup):
    # Namespace first, while kwok still runs the nodes' pods to their end; a pod left on a deleted
    # node stays Terminating until the pod garbage collector gets to it, and loads the next run.
    cluster.kubectl("delete", "namespace", setup["namespace"], "--timeout=300s", check=False, timeout=400)
    cluster.kubectl("delete", "node", setup["node"], *setup["spares"], "--wait=false", check=False)


# --- the tools --------------------------------------------------------------------------------

def ansible_env(cluster):
    env = dict(os.environ)
    env.update({"ANSIBLE_COLLECTIONS_PATH": COLLECTIONS_ROOT, "K8S_AUTH_KUBECONFIG": cluster.kubeconfig,
                "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
                "ANSIBLE_NOCOLOR": "1", "ANSIBLE_DEPRECATION_WARNINGS": "False",
                "ANSIBLE_PYTHON_INTERPRETER": sys.executable, "ANSIBLE_LOCALHOST_WARNING": "False",
                "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False"})
    return env


def run_ansible_module(cluster, fqcn, args, timeout):
    ansible = os.path.join(os.path.dirname(sys.executable), "ansible")
    started = time.monotonic()
    res = subprocess.run([ansible, "localhost", "-c", "local", "-m", fqcn, "-a", json.dumps(args)],
                         capture_output=True, text=True, env=ansible_env(cluster), timeout=timeout, check=False)
    wall = time.monotonic() - started
    try:
        result = json.loads(res.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError):
        result = {"failed": True, "msg": (res.stdout + res.stderr)[-500:]}
    return wall, result


def run_floor(cluster, node, timeout, concurrency=50):
    """Not a drain tool: what this control plane needs to evict a node's pods and see them gone.

    Every eviction is sent at once (``concurrency`` in flight over kept-alive connections, no
    classification, no retries, no start-up), and a watch opened before the first one records when
    the last pod is deleted. The wall time is first eviction sent -> last pod deleted: a floor for
    any client on this machine, since the API server, etcd, the controllers, the scheduler and
    kwok (deleting the pods and starting their replacements) do the same work whoever asks.
    Only for scenarios without budgets (a 429 would need a retry policy, i.e. a drain tool).
    """
    cluster.kubectl("cordon", node)   # one PATCH, like every tool's own cordon; not timed
    listed = cluster.get_json("/api/v1/pods?fieldSelector=spec.nodeName%%3D%s" % node)
    keys = [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in listed["items"]]
    remaining = set(keys)
    split = urlsplit(cluster.server)
    done = threading.Event()
    last_deleted = [None]

    def watch():
        version = listed["metadata"]["resourceVersion"]
        deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < deadline:
            # A watch can end early (the server closes it, or answers "too old"): list again
            # (whatever is gone by then went meanwhile) and watch on from the new list.
            conn = http.client.HTTPSConnection(split.hostname, split.port, context=cluster._ctx, timeout=timeout)
            conn.request("GET", "/api/v1/pods?watch=1&fieldSelector=spec.nodeName%%3D%s&resourceVersion=%s"
                         % (node, version))
            for line in conn.getresponse():
                event = json.loads(line)
                meta = event["object"].get("metadata") or {}
                if event["type"] == "DELETED":
                    remaining.discard((meta.get("namespace"), meta.get("name")))
                    if not remaining:
                        last_deleted[0] = time.monotonic()
                        break
                elif event["type"] == "ERROR":
                    break
                version = meta.get("resourceVersion") or version
            conn.close()
            if remaining:
                again = cluster.get_json("/api/v1/pods?fieldSelector=spec.nodeName%%3D%s" % node)
                remaining.intersection_update((p["metadata"]["namespace"], p["metadata"]["name"])
                                              for p in again["items"])
                version = again["metadata"]["resourceVersion"]
                if not remaining:
                    last_deleted[0] = time.monotonic()
        done.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(0.5)  # the watch is open before the first eviction
    local = threading.local()
    answers = Counter()

    def evict(key):
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPSConnection(split.hostname, split.port, context=cluster._ctx,
                                                            timeout=60)
        body = json.dumps({"apiVersion": "policy/v1", "kind": "Eviction",
                           "metadata": {"namespace": key[0], "name": key[1]}})
        conn.request("POST", "/api/v1/namespaces/%s/pods/%s/eviction" % (quote(key[0]), quote(key[1])), body=body,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        answers[resp.status] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(evict, keys))
    accepted = time.monotonic() - started
    done.wait(timeout)
    if last_deleted[0] is None:
        return timeout, False, "%d pods not deleted within %ds; answers %s" % (len(remaining), timeout, dict(answers))
    wall = last_deleted[0] - started
    return wall, True, "not a tool: every eviction at once; all %d answered in %.2fs (%s), last pod deleted at %.2fs" % (
        len(keys), accepted, ", ".join("%d x %s" % (n, code) for code, n in sorted(answers.items())), wall)


def run_tool(cluster, tool, node, timeout):
    """Returns (wall seconds, ok, note)."""
    if tool == "kubeops":
        wall, result = run_ansible_module(cluster, "kubeops.node_maintenance.k8s_node_drain", {
            "name": node, "ignore_daemonsets": True, "delete_emptydir_data": True, "timeout": timeout}, timeout + 60)
        note = "module's own time %.2fs; its request count %s" % (
            result.get("seconds", 0), sum((result.get("api_requests") or {}).values()))
        return wall, not result.get("failed"), note if not result.get("failed") else result.get("msg", "")[:300]
    if tool == "kubectl":
        started = time.monotonic()
        res = cluster.kubectl("drain", node, "--ignore-daemonsets", "--delete-emptydir-data",
                              "--timeout=%ds" % timeout, check=False, timeout=timeout + 60)
        wall = time.monotonic() - started
        retries = res.stderr.count("will retry after")
        return wall, res.returncode == 0, ("429 retries logged: %d" % retries) if res.returncode == 0 else res.stderr[-300:]
    if tool == "k8s_drain":
        # wait_timeout makes it confirm the pods are gone (without it the module returns after
        # sending the evictions); wait_sleep 1 is its fastest setting.
        wall, result = run_ansible_module(cluster, "kubernetes.core.k8s_drain", {
            "name": node, "state": "drain",
            "delete_options": {"ignore_daemonsets": True, "delete_emptydir_data": True,
                               "wait_timeout": timeout, "wait_sleep": 1}}, timeout + 120)
        return wall, not result.get("failed"), result.get("result", "") if not result.get("failed") else \
            result.get("msg", "")[:300]
    if tool == "floor":
        return run_floor(cluster, node, timeout)
    raise ValueError(tool)


CLIENT_ROWS = (
    ("evict", ("POST", "pods/eviction")),
    ("get pod", ("GET", "pods")),
    ("list pods", ("LIST", "pods")),
    ("get node", ("GET", "nodes")),
    ("patch node", ("PATCH", "nodes")),
    ("discovery", ("GET", "(non-resource)")),
)


def summarize(delta):
    client = dict((name, int(delta.get(key, 0))) for name, key in CLIENT_ROWS)
    client["total"] = sum(client.values())
    return client, int(sum(delta.values()))


def measure(cluster, scenario, tool, timeout):
    setup = set_up(cluster, scenario)
    try:
        time.sleep(1.0)  # let the set-up's own requests settle out of the counters
        before = cluster.metrics()
        wall, ok, note = run_tool(cluster, tool, setup["node"], timeout)
        after = cluster.metrics()
        left = len(ready_pods_on(cluster, setup["namespace"], setup["node"]))
    finally:
        tear_down(cluster, setup)
    delta = Counter(dict((k, after[k] - before.get(k, 0)) for k in after if after[k] - before.get(k, 0) > 0))
    client, total = summarize(delta)
    return {"scenario": scenario, "tool": tool, "wall": wall, "ok": ok and left == 0, "left": left,
            "note": note, "client": client, "all_requests": total}


# --- report -----------------------------------------------------------------------------------

def medians(results):
    """One row per scenario and tool: the run with the (lower) median wall time; every round's
    wall time is listed in the note."""
    groups = {}
    for r in results:
        groups.setdefault((r["scenario"], r["tool"]), []).append(r)
    rows = []
    for key in sorted(groups, key=lambda k: (SCENARIOS.index(k[0]) if k[0] in SCENARIOS else 9,
                                             TOOLS.index(k[1]) if k[1] in TOOLS else 9)):
        runs = sorted(groups[key], key=lambda r: r["wall"])
        row = dict(runs[(len(runs) - 1) // 2])
        row["ok"] = all(r["ok"] for r in runs)
        if len(runs) > 1:
            row["note"] = "median of %s; %s" % (", ".join("%.1f" % r["wall"] for r in runs), row["note"])
        rows.append(row)
    return rows


def report(results):
    print()
    print("%-9s %-10s %9s %4s %8s %8s %6s %6s %9s  %s" % (
        "scenario", "tool", "wall s", "ok", "client", "evict", "get", "list", "all reqs", "note"))
    for r in results:
        c = r["client"]
        print("%-9s %-10s %9.2f %4s %8d %8d %6d %6d %9d  %s" % (
            r["scenario"], r["tool"], r["wall"], "yes" if r["ok"] else "NO", c["total"], c["evict"], c["get pod"],
            c["list pods"], r["all_requests"], r["note"]))
    print()
    by = dict(((r["scenario"], r["tool"]), r) for r in results)
    for scenario in SCENARIOS:
        ours = by.get((scenario, "kubeops"))
        if not ours:
            continue
        parts = []
        for tool in ("kubectl", "k8s_drain"):
            other = by.get((scenario, tool))
            if not other:
                continue
            status = "" if other["ok"] else " (it did not finish the drain)"
            parts.append("kubeops/%s wall %.3fx (%s is %.1fx slower), client requests %d vs %d%s" % (
                tool, ours["wall"] / other["wall"], tool, other["wall"] / ours["wall"],
                ours["client"]["total"], other["client"]["total"], status))
        print("%-9s %s" % (scenario, "; ".join(parts)))
        floor, slow = by.get((scenario, "floor")), by.get((scenario, "k8s_drain"))
        own = re.search(r"module's own time ([0-9.]+)s", ours["note"])
        if floor and floor["ok"] and own:
            start_up = ours["wall"] - float(own.group(1))
            print("%-9s floor (the control plane with every eviction sent at once, no tool) %.2fs: the module's own "
                  "%.2fs is %.2fx the floor; with the %.2fs kubeops spent outside the module (Ansible, Python, "
                  "imports), no tool run by Ansible could take less than %.2fs here%s" % (
                      scenario, floor["wall"], float(own.group(1)), float(own.group(1)) / floor["wall"], start_up,
                      floor["wall"] + start_up,
                      ", i.e. at most %.1fx faster than k8s_drain" % (slow["wall"] / (floor["wall"] + start_up))
                      if slow and slow["ok"] else ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--kubeconfig", help="use this running cluster instead of starting one")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--timeout", type=int, default=900, help="drain timeout for every tool (s)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds; the tools take turns in every round and the table shows medians "
                             "(a shared machine's load changes from minute to minute)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    cache, bin_dir = _testbed_paths()
    state = None
    kubeconfig = args.kubeconfig
    if not kubeconfig:
        os.makedirs(os.path.join(cache, "run"), exist_ok=True)
        state = tempfile.mkdtemp(prefix="bench-", dir=os.path.join(cache, "run"))
        log("starting a control plane in %s" % state)
        kubeconfig = subprocess.run([sys.executable, os.path.join(TESTBED, "cluster.py"), "up", "--state", state],
                                    check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    results = []
    try:
        cluster = Cluster(kubeconfig, bin_dir)
        for round_no in range(args.repeat):
            for scenario in args.scenarios.split(","):
                for tool in args.tools.split(","):
                    if tool == "floor" and scenario != "pods-300":
                        continue  # behind budgets a floor would need a retry policy: a drain tool
                    log("round %d, %s: %s" % (round_no + 1, scenario, tool))
                    result = measure(cluster, scenario, tool, args.timeout)
                    log("  %.2fs ok=%s client requests=%d %s" % (
                        result["wall"], result["ok"], result["client"]["total"], result["note"]))
                    results.append(result)
    finally:
        if state:
            subprocess.run([sys.executable, os.path.join(TESTBED, "cluster.py"), "down", "--state", state],
                           check=False, capture_output=True)
            shutil.rmtree(state, ignore_errors=True)
    report(medians(results))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
