"""Start and stop the local Kubernetes control plane the tests and the demo run on.

Real components, built by ``build-binaries.sh`` and cached outside the repo: etcd,
kube-apiserver (RBAC + Node authorization, service-account keys, client-certificate admin,
bootstrap tokens), kube-controller-manager (all default controllers, short node-monitor grace
period, signing kubelet certificates), kube-scheduler, and kwok simulating the kubelets of nodes
annotated ``kwok.x-k8s.io/node=fake``.

Real kubelets (the "containerd" test hosts) join by TLS bootstrap, as on a kubeadm cluster: ``up``
creates a bootstrap token and the RBAC bindings kubeadm makes for ``system:bootstrappers``, and
writes ``bootstrap-kubelet.kubeconfig`` (that token) beside the admin kubeconfig; the
controller-manager approves and signs the kubelets' client certificate requests.

    cluster.py up   [--state DIR]   start (or report the one already running); prints the kubeconfig
    cluster.py down [--state DIR]   stop exactly the processes ``up`` started (pid files); safe twice
    cluster.py status [--state DIR]
    cluster.py stop-apiserver  [--state DIR]   stop only kube-apiserver (fault injection)
    cluster.py start-apiserver [--state DIR]   start it again, same ports, certificates and flags

Only the Python standard library and ``openssl`` are used, so it runs before any virtualenv exists.
Everything listens on 127.0.0.1 only, on free ports chosen at start, so several clusters (for
example two pytest sessions) can run side by side.
"""
import argparse
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))

# Annotation that marks the nodes the cluster's own kwok simulates. Test hosts run their own kwok
# (as their kubelet) for the single node they are, and do not carry it.
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_NODE_ANNOTATION_VALUE = "fake"
# How long the node lifecycle controller waits for a heartbeat before it marks a node NotReady.
NODE_MONITOR_GRACE_PERIOD = "20s"
KWOK_LEASE_SECONDS = 10
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def log(msg):
    print("[cluster %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def read_versions():
    """Evaluate versions.sh so Python and shell agree on the cache layout."""
    out = subprocess.run(
        ["bash", "-c", 'source "$1"; printf "%s\\n%s\\n%s\\n%s\\n" "$TESTBED_CACHE" "$TESTBED_BIN" "$TESTBED_STAGES" "$K8S_VERSION"',
         "versions", os.path.join(HERE, "versions.sh")],
        check=True, capture_output=True, text=True).stdout.splitlines()
    return {"cache": out[0], "bin": out[1], "stages": out[2], "k8s_version": out[3]}


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True)


def make_pki(pki):
    """CA, serving cert, client certs for each identity, service-account key pair."""
    os.makedirs(pki, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
            "-keyout", f"{pki}/ca.key", "-out", f"{pki}/ca.crt", "-subj", "/CN=kubeops-testbed-ca")
    openssl("genrsa", "-out", f"{pki}/sa.key", "2048")
    openssl("rsa", "-in", f"{pki}/sa.key", "-pubout", "-out", f"{pki}/sa.pub")
    # 10.0.2.2 / 10.0.2.100 are how QEMU test hosts (user-mode networking) reach this API server.
    san = ("subjectAltName=IP:127.0.0.1,IP:10.0.2.2,IP:10.0.2.100,IP:10.96.0.1,DNS:localhost,"
           "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc")
    identities = {
        "apiserver": ("/CN=kube-apiserver", san),
        "admin": ("/O=system:masters/CN=kubeops-testbed-admin", None),
        "controller-manager": ("/CN=system:kube-controller-manager", None),
        "scheduler": ("/CN=system:kube-scheduler", None),
        "kwok": ("/O=system:masters/CN=kwok-controller", None),
        "apiserver-kubelet-client": ("/O=system:masters/CN=kube-apiserver-kubelet-client", None),
    }
    for name, (subject, ext) in identities.items():
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{pki}/{name}.key",
                "-out", f"{pki}/{name}.csr", "-subj", subject)
        extfile = f"{pki}/{name}.ext"
        with open(extfile, "w") as handle:
            handle.write((ext or "extendedKeyUsage=clientAuth") + "\n")
            if ext:
                handle.write("extendedKeyUsage=serverAuth\n")
        openssl("x509", "-req", "-in", f"{pki}/{name}.csr", "-CA", f"{pki}/ca.crt",
                "-CAkey", f"{pki}/ca.key", "-CAcreateserial", "-days", "3650",
                "-out", f"{pki}/{name}.crt", "-extfile", extfile)
    for path in os.listdir(pki):
        if path.endswith(".key"):
            os.chmod(os.path.join(pki, path), 0o600)


