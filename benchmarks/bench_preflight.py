"""Benchmark of k8s_node_preflight on a big kwok cluster (not a test: it prints figures).

Builds, on the local control plane (tests/testbed/cluster.py, started here unless --kubeconfig
names a running one), 1,000 kwok nodes and then grows the pods in steps (3k, 10k, 30k by
default). After each step it runs the module several times as a child process and prints its wall
time, CPU time, peak memory (VmHWM of the child) and list calls.

How the pods are made quickly but realistically: Deployments (100 replicas each) with
``schedulerName: bench-binder``, so the real Deployment and ReplicaSet controllers create the pods
with real owner chains, defaults and managedFields, and the default scheduler leaves them alone;
this script then binds them round-robin to the nodes through the ``pods/binding`` subresource, many
in parallel, which is much faster than the scheduler on a 2-core machine. kwok then marks them
Running and Ready. A few PodDisruptionBudgets give the pdb check real work.

    python3 benchmarks/bench_preflight.py                    # fresh cluster, 1000 nodes, 3k/10k/30k pods
    python3 benchmarks/bench_preflight.py --pods 3000 --nodes 200 --runs 1
    python3 benchmarks/bench_preflight.py --kubeconfig ~/.cache/.../run/cluster/kubeconfig --keep

Targets (issue 5): at most 5 s and 400 MB at 30k pods, cost growing linearly with pods.
"""
import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from tests.conftest import COLLECTIONS_ROOT  # noqa: E402  (makes the collection tree importable)

MODULE = os.path.join(REPO_ROOT, "plugins", "modules", "k8s_node_preflight.py")
CLUSTER_PY = os.path.join(REPO_ROOT, "tests", "testbed", "cluster.py")
NAMESPACE = "bench-preflight"
SCHEDULER = "bench-binder"
REPLICAS_PER_DEPLOYMENT = 100


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def parallel(fn, items, workers):
    """Run fn over items on a thread pool; returns the number of failures (first few are logged)."""
    failures = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for outcome in pool.map(lambda item: _attempt(fn, item), items):
            if outcome is not None:
                failures.append(outcome)
    for failure in failures[:3]:
        log("  failed: %s" % failure)
    return len(failures)


def _attempt(fn, item):
    for attempt in range(5):
        try:
            fn(item)
            return None
        except Exception as exc:  # noqa: BLE001 - retried, then counted
            status = getattr(exc, "status", None)
            if status == 409:
                return None  # already there (a retried create, or a bind that already happened)
            if attempt == 4:
                return "%s: %s" % (item, str(exc)[:200])
            time.sleep(0.2 * (attempt + 1))
    return None


