"""Smoke run of one "containerd" test host (a real kubelet on containerd) against a control plane.

Boots one host of the containerd flavour, waits until its kubelet has joined by TLS bootstrap and
the node is Ready, runs a Deployment (two replicas) and a DaemonSet of the test bed's app image on
it and waits until their pods are Ready (the kubelet's readiness probes over the CNI bridge), then
``systemctl reboot`` -> NotReady -> Ready with the pods Ready again, a restore of the snapshot taken
before the reboot (what the suite's HostPool does; unless --no-snapshot), and (unless --no-reimage) a
reimage: a fresh root whose kubelet bootstraps again. Prints what each step took, and a JSON line.

    python3 tests/testbed/cluster.py up --state /tmp/cp        # or let this script start one
    python3 tests/testbed/hosts/realnode_smoke.py --cluster-state /tmp/cp [--keep] [--no-reimage]

Run as root the first time (the image build); the image build is timed twice, the second time
from the cache.
"""
import argparse
import base64
import calendar
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTBED = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import launcher as testbed  # noqa: E402  pylint: disable=wrong-import-position

APP_LABEL = "kubeops-smoke"


def log(msg):
    print("[realnode-smoke %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


class Kubectl:
    def __init__(self, bin_dir, kubeconfig):
        self.argv = [os.path.join(bin_dir, "kubectl"), "--kubeconfig", kubeconfig]

    def __call__(self, *args, stdin=None, check=True):
        res = subprocess.run(self.argv + list(args), input=stdin, capture_output=True, text=True, check=False)
        if check and res.returncode != 0:
            raise testbed.TestbedError("kubectl %s: %s" % (" ".join(args), res.stderr.strip()))
        return res

    def json(self, *args):
        return json.loads(self(*args, "-o", "json").stdout)


def node_ready(kubectl, name):
    res = kubectl("get", "node", name, "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}', check=False)
    return res.stdout.strip() if res.returncode == 0 else None


def wait_for(what, predicate, timeout, interval=1.0):
    """Seconds until predicate() is true; TestbedError after timeout."""
    started = time.monotonic()
    while True:
        value = predicate()
        if value:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise testbed.TestbedError("%s: not after %ds" % (what, timeout))
        time.sleep(interval)


def workloads(node, image):
    """A Deployment (2 replicas, emptyDir) and a DaemonSet (hostPath), both of ``image`` on ``node``."""
    def pod_spec(volume):
        return {"nodeSelector": {"kubernetes.io/hostname": node},
                "terminationGracePeriodSeconds": 5,
                "containers": [{"name": "app", "image": image, "imagePullPolicy": "IfNotPresent",
                                "ports": [{"containerPort": 8080}],
                                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080},
                                                   "periodSeconds": 2, "failureThreshold": 2},
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                "volumes": [dict(volume, name="data")]}

    meta = {"namespace": "default", "labels": {"app": APP_LABEL}}
    selector = {"matchLabels": {"app": APP_LABEL}}
    template = {"metadata": {"labels": {"app": APP_LABEL}}}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": dict(meta, name=APP_LABEL + "-deploy"),
                  "spec": {"replicas": 2, "selector": selector,
                           "template": dict(template, spec=pod_spec({"emptyDir": {}}))}}
    daemonset = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": dict(meta, name=APP_LABEL + "-ds"),
                 "spec": {"selector": selector,
                          "template": dict(template, spec=pod_spec(
                              {"hostPath": {"path": "/var/lib/kubeops-smoke", "type": "DirectoryOrCreate"}}))}}
    return {"apiVersion": "v1", "kind": "List", "items": [deployment, daemonset]}


def pods_ready(kubectl, node, want):
    """The pods of the smoke workloads when ``want`` of them are Ready on ``node``, else None."""
    pods = kubectl.json("get", "pods", "-n", "default", "-l", "app=" + APP_LABEL)["items"]
    ready = [p for p in pods if p["spec"].get("nodeName") == node and p["metadata"].get("deletionTimestamp") is None
             and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]
    return ready if len(ready) >= want else None


def certificate_subject(pem_b64):
    res = subprocess.run(["openssl", "x509", "-noout", "-subject", "-nameopt", "RFC2253"],
                         input=base64.b64decode(pem_b64), capture_output=True, check=True)
    return res.stdout.decode().strip()


def approved_csrs(kubectl, node):
    """Names of the approved and issued client certificate requests that a bootstrap token made
    for ``node``'s kubelet (certificate subject CN=system:node:<node>)."""
    items = kubectl.json("get", "csr")["items"]
    return sorted(c["metadata"]["name"] for c in items
                  if c["spec"].get("signerName") == "kubernetes.io/kube-apiserver-client-kubelet"
                  and c["spec"].get("username", "").startswith("system:bootstrap:")
                  and c["status"].get("certificate")
                  and any(cond["type"] == "Approved" for cond in c["status"].get("conditions", []))
                  and "CN=system:node:%s" % node in certificate_subject(c["status"]["certificate"]))