def write_kubeconfig(path, server, pki, user, token=None):
    """A kubeconfig with embedded data (not paths), so the file can be handed to test hosts and to
    AWX-like runners: the client certificate of ``user``, or ``token`` when given."""

    def b64(name):
        with open(os.path.join(pki, name), "rb") as handle:
            return base64.b64encode(handle.read()).decode()

    config = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "kubeops-testbed", "cluster": {
            "server": server, "certificate-authority-data": b64("ca.crt")}}],
        "users": [{"name": user, "user": {"token": token} if token else {
            "client-certificate-data": b64(f"{user}.crt"), "client-key-data": b64(f"{user}.key")}}],
        "contexts": [{"name": "kubeops-testbed", "context": {"cluster": "kubeops-testbed", "user": user}}],
        "current-context": "kubeops-testbed",
    }
    with open(path, "w") as handle:
        json.dump(config, handle, indent=1)
    os.chmod(path, 0o600)


def write_kwok_config(path, stages_dir):
    """kwok options plus the stages: node init, heartbeat via Lease, pods become Ready fast."""
    parts = [
        "apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\noptions:\n"
        f"  nodeLeaseDurationSeconds: {KWOK_LEASE_SECONDS}\n"
        # kwok only applies its defaults when no configuration file is given: spell them out.
        "  nodeLeaseParallelism: 8\n  podPlayStageParallelism: 8\n  nodePlayStageParallelism: 4\n"
        "  podsOnNodeSyncParallelism: 2\n  enablePodsOnNodeSyncListPager: true\n"
        "  enablePodsOnNodeSyncStreamWatch: false\n  enableDebuggingHandlers: false\n"
        "  enableProfilingHandler: false\n  enableContentionProfiling: false\n"
    ]
    for rel in ("node/fast/node-initialize.yaml",
                "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
                "pod/fast/pod-ready.yaml", "pod/fast/pod-complete.yaml", "pod/fast/pod-delete.yaml"):
        with open(os.path.join(stages_dir, rel)) as handle:
            parts.append(handle.read())
    with open(path, "w") as handle:
        handle.write("\n---\n".join(part.strip("\n-") + "\n" for part in parts))


def bootstrap_objects(token_id, token_secret):
    """The bootstrap token Secret and the RBAC bindings kubeadm creates for TLS bootstrap: tokens'
    group ``system:bootstrappers`` may create node client certificate requests, which the
    controller-manager's approver approves, and nodes may renew their own certificates."""
    def b64(text):
        return base64.b64encode(text.encode()).decode()

    def binding(name, role, group):
        return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}]}

    secret = {"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
              "metadata": {"name": "bootstrap-token-" + token_id, "namespace": "kube-system"},
              "data": {"token-id": b64(token_id), "token-secret": b64(token_secret),
                       "usage-bootstrap-authentication": b64("true"), "usage-bootstrap-signing": b64("true"),
                       "description": b64("kubeops test bed: kubelets join by TLS bootstrap")}}
    approve = "system:certificates.k8s.io:certificatesigningrequests:"
    return [
        ("/api/v1/namespaces/kube-system/secrets", secret),
        ("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
         binding("kubeops-testbed:kubelet-bootstrap", "system:node-bootstrapper", "system:bootstrappers")),
        ("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
         binding("kubeops-testbed:node-autoapprove-bootstrap", approve + "nodeclient", "system:bootstrappers")),
        ("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
         binding("kubeops-testbed:node-autoapprove-certificate-rotation", approve + "selfnodeclient", "system:nodes")),
    ]


