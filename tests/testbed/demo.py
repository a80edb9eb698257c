"""The demo rollout: the rolling-maintenance playbook on the built-in local cluster.

Starts the local control plane (tests/testbed/cluster.py), adds kwok nodes and one QEMU test host
(tests/testbed/hosts/launcher.py: a Debian guest whose kubelet service is its node), deploys
sample workloads protected by PodDisruptionBudgets, writes an inventory and runs
``playbooks/rolling-maintenance.yml`` over two kwok nodes (action none) and the host (action
reboot, then its data disk mounted on /data and Docker's root moved onto it, as in the field
notes), then prints the rollout report. ``--hosts 0`` leaves the host out (a one-minute demo).
Run it with the project's virtualenv Python (``make demo`` does).
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, REPO)

from tests.conftest import COLLECTIONS_ROOT, ensure_collection_tree  # noqa: E402
from tests.integration.conftest import node_manifest  # noqa: E402

NAMESPACE = "demo"
NODES = ["demo-node-%d" % i for i in range(1, 5)]
HOST_PREFIX = "demo-host-"


def log(msg):
    print("[demo %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def sample_workloads():
    def deployment(name, replicas, cpu):
        labels = {"app": name}
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                         "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                             "name": name, "image": "registry.example/%s:1" % name,
                             "resources": {"requests": {"cpu": cpu, "memory": "128Mi"}}}]}}}}

    def pdb(name, **spec):
        spec["selector"] = {"matchLabels": {"app": name}}
        return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
                "spec": spec}

    return ([deployment("web", 8, "250m"), deployment("api", 4, "500m")],
            [pdb("web", maxUnavailable=1), pdb("api", minAvailable=3)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--state", help="cluster state directory (default: ~/.cache/kubeops-node-maintenance/run/demo)")
    parser.add_argument("--rollout-id", default="demo-%s" % time.strftime("%Y%m%d-%H%M%S"))
    parser.add_argument("--hosts", type=int, default=1, choices=(0, 1, 2),
                        help="QEMU test hosts in the rollout (reboot + data disk); boots take minutes")
    args = parser.parse_args()

    from kubernetes import client, config

    # A fresh cluster of its own every time, so the demo always shows the same story.
    state = ["--state", args.state or os.path.join(os.path.expanduser("~"), ".cache", "kubeops-node-maintenance",
                                                   "run", "demo")]
    cluster_py = [sys.executable, os.path.join(HERE, "cluster.py")]
    hosts_state = os.path.join(state[1] + "-hosts")
    launcher_py = [sys.executable, os.path.join(HERE, "hosts", "launcher.py"), "--state", hosts_state]
    if os.path.isdir(hosts_state):  # the previous demo's hosts (stopped by pid, disks removed)
        subprocess.run(launcher_py + ["destroy"], check=True)
    subprocess.run(cluster_py + ["down"] + state, check=True)
    kubeconfig = subprocess.run(cluster_py + ["up"] + state, check=True, stdout=subprocess.PIPE,
                                text=True).stdout.strip()
    log("cluster: %s" % kubeconfig)
    api = config.new_client_from_config(config_file=kubeconfig)
    core, apps, policy = client.CoreV1Api(api), client.AppsV1Api(api), client.PolicyV1Api(api)

    existing = {n.metadata.name for n in core.list_node().items}
    for name in NODES:
        if name not in existing:
            core.create_node(node_manifest(name, cpu="4", memory="16Gi", labels={"demo": "true"}))
    log("kwok nodes: %s" % ", ".join(NODES))
    hosts = ["%s%d" % (HOST_PREFIX, i) for i in range(1, args.hosts + 1)]
    if hosts:
        log("booting QEMU test host(s) %s (software emulation: one to a few minutes)" % ", ".join(hosts))
        subprocess.run(launcher_py + ["--kubeconfig", kubeconfig, "up"] + hosts
                       + ["--label", "demo=true", "--wait", "node", "--timeout", "900"], check=True)
    try:
        core.create_namespace({"metadata": {"name": NAMESPACE}})
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    deployments, pdbs = sample_workloads()
    for obj in deployments:
        try:
            apps.create_namespaced_deployment(NAMESPACE, obj)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
    for obj in pdbs:
        try:
            policy.create_namespaced_pod_disruption_budget(NAMESPACE, obj)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        ready = [d for d in apps.list_namespaced_deployment(NAMESPACE).items
                 if (d.status.ready_replicas or 0) == d.spec.replicas]
        if len(ready) == len(deployments):
            break
        time.sleep(1)
    else:
        raise SystemExit("sample workloads did not become ready in 180 s")
    log("workloads ready: web (8 replicas, PDB maxUnavailable 1), api (4 replicas, PDB minAvailable 3)")

    ensure_collection_tree()
    workdir = os.path.join(os.path.dirname(kubeconfig), "demo")
    os.makedirs(workdir, exist_ok=True)
    inventory = os.path.join(workdir, "inventory.yml")
    # kwok nodes have no host to log in to; action none never connects. Port 1 on loopback makes
    # any accidental connection fail instead of touching this machine. The test hosts are real
    # machines: reboot, then the field notes' data disk (/dev/vdb on /data, Docker's root moved).
    members = {name: {"ansible_host": "127.0.0.1", "ansible_port": 1, "node_maintenance_action": "none"}
               for name in NODES[:2]}
    if hosts:
        with open(subprocess.run(launcher_py + ["inventory"], check=True, stdout=subprocess.PIPE,
                                 text=True).stdout.strip()) as handle:
            import yaml

            launched = yaml.safe_load(handle)["all"]["children"]["testbed_hosts"]["hosts"]
        for name in hosts:
            members[name] = dict(launched[name], node_maintenance_action="reboot", node_maintenance_data_disks=[
                {"device": "/dev/vdb", "path": "/data", "fstype": "ext4", "runtime": "docker",
                 "data_root": "/data/docker"}])
    with open(inventory, "w") as handle:
        json.dump({"all": {"children": {"k8s_nodes": {"hosts": members}}}}, handle, indent=1)
    env = dict(os.environ, K8S_AUTH_KUBECONFIG=kubeconfig, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_ROOT,
               ANSIBLE_NOCOLOR="1", ANSIBLE_HOST_KEY_CHECKING="False")
    extra = {"node_maintenance_rollout_id": args.rollout_id,
             "node_maintenance_report_dir": os.path.join(workdir, "reports"),
             "node_maintenance_lock_namespace": "default"}
    log("ansible-playbook playbooks/rolling-maintenance.yml (rollout %s)" % args.rollout_id)
    started = time.monotonic()
    rc = subprocess.call([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                          "-i", inventory, os.path.join(REPO, "playbooks", "rolling-maintenance.yml"),
                          "-e", json.dumps(extra)], env=env, cwd=REPO)
    log("playbook exited %d after %.1fs" % (rc, time.monotonic() - started))
    report = os.path.join(workdir, "reports", args.rollout_id, "report.md")
    if os.path.exists(report):
        with open(report) as handle:
            print(handle.read())
        log("report: %s (and report.json)" % report)
    log("the demo cluster keeps running: KUBECONFIG=%s; stop it with "
        "`python3 tests/testbed/cluster.py down %s`" % (kubeconfig, " ".join(state)))
    if hosts:
        log("and its test host(s): `python3 tests/testbed/hosts/launcher.py --state %s destroy` "
            "(ssh: `... ssh %s <command>`)" % (hosts_state, hosts[0]))
    return rc


if __name__ == "__main__":
    sys.exit(main())