def timed_image_build():
    """The image directory, its manifest, whether this call built it, and the seconds of this
    call and of a second (cached) one."""
    wall, started = time.time(), time.monotonic()
    image_dir = testbed.build_image("containerd")
    first = time.monotonic() - started
    with open(os.path.join(image_dir, "manifest.json")) as handle:
        manifest = json.load(handle)
    built_now = calendar.timegm(time.strptime(manifest["built"], "%Y-%m-%dT%H:%M:%SZ")) >= int(wall)
    started = time.monotonic()
    testbed.build_image("containerd")
    return image_dir, manifest, built_now, first, time.monotonic() - started


def start_cluster(state):
    env_path = os.path.join(state, "cluster.json")
    status = subprocess.run([sys.executable, os.path.join(TESTBED, "cluster.py"), "status", "--state", state],
                            capture_output=True, check=False)
    started = False
    if status.returncode != 0:
        log("no control plane running in %s: starting one" % state)
        subprocess.run([sys.executable, os.path.join(TESTBED, "cluster.py"), "up", "--state", state],
                       check=True, stdout=subprocess.DEVNULL)
        started = True
    with open(env_path) as handle:
        return json.load(handle), started


def reboot_cycle(launcher, kubectl, name, pods_wanted):
    """``systemctl reboot``; seconds to NotReady, to SSH on the new boot, to Ready, to pods Ready."""
    old_boot = launcher.ssh(name, "cat /proc/sys/kernel/random/boot_id").stdout.strip()
    started = time.monotonic()
    launcher.ssh(name, "systemd-run --on-active=1 systemctl reboot", check=False)
    out = {"not_ready_s": wait_for("node not Ready after the reboot", lambda: node_ready(kubectl, name) != "True", 300)}

    def new_boot():
        res = launcher.ssh(name, "cat /proc/sys/kernel/random/boot_id", check=False, timeout=30)
        return res.returncode == 0 and res.stdout.strip() != old_boot

    wait_for("SSH on the new boot", new_boot, 900, interval=2)
    out["ssh_s"] = time.monotonic() - started
    wait_for("node Ready after the reboot", lambda: node_ready(kubectl, name) == "True", 900)
    out["ready_s"] = time.monotonic() - started
    wait_for("pods Ready after the reboot", lambda: pods_ready(kubectl, name, pods_wanted), 600, interval=2)
    out["pods_ready_s"] = time.monotonic() - started
    return out


def back_again(kubectl, name, what, action):
    """Seconds from the start of ``action`` to its end (``what`` + "_s"), to the node Ready, to the
    smoke pods Ready."""
    started = time.monotonic()
    action()
    times = {what + "_s": time.monotonic() - started}
    wait_for("node Ready after the " + what, lambda: node_ready(kubectl, name) == "True", 900)
    times["ready_s"] = time.monotonic() - started
    wait_for("pods Ready after the " + what, lambda: pods_ready(kubectl, name, 3), 600, interval=2)
    times["pods_ready_s"] = time.monotonic() - started
    return {k: round(v, 1) for k, v in times.items()}


def guest_report(launcher, name):
    """The guest's memory (MB: total, used, available), the resident memory of the node's own
    processes (MB, summed by command) and how many images containerd has."""
    res = launcher.ssh(name, "echo mem $(free -m | awk '/^Mem:/{print $2, $3, $7}'); "
                             "ps -eo rss=,comm= | awk '$2 ~ /^(kubelet|containerd.*|pause|app)$/ {s[$2]+=$1} "
                             "END {for (k in s) print \"rss\", k, int(s[k]/1024)}'; "
                             "echo images $(crictl images -q | wc -l)")
    report = {"rss_mb": {}}
    for line in res.stdout.splitlines():
        kind, *values = line.split()
        if kind == "mem":
            report.update(zip(("mem_total_mb", "mem_used_mb", "mem_available_mb"), map(int, values)))
        elif kind == "rss":
            report["rss_mb"][values[0]] = int(values[1])
        elif kind == "images":
            report["images"] = int(values[0])
    return report