def create_objects(server, ctx, objects):
    """POST each (collection path, object); one that exists already (409) is left as it is."""
    for path, obj in objects:
        req = urllib.request.Request(server + path, data=json.dumps(obj).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=30):
                pass
        except urllib.error.HTTPError as exc:
            if exc.code != 409:
                raise SystemExit("creating %s %s: %s %s" % (obj["kind"], obj["metadata"]["name"], exc.code,
                                                            exc.read()[:500].decode(errors="replace")))


def pid_alive(pid, binary):
    """True when pid runs ``binary`` (guards against a recycled pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv0 = handle.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return False
    return os.path.basename(argv0) == os.path.basename(binary)


def start(state, name, argv):
    logs = os.path.join(state, "logs")
    os.makedirs(logs, exist_ok=True)
    # The command line is kept so one component can be stopped and started again (fault tests).
    os.makedirs(os.path.join(state, "argv"), exist_ok=True)
    with open(os.path.join(state, "argv", name + ".json"), "w") as handle:
        json.dump(argv, handle)
    with open(os.path.join(logs, name + ".log"), "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=state)
    with open(os.path.join(state, "pids", name + ".pid"), "w") as handle:
        handle.write("%d %s\n" % (proc.pid, argv[0]))
    return proc


def wait_http(url, ctx, what, timeout, proc, state, name):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with code {proc.returncode}; see {state}/logs/{name}.log:\n"
                             + tail(os.path.join(state, "logs", name + ".log")))
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=3) as resp:
                if resp.status == 200:
                    return
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last = exc
        time.sleep(0.5)
    raise SystemExit(f"{what} not ready after {timeout}s ({last}); see {state}/logs/{name}.log:\n"
                     + tail(os.path.join(state, "logs", name + ".log")))


def tail(path, lines=15):
    try:
        with open(path, errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""


def admin_ssl_context(pki):
    ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
    ctx.load_cert_chain(os.path.join(pki, "admin.crt"), os.path.join(pki, "admin.key"))
    return ctx


def read_env(state):
    try:
        with open(os.path.join(state, "cluster.json")) as handle:
            return json.load(handle)
    except OSError:
        return None


def running(state):
    pids_dir = os.path.join(state, "pids")
    alive = {}
    if os.path.isdir(pids_dir):
        for entry in os.listdir(pids_dir):
            with open(os.path.join(pids_dir, entry)) as handle:
                pid, binary = handle.read().split(None, 1)
            if pid_alive(int(pid), binary.strip()):
                alive[entry[:-4]] = int(pid)
    return alive


def up(state, node_monitor_grace_period=NODE_MONITOR_GRACE_PERIOD):
    versions = read_versions()
    bindir = versions["bin"]
    if not os.path.exists(os.path.join(bindir, "kube-apiserver")):
        raise SystemExit(f"control plane binaries missing in {bindir}; run tests/testbed/build-binaries.sh")
    alive = running(state)
    if alive and len(alive) == len(COMPONENTS):
        log("already running: " + ", ".join(sorted(alive)))
        print(os.path.join(state, "kubeconfig"))
        return
    if alive:
        log("partly running (%s); stopping it first" % ", ".join(sorted(alive)))
        down(state)
    started = time.monotonic()
    if os.path.isdir(state):
        shutil.rmtree(state)
    pki = os.path.join(state, "pki")
    os.makedirs(os.path.join(state, "pids"))
    log("certificates")
    make_pki(pki)
    ports = {name: free_port() for name in ("etcd", "etcd_peer", "apiserver", "kcm", "scheduler", "kwok")}
    server = "https://127.0.0.1:%d" % ports["apiserver"]
    for user in ("admin", "controller-manager", "scheduler", "kwok"):
        write_kubeconfig(os.path.join(state, user + ".kubeconfig"), server, pki, user)
    os.replace(os.path.join(state, "admin.kubeconfig"), os.path.join(state, "kubeconfig"))
    kubeconfig = os.path.join(state, "kubeconfig")
    ctx = admin_ssl_context(pki)
    procs = {}
    try:
        log("etcd on 127.0.0.1:%d" % ports["etcd"])
        etcd_url = "http://127.0.0.1:%d" % ports["etcd"]
        peer_url = "http://127.0.0.1:%d" % ports["etcd_peer"]
        procs["etcd"] = start(state, "etcd", [
            os.path.join(bindir, "etcd"), "--name", "testbed", "--data-dir", os.path.join(state, "etcd"),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", "testbed=" + peer_url, "--unsafe-no-fsync",
            "--quota-backend-bytes", str(4 * 1024 ** 3), "--log-level", "warn"])
        wait_http(etcd_url + "/health", None, "etcd", 60, procs["etcd"], state, "etcd")

        log("kube-apiserver on %s" % server)
        procs["kube-apiserver"] = start(state, "kube-apiserver", [
            os.path.join(bindir, "kube-apiserver"),
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
            "--secure-port", str(ports["apiserver"]), "--etcd-servers", etcd_url,
            "--tls-cert-file", f"{pki}/apiserver.crt", "--tls-private-key-file", f"{pki}/apiserver.key",
            "--client-ca-file", f"{pki}/ca.crt",
            "--kubelet-client-certificate", f"{pki}/apiserver-kubelet-client.crt",
            "--kubelet-client-key", f"{pki}/apiserver-kubelet-client.key",
            "--service-account-key-file", f"{pki}/sa.pub",
            "--service-account-signing-key-file", f"{pki}/sa.key",
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--authorization-mode", "Node,RBAC", "--service-cluster-ip-range", "10.96.0.0/16",
            "--enable-bootstrap-token-auth=true",
            "--allow-privileged=true", "--enable-priority-and-fairness=false",
            "--max-requests-inflight", "2000", "--max-mutating-requests-inflight", "1000",
            "--profiling=false", "--v", "1"])
        wait_http(server + "/readyz", ctx, "kube-apiserver", 120, procs["kube-apiserver"], state,
                  "kube-apiserver")
        token_id, token_secret = random_token(6), random_token(16)
        create_objects(server, ctx, bootstrap_objects(token_id, token_secret))
        write_kubeconfig(os.path.join(state, "bootstrap-kubelet.kubeconfig"), server, pki, "kubelet-bootstrap",
                         token="%s.%s" % (token_id, token_secret))

        log("kube-controller-manager")
        procs["kube-controller-manager"] = start(state, "kube-controller-manager", [
            os.path.join(bindir, "kube-controller-manager"),
            "--kubeconfig", os.path.join(state, "controller-manager.kubeconfig"),
            "--authentication-kubeconfig", os.path.join(state, "controller-manager.kubeconfig"),
            "--authorization-kubeconfig", os.path.join(state, "controller-manager.kubeconfig"),
            "--bind-address", "127.0.0.1", "--secure-port", str(ports["kcm"]),
            "--leader-elect=false", "--controllers", "*", "--use-service-account-credentials=true",
            "--service-account-private-key-file", f"{pki}/sa.key", "--root-ca-file", f"{pki}/ca.crt",
            "--cluster-signing-cert-file", f"{pki}/ca.crt", "--cluster-signing-key-file", f"{pki}/ca.key",
            "--node-monitor-grace-period", node_monitor_grace_period, "--node-monitor-period", "2s",
            "--kube-api-qps", "500", "--kube-api-burst", "1000", "--concurrent-replicaset-syncs", "10",
            "--concurrent-deployment-syncs", "10", "--v", "1"])
        log("kube-scheduler")
        procs["kube-scheduler"] = start(state, "kube-scheduler", [
            os.path.join(bindir, "kube-scheduler"),
            "--kubeconfig", os.path.join(state, "scheduler.kubeconfig"),
            "--authentication-kubeconfig", os.path.join(state, "scheduler.kubeconfig"),
            "--authorization-kubeconfig", os.path.join(state, "scheduler.kubeconfig"),
            "--bind-address", "127.0.0.1", "--secure-port", str(ports["scheduler"]),
            "--leader-elect=false", "--kube-api-qps", "500", "--kube-api-burst", "1000", "--v", "1"])
        kwok_config = os.path.join(state, "kwok.yaml")
        write_kwok_config(kwok_config, versions["stages"])
        log("kwok (nodes annotated %s=%s)" % (KWOK_NODE_ANNOTATION, KWOK_NODE_ANNOTATION_VALUE))
        procs["kwok"] = start(state, "kwok", [
            os.path.join(bindir, "kwok"), "--kubeconfig", os.path.join(state, "kwok.kubeconfig"),
            "--config", kwok_config,
            "--manage-nodes-with-annotation-selector",
            "%s=%s" % (KWOK_NODE_ANNOTATION, KWOK_NODE_ANNOTATION_VALUE),
            "--server-address", "127.0.0.1:%d" % ports["kwok"],
            "--node-lease-duration-seconds", str(KWOK_LEASE_SECONDS), "--cidr", "10.244.0.0/16"])
        wait_http("https://127.0.0.1:%d/healthz" % ports["kcm"], _insecure(),
                  "kube-controller-manager", 60, procs["kube-controller-manager"], state,
                  "kube-controller-manager")
        wait_http("https://127.0.0.1:%d/healthz" % ports["scheduler"], _insecure(), "kube-scheduler", 60,
                  procs["kube-scheduler"], state, "kube-scheduler")
        wait_http("http://127.0.0.1:%d/healthz" % ports["kwok"], None, "kwok", 60, procs["kwok"], state,
                  "kwok")
        wait_default_serviceaccount(bindir, kubeconfig)
    except BaseException:
        log("start failed; stopping what was started")
        down(state)
        raise
    env = {"server": server, "kubeconfig": kubeconfig, "bin_dir": bindir, "state": state,
           "bootstrap_kubeconfig": os.path.join(state, "bootstrap-kubelet.kubeconfig"),
           "ports": ports, "k8s_version": versions["k8s_version"],
           "kwok_node_annotation": {KWOK_NODE_ANNOTATION: KWOK_NODE_ANNOTATION_VALUE}}
    with open(os.path.join(state, "cluster.json"), "w") as handle:
        json.dump(env, handle, indent=1)
    log("ready in %.1fs; kubeconfig: %s" % (time.monotonic() - started, kubeconfig))
    print(kubeconfig)


def random_token(length):
    """A bootstrap token part: [a-z0-9]{length}."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _position in range(length))


