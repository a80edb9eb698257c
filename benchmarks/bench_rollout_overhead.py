"""Rollout overhead benchmark: what the role costs per node beyond the work itself.

Not a test. Runs ``playbooks/rolling-maintenance.yml`` with action ``none`` over empty kwok nodes
(nothing to drain, nothing to wait for), once with an older checkout of the collection (``--old``,
a git ref, default the last commit before the redesign of issue #19) and once with this working
tree, on the same local control plane in one run, and beside them the commands a user would run
by hand (``kubectl cordon``, ``drain``, ``uncordon``) and the floor: the same API requests sent
directly over one kept-alive connection.

Per node it prints:
  module runs   tasks that ran a module process (a kubeops module, ``command``, ``template``...;
                not ``set_fact``, ``debug``, includes, skipped tasks)
  wall          the node's time in the play, its first task's start to its last task's end
  overhead      wall minus the waits (the drain's, the Ready waits', the health gate's own reported
                seconds, and reboots/pauses whole): what the role itself costs
The timings come from the benchmark's callback (benchmarks/callback_plugins/task_timeline.py).

    python benchmarks/bench_rollout_overhead.py                      # start a cluster, run, stop it
    python benchmarks/bench_rollout_overhead.py --nodes 5 --old 50e0218 --kubeconfig KUBECONFIG
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTBED = os.path.join(REPO, "tests", "testbed")
sys.path.insert(0, REPO)
from tests.conftest import COLLECTIONS_ROOT, ensure_collection_tree  # noqa: E402
from tests.integration.conftest import _testbed_paths, node_manifest  # noqa: E402

# The last commit before issue #19's redesign began.
DEFAULT_OLD = "50e0218"
# Tasks that run no module process of their own (action plugins that work in the controller's
# Python, and the playbook's own control flow).
NO_PROCESS = {
    "ansible.builtin.debug", "ansible.builtin.set_fact", "ansible.builtin.assert", "ansible.builtin.fail",
    "ansible.builtin.include_tasks", "ansible.builtin.import_tasks", "ansible.builtin.include_role",
    "ansible.builtin.import_role", "ansible.builtin.include_vars", "ansible.builtin.meta",
    "ansible.builtin.set_stats", "ansible.builtin.validate_argument_spec", "ansible.builtin.pause",
    "debug", "set_fact", "assert", "fail", "include_tasks", "include_role", "meta", "validate_argument_spec",
    # an action plugin that writes on the controller in its own process
    "kubeops.node_maintenance.rollout_report",
}
# Waits: the module's own reported seconds are the wait, the rest is overhead.
REPORTED_WAITS = {"k8s_node_drain", "k8s_node_wait", "k8s_workloads_healthy", "k8s_cluster_guard"}
# Waits as a whole.
WHOLE_WAITS = {"ansible.builtin.reboot", "ansible.builtin.wait_for_connection", "ansible.builtin.pause",
               "ansible.builtin.wait_for"}


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


class Bench:
    def __init__(self, kubeconfig, bin_dir, workdir):
        self.kubeconfig = kubeconfig
        self.kubectl_bin = os.path.join(bin_dir, "kubectl")
        self.workdir = workdir

    def kubectl(self, *args, stdin=None):
        res = subprocess.run([self.kubectl_bin, "--kubeconfig", self.kubeconfig] + list(args), input=stdin,
                             capture_output=True, text=True, timeout=300, check=False)
        if res.returncode:
            raise SystemExit("kubectl %s failed: %s" % (" ".join(args), res.stderr.strip()))
        return res.stdout

    def make_nodes(self, prefix, count):
        names = ["%s-%d" % (prefix, i) for i in range(1, count + 1)]
        self.kubectl("apply", "-f", "-", stdin=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": [node_manifest(n, labels={"bench": "overhead"}) for n in names]}))
        self.kubectl("wait", "--for=condition=Ready", "--timeout=120s", *["node/%s" % n for n in names])
        return names

    def delete_nodes(self, names):
        self.kubectl("delete", "node", "--wait=false", *names)

    def rollout(self, label, collections_root, playbook, nodes):
        """Run the playbook over ``nodes``; per-node figures from the task timeline."""
        timeline = os.path.join(self.workdir, "%s.timeline.jsonl" % label)
        inventory = os.path.join(self.workdir, "%s.inventory.json" % label)
        hosts = {n: {"ansible_host": "127.0.0.1", "ansible_port": 1, "node_maintenance_action": "none"}
                 for n in nodes}
        with open(inventory, "w") as handle:
            json.dump({"all": {"children": {"k8s_nodes": {"hosts": hosts}}}}, handle)
        env = dict(os.environ, K8S_AUTH_KUBECONFIG=self.kubeconfig, ANSIBLE_COLLECTIONS_PATH=collections_root,
                   ANSIBLE_CALLBACK_PLUGINS=os.path.join(REPO, "benchmarks", "callback_plugins"),
                   ANSIBLE_CALLBACKS_ENABLED="task_timeline", KUBEOPS_TIMELINE=timeline,
                   ANSIBLE_NOCOLOR="1", ANSIBLE_HOST_KEY_CHECKING="False")
        env.pop("ANSIBLE_CONFIG", None)
        extra = {"node_maintenance_rollout_id": "bench-%s-%s" % (label, uuid.uuid4().hex[:6]),
                 "node_maintenance_report_dir": os.path.join(self.workdir, "reports-" + label),
                 "node_maintenance_lock_namespace": "default"}
        started = time.monotonic()
        res = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory,
                              playbook, "-e", json.dumps(extra)], env=env, cwd=self.workdir,
                             capture_output=True, text=True, check=False)
        total = time.monotonic() - started
        if res.returncode:
            raise SystemExit("%s rollout failed (rc %d):\n%s\n%s"
                             % (label, res.returncode, res.stdout[-4000:], res.stderr[-2000:]))
        with open(timeline) as handle:
            entries = [json.loads(line) for line in handle]
        return per_node(entries, nodes), total

    def by_hand(self, nodes):
        """kubectl cordon, drain and uncordon of each node, as a user would type them."""
        walls = []
        for name in nodes:
            started = time.monotonic()
            self.kubectl("cordon", name)
            self.kubectl("drain", name, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=120s")
            self.kubectl("uncordon", name)
            walls.append(time.monotonic() - started)
        return walls

    def floor(self, nodes):
        """The API requests of cordon, a pod list and uncordon over one kept-alive connection."""
        from kubernetes import client, config

        api = client.CoreV1Api(config.new_client_from_config(config_file=self.kubeconfig))
        walls = []
        for name in nodes:
            started = time.monotonic()
            api.patch_node(name, {"spec": {"unschedulable": True}})
            api.list_pod_for_all_namespaces(field_selector="spec.nodeName=%s" % name)
            api.patch_node(name, {"spec": {"unschedulable": None}})
            walls.append(time.monotonic() - started)
        return walls


def per_node(entries, nodes):
    figures = {}
    for name in nodes:
        mine = [e for e in entries if e["host"] == name and e["start"] is not None]
        runs = [e for e in mine if e["status"] != "skipped" and e["action"] not in NO_PROCESS]
        waited = 0.0
        for entry in runs:
            short = entry["action"].rsplit(".", 1)[-1]
            if short in REPORTED_WAITS:
                waited += float(entry.get("seconds") or 0)
            elif entry["action"] in WHOLE_WAITS:
                waited += entry["end"] - entry["start"]
        wall = max(e["end"] for e in mine) - min(e["start"] for e in mine)
        figures[name] = {"module_runs": len(runs), "wall": wall, "overhead": wall - waited,
                         "modules": sorted({e["action"] for e in runs})}
    return figures


def export_checkout(ref, dest):
    """``ref`` of this repository as a collection tree under ``dest``; returns its collections root."""
    tree = os.path.join(dest, "ansible_collections", "kubeops", "node_maintenance")
    os.makedirs(tree)
    archive = subprocess.run(["git", "-C", REPO, "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
    return dest, os.path.join(tree, "playbooks", "rolling-maintenance.yml")


def median(values):
    return statistics.median(values) if values else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--kubeconfig", help="use this running cluster instead of starting one")
    parser.add_argument("--nodes", type=int, default=5, help="kwok nodes per rollout (serial 1)")
    parser.add_argument("--old", default=DEFAULT_OLD, help="git ref of the older checkout")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    cache, bin_dir = _testbed_paths()
    os.makedirs(os.path.join(cache, "run"), exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="bench-overhead-", dir=os.path.join(cache, "run"))
    state = None
    kubeconfig = args.kubeconfig
    if not kubeconfig:
        state = os.path.join(workdir, "cluster")
        log("starting a control plane in %s" % state)
        kubeconfig = subprocess.run([sys.executable, os.path.join(TESTBED, "cluster.py"), "up", "--state", state],
                                    check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    ensure_collection_tree()
    bench = Bench(kubeconfig, bin_dir, workdir)
    old_root, old_playbook = export_checkout(args.old, os.path.join(workdir, "old"))
    rows = []
    try:
        for label, root, playbook in (("old %s" % args.old, old_root, old_playbook),
                                      ("new (working tree)", COLLECTIONS_ROOT,
                                       os.path.join(REPO, "playbooks", "rolling-maintenance.yml"))):
            key = label.split()[0]
            nodes = bench.make_nodes("ovh-%s-%s" % (key, uuid.uuid4().hex[:4]), args.nodes)
            log("%s: rollout over %d nodes" % (label, len(nodes)))
            figures, total = bench.rollout(key, root, playbook, nodes)
            bench.delete_nodes(nodes)
            values = list(figures.values())
            rows.append({"tool": "kubeops " + label, "nodes": len(nodes), "total": total,
                         "module_runs": median([v["module_runs"] for v in values]),
                         "wall": median([v["wall"] for v in values]),
                         "overhead": median([v["overhead"] for v in values]),
                         "modules": values[0]["modules"]})
        for label, method in (("kubectl cordon+drain+uncordon", bench.by_hand), ("floor (3 API requests)", bench.floor)):
            nodes = bench.make_nodes("ovh-%s-%s" % (label.split()[0], uuid.uuid4().hex[:4]), args.nodes)
            walls = method(nodes)
            bench.delete_nodes(nodes)
            rows.append({"tool": label, "nodes": len(nodes), "total": sum(walls), "module_runs": None,
                         "wall": median(walls), "overhead": median(walls)})
    finally:
        if state:
            subprocess.run([sys.executable, os.path.join(TESTBED, "cluster.py"), "down", "--state", state],
                           check=False, capture_output=True)
    new, old = rows[1], rows[0]
    print("\nRollout overhead, action none, empty kwok nodes, serial 1 (medians per node; %s)" % time.strftime("%F %T"))
    print("%-34s %5s %12s %9s %13s %13s" % ("tool", "nodes", "module runs", "wall s", "overhead s", "new ÷ this"))
    for row in rows:
        print("%-34s %5d %12s %9.2f %13.2f %13s" % (
            row["tool"], row["nodes"], "-" if row["module_runs"] is None else "%g" % row["module_runs"],
            row["wall"], row["overhead"], "%.2f" % (new["overhead"] / row["overhead"]) if row["overhead"] else "-"))
    print("\nnew overhead is %.0f%% of old; module runs per node %g -> %g"
          % (100.0 * new["overhead"] / old["overhead"], old["module_runs"], new["module_runs"]))
    print("modules run per node (new): %s" % ", ".join(new["modules"]))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