def retried(call, attempts=10):
    """A list call on a busy API server: retry 429/5xx (e.g. 504 "Too large resource version")."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001
            if attempt == attempts - 1 or (getattr(exc, "status", 0) or 0) not in (429, 500, 503, 504):
                raise
            time.sleep(1)


class Bench:
    def __init__(self, kubeconfig, workers):
        from kubernetes import client, config

        self.kubeconfig = kubeconfig
        self.workers = workers
        configuration = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        configuration.connection_pool_maxsize = workers * 2
        self.api_client = client.ApiClient(configuration)
        self.core = client.CoreV1Api(self.api_client)
        self.apps = client.AppsV1Api(self.api_client)
        self.policy = client.PolicyV1Api(self.api_client)
        self.nodes = []
        self.deployments = 0
        self.lock = threading.Lock()

    # -- raw list helper (counts without building model objects) -------------------------------
    def list_raw(self, function, **kwargs):
        items, token = [], None
        while True:
            page = json.loads(retried(lambda: function(limit=500, _continue=token, _preload_content=False,
                                                       **kwargs).data))
            items.extend(page.get("items") or ())
            token = page["metadata"].get("continue")
            if not token:
                return items

    # -- nodes ---------------------------------------------------------------------------------
    def create_nodes(self, count):
        started = time.monotonic()
        self.nodes = ["bench-node-%04d" % i for i in range(count)]

        def create(name):
            capacity = {"cpu": "32", "memory": "256Gi", "pods": "110"}
            self.core.create_node({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"},
                             "labels": {"kubernetes.io/hostname": name, "type": "kwok",
                                        "topology.kubernetes.io/zone": "zone-%d" % (int(name[-4:]) % 3)}},
                "spec": {},
                "status": {"capacity": capacity, "allocatable": capacity},
            }, _preload_content=False)

        failed = parallel(create, self.nodes, self.workers)
        created = time.monotonic() - started

        def all_ready():
            ready = 0
            for node in self.list_raw(self.core.list_node, label_selector="type=kwok"):
                if node["metadata"]["name"].startswith("bench-node-") and any(
                        c.get("type") == "Ready" and c.get("status") == "True"
                        for c in (node.get("status") or {}).get("conditions") or ()):
                    ready += 1
            return ready

        # kwok heart-beats every node; on a busy 2-core machine some flap to NotReady now and
        # then, which only removes them from the capacity check's candidates.
        ready = all_ready()
        while ready < count * 0.95:
            if time.monotonic() - started > 600:
                raise SystemExit("only %d of %d nodes Ready after 600 s" % (ready, count))
            time.sleep(2)
            ready = all_ready()
        log("%d nodes created in %.1f s (%d failures), %d Ready after %.1f s"
            % (count, created, failed, ready, time.monotonic() - started))
        return time.monotonic() - started

    # -- pods ----------------------------------------------------------------------------------
    def ensure_namespace(self):
        try:
            self.core.create_namespace({"metadata": {"name": NAMESPACE}})
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "status", None) != 409:
                raise
        deadline = time.monotonic() + 60
        while True:
            try:
                self.core.read_namespaced_service_account("default", NAMESPACE)
                return
            except Exception:  # noqa: BLE001
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def deployment(self, index, replicas):
        name = "app-%04d" % index
        return {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {
                "replicas": replicas,
                "revisionHistoryLimit": 2,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name, "tier": "tier-%d" % (index % 5)}},
                    "spec": {
                        "schedulerName": SCHEDULER,
                        "containers": [{
                            "name": "app", "image": "registry.invalid/bench/app-%d:1.%d" % (index % 50, index),
                            "ports": [{"containerPort": 8080, "name": "http"}],
                            "env": [{"name": "APP", "value": name}, {"name": "LOG_LEVEL", "value": "info"}],
                            "resources": {"requests": {"cpu": "%dm" % (50 + 10 * (index % 10)),
                                                       "memory": "%dMi" % (64 + 32 * (index % 8))},
                                          "limits": {"memory": "1Gi"}},
                        }],
                        "terminationGracePeriodSeconds": 5,
                    },
                },
            },
        }

    def grow_to(self, total_pods, wait_running=True):
        """Add Deployments until their replicas add up to total_pods; bind and wait for them."""
        started = time.monotonic()
        have = self.deployments * REPLICAS_PER_DEPLOYMENT
        bodies = []
        while have < total_pods:
            replicas = min(REPLICAS_PER_DEPLOYMENT, total_pods - have)
            bodies.append(self.deployment(self.deployments, replicas))
            self.deployments += 1
            have += replicas
        parallel(lambda body: self.apps.create_namespaced_deployment(NAMESPACE, body, _preload_content=False),
                 bodies, self.workers)
        # One PDB per 10 Deployments, allowing 1 disruption.
        parallel(lambda name: self.policy.create_namespaced_pod_disruption_budget(NAMESPACE, {
            "metadata": {"name": name},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": name}}},
        }, _preload_content=False), [body["metadata"]["name"] for body in bodies[::10]], self.workers)
        bound = self.bind_all(total_pods, started)
        created = time.monotonic() - started
        if not wait_running:
            log("%d pods: created and bound in %.1f s (%d binds); %d Running so far"
                % (total_pods, created, bound, self.count_pods(field_selector="status.phase=Running")))
            return created
        running = self.wait_running(total_pods, started)
        log("%d pods: created and bound in %.1f s (%d binds), Running in %.1f s"
            % (total_pods, created, bound, running))
        return running

    def bind_all(self, total_pods, started):
        """Bind every pending pod of our scheduler, round-robin over the nodes."""
        binds = 0
        cursor = [0]

        def bind(pod_name):
            with self.lock:
                node = self.nodes[cursor[0] % len(self.nodes)]
                cursor[0] += 1
            self.core.create_namespaced_pod_binding(pod_name, NAMESPACE, {
                "apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod_name},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}, _preload_content=False)

        idle_rounds = 0
        while True:
            pending = [p["metadata"]["name"] for p in self.list_raw(
                self.core.list_namespaced_pod, namespace=NAMESPACE,
                field_selector="spec.nodeName=,spec.schedulerName=%s" % SCHEDULER)]
            if pending:
                idle_rounds = 0
                parallel(bind, pending, self.workers)
                binds += len(pending)
                continue
            count = self.count_pods(field_selector="spec.nodeName!=")
            if count >= total_pods:
                return binds
            idle_rounds += 1
            if time.monotonic() - started > 1800:
                raise SystemExit("only %d of %d pods bound after 30 min" % (count, total_pods))
            time.sleep(min(2.0, 0.2 * idle_rounds))

    def count_pods(self, **kwargs):
        count, token = 0, None
        while True:
            page = json.loads(retried(lambda: self.core.list_namespaced_pod(
                NAMESPACE, limit=5000, _continue=token, _preload_content=False, **kwargs).data))
            count += len(page.get("items") or ())
            token = page["metadata"].get("continue")
            if not token:
                return count

    def wait_running(self, total_pods, started):
        while True:
            running = self.count_pods(field_selector="status.phase=Running")
            if running >= total_pods:
                return time.monotonic() - started
            if time.monotonic() - started > 1800:
                # The pods exist and are bound: the module lists and checks them whatever their phase,
                # so measure anyway (the table's "running" column says how many were Running) rather
                # than lose the step and the ones measured before it.
                log("only %d of %d pods Running after 30 min (kwok is behind on a busy machine): "
                    "measuring anyway" % (running, total_pods))
                return time.monotonic() - started
            time.sleep(3)


# Runs the module in a child and records the child's own high-water RSS (VmHWM) when it exits.
# ru_maxrss from wait4 is no good here: Linux carries the parent's peak across fork/vfork + exec,
# so it reports this script's size once the script has listed 30k pods itself.
_LAUNCHER = """
import atexit, runpy, sys
out, module, args = sys.argv[1:4]
def record():
    with open('/proc/self/status') as status, open(out, 'w') as handle:
        handle.write(''.join(line for line in status if line.startswith(('VmHWM', 'VmRSS'))))