def _insecure():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def wait_default_serviceaccount(bindir, kubeconfig, timeout=60):
    """Pods need the namespace's default ServiceAccount, made by the controller-manager."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = subprocess.run([os.path.join(bindir, "kubectl"), "--kubeconfig", kubeconfig, "-n", "default",
                              "get", "serviceaccount", "default", "-o", "name"], capture_output=True, check=False)
        if res.returncode == 0:
            return
        time.sleep(0.5)
    raise SystemExit("the controller-manager did not create serviceaccount default/default in %ds" % timeout)


def down(state):
    pids_dir = os.path.join(state, "pids")
    if not os.path.isdir(pids_dir):
        log("nothing to stop in %s" % state)
        return
    # Reverse start order: kwok and controllers first, etcd last.
    for name in reversed(COMPONENTS):
        pidfile = os.path.join(pids_dir, name + ".pid")
        if not os.path.exists(pidfile):
            continue
        with open(pidfile) as handle:
            pid, binary = handle.read().split(None, 1)
        pid = int(pid)
        if pid_alive(pid, binary.strip()):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while pid_alive(pid, binary.strip()) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_alive(pid, binary.strip()):
                os.kill(pid, signal.SIGKILL)
            log("stopped %s (pid %d)" % (name, pid))
        os.unlink(pidfile)


def _component_pid(state, name):
    """(pid, binary) of a running component started by ``up``, or None."""
    pidfile = os.path.join(state, "pids", name + ".pid")
    try:
        with open(pidfile) as handle:
            pid, binary = handle.read().split(None, 1)
    except OSError:
        return None
    return (int(pid), binary.strip()) if pid_alive(int(pid), binary.strip()) else None


def stop_apiserver(state):
    """Stop only kube-apiserver (SIGTERM, then SIGKILL after 3 s); the rest keeps running and
    retries, as in a control-plane outage. Its command line is kept for ``start_apiserver``."""
    found = _component_pid(state, "kube-apiserver")
    if found is None:
        log("kube-apiserver is not running in %s" % state)
        return
    pid, binary = found[0], found[1]
    argv_file = os.path.join(state, "argv", "kube-apiserver.json")
    if not os.path.exists(argv_file):  # a cluster started before command lines were kept
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            argv = [part.decode() for part in handle.read().split(b"\0") if part]
        os.makedirs(os.path.dirname(argv_file), exist_ok=True)
        with open(argv_file, "w") as handle:
            json.dump(argv, handle)
    os.kill(pid, signal.SIGTERM)
    # It waits for long-running watches on SIGTERM; an outage is not a graceful shutdown.
    deadline = time.monotonic() + 3
    while pid_alive(pid, binary) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid, binary):
        os.kill(pid, signal.SIGKILL)
        while pid_alive(pid, binary):
            time.sleep(0.1)
    log("stopped kube-apiserver (pid %d)" % pid)


def start_apiserver(state, timeout=180):
    """Start kube-apiserver again with the command line it had (same port, certificates, etcd)
    and wait until it is ready."""
    if _component_pid(state, "kube-apiserver") is not None:
        log("kube-apiserver already running")
        return
    with open(os.path.join(state, "argv", "kube-apiserver.json")) as handle:
        argv = json.load(handle)
    env = read_env(state)
    proc = start(state, "kube-apiserver", argv)
    # The port may still be in TIME_WAIT for a moment; the API server retries binding itself.
    wait_http(env["server"] + "/readyz", admin_ssl_context(os.path.join(state, "pki")), "kube-apiserver",
              timeout, proc, state, "kube-apiserver")
    log("kube-apiserver running again (pid %d)" % proc.pid)


def status(state):
    alive = running(state)
    env = read_env(state)
    for name in COMPONENTS:
        print("%-24s %s" % (name, ("running pid %d" % alive[name]) if name in alive else "stopped"))
    if env:
        print("kubeconfig: %s\nserver: %s" % (env["kubeconfig"], env["server"]))
    return 0 if len(alive) == len(COMPONENTS) else 1


def default_state():
    return os.path.join(read_versions()["cache"], "run", "cluster")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("action", choices=("up", "down", "status", "stop-apiserver", "start-apiserver"))
    parser.add_argument("--state", help="state directory (default: ~/.cache/kubeops-node-maintenance/run/cluster)")
    parser.add_argument("--node-monitor-grace-period", default=NODE_MONITOR_GRACE_PERIOD,
                        help="up: how long a node may miss heartbeats before it is NotReady (default %(default)s); "
                             "longer for API server outage tests, since nodes cannot heartbeat meanwhile")
    args = parser.parse_args(argv)
    state = os.path.abspath(args.state or default_state())
    if args.action == "up":
        up(state, args.node_monitor_grace_period)
    elif args.action == "down":
        down(state)
    elif args.action == "stop-apiserver":
        stop_apiserver(state)
    elif args.action == "start-apiserver":
        start_apiserver(state)
    else:
        return status(state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