def run(args):
    results = {}
    image_dir, manifest, built_now, first, cached = timed_image_build()
    results["image"] = {"dir": image_dir, "first_call_s": round(first, 1), "cached_call_s": round(cached, 1),
                        "built_now": built_now, "manifest_build_seconds": manifest.get("build_seconds")}
    env, cluster_started = start_cluster(os.path.abspath(args.cluster_state))
    kubectl = Kubectl(env["bin_dir"], env["kubeconfig"])
    state = args.state or tempfile.mkdtemp(prefix="kubeops-realnode-")
    launcher = testbed.Launcher(state, kubeconfig=env["kubeconfig"], image_dir=image_dir, flavour="containerd",
                                memory_mb=args.memory)
    name = args.name
    try:
        launcher.up(name)
        info = launcher.info(name)
        launcher.wait_ssh(name)
        results["boot"] = {"ssh_s": round(time.time() - info["started"], 1)}
        wait_for("node %s Ready" % name, lambda: node_ready(kubectl, name) == "True", 900)
        results["boot"]["ready_s"] = round(time.time() - info["started"], 1)
        node = kubectl.json("get", "node", name)
        node_info = ("kubeletVersion", "containerRuntimeVersion", "osImage", "kernelVersion")
        results["node"] = {k: node["status"]["nodeInfo"][k] for k in node_info}
        results["node"]["csrs"] = approved_csrs(kubectl, name)
        results["guest_after_boot"] = guest_report(launcher, name)
        log("node %s Ready (%s); applying the workloads" % (name, results["node"]))

        kubectl("apply", "-f", "-", stdin=json.dumps(workloads(name, testbed.APP_IMAGE)))
        results["pods_ready_s"] = round(wait_for("3 pods Ready on %s" % name,
                                                 lambda: pods_ready(kubectl, name, 3), 600, interval=2), 1)
        pods = pods_ready(kubectl, name, 3)
        results["pod_ips"] = sorted(p["status"]["podIP"] for p in pods)
        pulls = kubectl.json("get", "events", "-n", "default", "--field-selector", "reason=Pulling")["items"]
        results["image_pulls"] = len(pulls)
        results["guest_with_pods"] = guest_report(launcher, name)
        log("pods Ready in %.0fs: %s" % (results["pods_ready_s"], results["pod_ips"]))

        if not args.no_snapshot:  # what the suite's HostPool does: snapshot once booted
            started = time.monotonic()
            launcher.snapshot(name)
            results["snapshot_s"] = round(time.monotonic() - started, 1)

        results["reboot"] = {k: round(v, 1) for k, v in reboot_cycle(launcher, kubectl, name, 3).items()}
        log("reboot: %s" % results["reboot"])

        if not args.no_snapshot:  # ... and restore it before each module (here: undo the reboot)
            results["restore"] = back_again(kubectl, name, "restore", lambda: launcher.restore(name))
            log("restore: %s" % results["restore"])

        if not args.no_reimage:
            csrs_before = approved_csrs(kubectl, name)
            results["reimage"] = back_again(kubectl, name, "reimage",
                                            lambda: (launcher.reimage(name), launcher.wait_ssh(name)))
            results["reimage"]["new_csrs"] = sorted(set(approved_csrs(kubectl, name)) - set(csrs_before))
            if not results["reimage"]["new_csrs"]:
                raise testbed.TestbedError("the reimaged host's kubelet is Ready without a new bootstrap CSR")
            log("reimage: %s" % results["reimage"])
    finally:
        if not args.keep:
            kubectl("delete", "deployment,daemonset", "-n", "default", "-l", "app=" + APP_LABEL,
                    "--wait=false", check=False)
            if name in launcher.names():
                launcher.destroy(name)
            kubectl("delete", "node", name, "--wait=false", check=False)
            if cluster_started:
                subprocess.run([sys.executable, os.path.join(TESTBED, "cluster.py"), "down", "--state",
                                args.cluster_state], check=False)
        else:
            log("kept: host %s in %s (launcher.py --state %s destroy %s)" % (name, state, state, name))
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--cluster-state", required=True,
                        help="state directory of a control plane (tests/testbed/cluster.py up --state DIR); "
                             "started (and stopped at the end) when none runs there")
    parser.add_argument("--state", help="the hosts' state directory (default: a new temporary one)")
    parser.add_argument("--name", default="realnode-1")
    parser.add_argument("--memory", type=int, default=testbed.DEFAULT_MEMORY_MB, help="guest RAM in MiB")
    parser.add_argument("--no-reimage", action="store_true")
    parser.add_argument("--no-snapshot", action="store_true", help="no snapshot after the boot, no restore")
    parser.add_argument("--keep", action="store_true", help="leave the host and the workloads running")
    args = parser.parse_args(argv)
    try:
        results = run(args)
    except testbed.TestbedError as exc:
        log("FAILED: %s" % exc)
        return 1
    rows = [("image build, first call (%s)" % ("cold" if results["image"]["built_now"] else "cached"),
             results["image"]["first_call_s"]),
            ("image build, cached", results["image"]["cached_call_s"]),
            ("boot to SSH", results["boot"]["ssh_s"]), ("boot to node Ready", results["boot"]["ready_s"]),
            ("workloads applied to 3 pods Ready", results["pods_ready_s"]),
            ("reboot: NotReady", results["reboot"]["not_ready_s"]), ("reboot: SSH back", results["reboot"]["ssh_s"]),
            ("reboot: Ready", results["reboot"]["ready_s"]), ("reboot: pods Ready", results["reboot"]["pods_ready_s"])]
    if "restore" in results:
        rows += [("snapshot (booted, pods Ready)", results["snapshot_s"]),
                 ("restore: machine back", results["restore"]["restore_s"]),
                 ("restore: Ready", results["restore"]["ready_s"]),
                 ("restore: pods Ready", results["restore"]["pods_ready_s"])]
    if "reimage" in results:
        rows += [("reimage: SSH", results["reimage"]["reimage_s"]), ("reimage: Ready", results["reimage"]["ready_s"]),
                 ("reimage: pods Ready", results["reimage"]["pods_ready_s"])]
    for label, seconds in rows:
        print("%-42s %7.1f s" % (label, seconds))
    print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