atexit.register(record)
sys.argv = [module, args]
runpy.run_path(module, run_name='__main__')
"""


def run_module_measured(kubeconfig, node, page_size):
    """Run the module as a child process; returns (wall s, the child's peak RSS in MB, result
    dict, the child's CPU seconds)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": {"name": [node], "kubeconfig": kubeconfig, "fail_on": [],
                                           "page_size": page_size}}, handle)
        args_path = handle.name
    out_path = args_path + ".out"
    mem_path = args_path + ".mem"
    env = dict(os.environ, PYTHONPATH=COLLECTIONS_ROOT)
    started = time.monotonic()
    with open(out_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER, mem_path, MODULE, args_path], stdout=out,
                                stderr=subprocess.DEVNULL, env=env)
        _pid, _status, rusage = os.wait4(proc.pid, 0)
        proc.returncode = 0  # reaped by wait4; keep Popen from waiting again
    wall = time.monotonic() - started
    with open(out_path) as handle:
        text = handle.read()
    with open(mem_path) as handle:
        peak_kb = int([line.split()[1] for line in handle if line.startswith("VmHWM")][0])
    for path in (args_path, out_path, mem_path):
        os.unlink(path)
    try:
        result = json.loads(text)
    except ValueError:
        raise SystemExit("module output is not JSON:\n%s" % text[-3000:])
    return wall, peak_kb / 1024.0, result, rusage.ru_utime + rusage.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--kubeconfig", help="use this running cluster instead of starting one")
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", default="3000,10000,30000", help="comma-separated pod totals, ascending")
    parser.add_argument("--runs", type=int, default=3, help="module runs per step (median reported)")
    parser.add_argument("--workers", type=int, default=24, help="parallel API requests during setup")
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    parser.add_argument("--no-wait-running", dest="wait_running", action="store_false",
                        help="measure once pods are bound, without waiting for kwok to mark them Running "
                             "(on a busy machine kwok takes minutes per 10k pods)")
    args = parser.parse_args()
    steps = [int(x) for x in args.pods.split(",")]

    state = None
    kubeconfig = args.kubeconfig
    setup_started = time.monotonic()
    if not kubeconfig:
        cache = subprocess.run(["bash", "-c", 'source "$1"; echo "$TESTBED_CACHE"', "v",
                                os.path.join(REPO_ROOT, "tests", "testbed", "versions.sh")],
                               check=True, capture_output=True, text=True).stdout.strip()
        os.makedirs(os.path.join(cache, "run"), exist_ok=True)
        state = tempfile.mkdtemp(prefix="bench-preflight-", dir=os.path.join(cache, "run"))
        subprocess.run([sys.executable, CLUSTER_PY, "up", "--state", state], check=True, stdout=subprocess.DEVNULL)
        kubeconfig = os.path.join(state, "kubeconfig")
        log("cluster up in %.1f s" % (time.monotonic() - setup_started))
    rows = []
    try:
        bench = Bench(kubeconfig, args.workers)
        bench.ensure_namespace()
        node_seconds = bench.create_nodes(args.nodes)
        target = bench.nodes[0]
        for total in steps:
            setup = bench.grow_to(total, args.wait_running)
            running = bench.count_pods(field_selector="status.phase=Running")
            runs = [run_module_measured(kubeconfig, target, args.page_size) for _run in range(args.runs)]
            walls = [r[0] for r in runs]
            peaks = [r[1] for r in runs]
            cpus = [r[3] for r in runs]
            result = runs[-1][2]
            if result.get("failed"):
                raise SystemExit("module failed: %s" % result.get("msg"))
            snap = result["snapshot"]
            rows.append({
                "pods": total, "setup_s": setup, "wall_s": statistics.median(walls), "wall_min_s": min(walls),
                "peak_mb": max(peaks), "cpu_s": statistics.median(cpus), "load": os.getloadavg()[0],
                "list_calls": snap["list_calls"], "snapshot_s": snap["seconds"],
                "pods_seen": snap["pods"], "running": running, "nodes_seen": snap["nodes"],
                "statuses": {c: r["status"] for c, r in result["checks"].items()},
                "findings": sum(len(r["findings"]) for r in result["checks"].values()),
            })
            log("%d pods: module %.2f s (min %.2f, cpu %.2f), peak %.0f MB, %d list calls, load %.1f"
                % (total, rows[-1]["wall_s"], rows[-1]["wall_min_s"], rows[-1]["cpu_s"], rows[-1]["peak_mb"],
                   snap["list_calls"], rows[-1]["load"]))
    finally:
        if state and not args.keep:
            subprocess.run([sys.executable, CLUSTER_PY, "down", "--state", state], check=False)
            subprocess.run(["rm", "-rf", state], check=False)
        elif state:
            log("cluster kept: %s" % kubeconfig)

    print()
    print("k8s_node_preflight on %d kwok nodes, draining %s (module run as a child process, %d runs each)"
          % (args.nodes, "bench-node-0000", args.runs))
    print("nodes created and Ready in %.1f s" % node_seconds)
    print("%8s %10s %9s %9s %9s %9s %11s %11s %6s %9s  %s" % (
        "pods", "setup s", "wall s", "min s", "cpu s", "peak MB", "list calls", "snapshot s", "load", "running",
        "checks"))
    for row in rows:
        print("%8d %10.1f %9.2f %9.2f %9.2f %9.0f %11d %11.2f %6.1f %9d  %s" % (
            row["pods"], row["setup_s"], row["wall_s"], row["wall_min_s"], row["cpu_s"], row["peak_mb"],
            row["list_calls"], row["snapshot_s"], row["load"], row["running"], " ".join("%s=%s" % kv for kv in sorted(row["statuses"].items()))))
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        print("wall time grew %.1fx for %.1fx the pods (below the pod ratio: fixed costs)"
              % (last["wall_s"] / first["wall_s"], float(last["pods"]) / first["pods"]))
        print("per 1k pods: wall %s; cpu %s" % (
            ", ".join("%.3f s" % (r["wall_s"] / r["pods"] * 1000) for r in rows),
            ", ".join("%.3f s" % (r["cpu_s"] / r["pods"] * 1000) for r in rows)))
    big = rows[-1]
    print("targets at %d pods: wall <= 5 s: %s (%.2f s); peak <= 400 MB: %s (%.0f MB)" % (
        big["pods"], "met" if big["wall_s"] <= 5 else "MISSED", big["wall_s"],
        "met" if big["peak_mb"] <= 400 else "MISSED", big["peak_mb"]))


if __name__ == "__main__":
    main()
