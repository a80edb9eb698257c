"""Fixtures for integration tests: a real local control plane and kwok-simulated nodes.

A pytest session starts its own cluster (``tests/testbed/cluster.py up`` with a private state
directory and free loopback ports) and stops exactly that cluster at the end, unless
``KUBEOPS_TEST_KUBECONFIG`` names the kubeconfig of one that is already running (``make cluster-up``),
which is then used as it is and left running.
"""
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

from tests.conftest import COLLECTIONS_ROOT, REPO_ROOT

TESTBED = os.path.join(REPO_ROOT, "tests", "testbed")
KWOK_ANNOTATION = {"kwok.x-k8s.io/node": "fake"}
TEST_NODE_LABEL = "kubeops.test/node"


class Cluster:
    """Handles to one running control plane."""

    def __init__(self, kubeconfig, bin_dir, server):
        from kubernetes import client, config

        self.kubeconfig = kubeconfig
        self.bin_dir = bin_dir
        self.server = server
        self.api_client = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(self.api_client)
        self.apps = client.AppsV1Api(self.api_client)
        self.policy = client.PolicyV1Api(self.api_client)
        self.coordination = client.CoordinationV1Api(self.api_client)
        self.rbac = client.RbacAuthorizationV1Api(self.api_client)

    def kubectl(self, *args, check=True, input=None, timeout=120):
        cmd = [os.path.join(self.bin_dir, "kubectl"), "--kubeconfig", self.kubeconfig] + list(args)
        res = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout, check=False)
        if check and res.returncode != 0:
            raise AssertionError("kubectl %s failed (%d): %s" % (" ".join(args), res.returncode, res.stderr))
        return res

    def metrics(self):
        """The API server's /metrics text."""
        return self.kubectl("get", "--raw", "/metrics").stdout


# The Kubernetes version of the control planes this session starts: tests/testbed/versions.sh's
# default, or another one it lists (K8S_MATRIX_VERSIONS: the version matrix, noxfile.py).
K8S_VERSION_ENV = "KUBEOPS_TEST_K8S_VERSION"


def _testbed_env():
    """The environment of the test bed's scripts: K8S_VERSION from KUBEOPS_TEST_K8S_VERSION, if set."""
    env = dict(os.environ)
    env.pop("K8S_VERSION", None)
    if os.environ.get(K8S_VERSION_ENV):
        env["K8S_VERSION"] = os.environ[K8S_VERSION_ENV]
    return env


def _testbed_paths():
    out = subprocess.run(
        ["bash", "-c", 'source "$1"; echo "$TESTBED_CACHE"; echo "$TESTBED_BIN"', "v",
         os.path.join(TESTBED, "versions.sh")], check=True, capture_output=True, text=True,
        env=_testbed_env()).stdout.split()
    return out[0], out[1]


def session_k8s_version():
    """The Kubernetes version (v1.X.Y) the control planes of this session run."""
    return subprocess.run(["bash", "-c", 'source "$1"; echo "$K8S_VERSION"', "v", os.path.join(TESTBED, "versions.sh")],
                          check=True, capture_output=True, text=True, env=_testbed_env()).stdout.strip()


@contextlib.contextmanager
def own_cluster(prefix):
    """A control plane of its own (tests/testbed/cluster.py) of the session's Kubernetes version
    (KUBEOPS_TEST_K8S_VERSION, else versions.sh's default; built first if not cached), on a state
    directory of its own, stopped and removed on exit."""
    cache, bin_dir = _testbed_paths()
    env = _testbed_env()
    if not os.path.exists(os.path.join(bin_dir, "kube-apiserver")):
        subprocess.run(["bash", os.path.join(TESTBED, "build-binaries.sh")], check=True, env=env)
    os.makedirs(os.path.join(cache, "run"), exist_ok=True)
    state = tempfile.mkdtemp(prefix="%s-%d-" % (prefix, os.getpid()), dir=os.path.join(cache, "run"))
    cluster_py = [sys.executable, os.path.join(TESTBED, "cluster.py")]
    try:
        subprocess.run(cluster_py + ["up", "--state", state], check=True, stdout=subprocess.DEVNULL, env=env)
        with open(os.path.join(state, "cluster.json")) as handle:
            started = json.load(handle)
        yield Cluster(started["kubeconfig"], bin_dir, started["server"])
    finally:
        subprocess.run(cluster_py + ["down", "--state", state], check=False, env=env)
        subprocess.run(["rm", "-rf", state], check=False)


@pytest.fixture(scope="session")
def cluster():
    existing = os.environ.get("KUBEOPS_TEST_KUBECONFIG")
    if existing:
        with open(existing) as handle:
            server = json.load(handle)["clusters"][0]["cluster"]["server"]
        yield Cluster(existing, _testbed_paths()[1], server)
        return
    with own_cluster("pytest") as started:
        yield started


@pytest.fixture(scope="session")
def host_pool(cluster):
    """The session's QEMU test hosts (tests/integration/hostsupport.HostPool): booted on first use,
    lent to each host test module in turn as they were just after the boot, destroyed at the end."""
    from tests.integration.hostsupport import HostPool

    def log(msg):
        print("[host-pool %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)

    pool = HostPool(cluster, log)
    try:
        yield pool
    finally:
        pool.close()


def wait_for(what, predicate, timeout=60, interval=0.2, tolerate_errors=False):
    """Poll ``predicate`` until it returns something true and return that; fail naming ``what``.
    ``tolerate_errors``: an exception counts as not yet (the API server may be restarting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 - only when the caller asked for it
            if not tolerate_errors:
                raise
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


def _process_table():
    """{pid: (parent pid, state letter)} of every process this test can see."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            table[int(entry)] = (int(fields[1]), fields[0])
        except (OSError, IndexError, ValueError):
            continue
    return table


def process_tree(root):
    """``root`` and every live process descended from it, wherever its session or group is
    (ansible-core's workers call setsid, so a process group does not hold what a playbook runs)."""
    table = _process_table()
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, (parent, state) in table.items() if parent in tree and state != "Z"} - tree
        grew = bool(more)
        tree |= more
    return tree


def kill_process_tree(root, timeout=30):
    """SIGKILL ``root`` (a process this test started) and all its descendants at once, the way a
    controller that loses power stops: stopped first so none forks or exits away in between, then
    killed; returns once none of them runs any more."""
    import signal

    stopped = set()
    while True:
        tree = process_tree(root) - stopped
        if not tree:
            break
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        stopped |= tree
    for pid in stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_for("the processes of %d to end" % root,
             lambda: not [pid for pid, (_parent, state) in _process_table().items()
                          if pid in stopped and state != "Z"],
             timeout=timeout, interval=0.01)


def in_thread(fn, *args, **kwargs):
    """Run fn in a thread; returns a callable that joins it and returns fn's result (or raises its error)."""
    import threading

    box = {}

    def target():
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()

    def result():
        thread.join(900)
        if "error" in box:
            raise box["error"]
        return box["result"]

    return result


def is_ready(pod):
    """Running, Ready and not terminating."""
    if pod.metadata.deletion_timestamp or pod.status.phase != "Running":
        return False
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:6])


def create_namespace(cluster, prefix):
    """A new namespace named after ``prefix`` (made unique), once pods can be created in it."""
    from kubernetes import client

    name = _unique(prefix.lower().replace("_", "-")[:40].strip("-[]"))
    name = "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in name)[:60].strip("-")
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # a wait, not a limit: a controller-manager at the cluster workers' lower CPU priority made it
    # after more than 60 s while the QEMU hosts booted
    deadline = time.monotonic() + 300
    while True:  # pods cannot be created before the controller-manager made the default ServiceAccount
        try:
            cluster.core.read_namespaced_service_account("default", name)
            return name
        except client.ApiException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def namespace(cluster, request):
    from kubernetes import client

    name = create_namespace(cluster, "t-" + request.node.name)
    yield name
    try:
        cluster.core.delete_namespace(name, grace_period_seconds=0)
    except client.ApiException:
        pass


def node_manifest(name, cpu="32", memory="256Gi", pods="110", labels=None, taints=None,
                  unschedulable=False, annotations=None):
    labels = dict(labels or {})
    labels.setdefault("kubernetes.io/hostname", name)
    labels.setdefault("kubernetes.io/os", "linux")
    labels.setdefault("type", "kwok")
    labels.setdefault(TEST_NODE_LABEL, "true")
    capacity = {"cpu": str(cpu), "memory": str(memory), "pods": str(pods)}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels,
                     "annotations": dict(KWOK_ANNOTATION, **(annotations or {}))},
        "spec": {"unschedulable": unschedulable, "taints": list(taints or [])},
        "status": {"capacity": capacity, "allocatable": capacity},
    }


class Kubelet:
    """A kwok process acting as the kubelet of exactly one node: stop it and the node stops
    heart-beating, as when a real kubelet dies; start it and the node comes back."""

    def __init__(self, cluster, node):
        self.cluster = cluster
        self.node = node
        self.proc = None

    def start(self):
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        state = os.path.dirname(self.cluster.kubeconfig)
        self.proc = subprocess.Popen(
            [os.path.join(self.cluster.bin_dir, "kwok"), "--kubeconfig", self.cluster.kubeconfig,
             "--config", os.path.join(state, "kwok.yaml"), "--manage-single-node", self.node,
             "--server-address", "127.0.0.1:%d" % port, "--node-lease-duration-seconds", "10"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def make_node(cluster):
    """Create kwok-simulated nodes; each is Ready (kwok heart-beats it) before it is returned.

    With ``own_kubelet=True`` the node gets a kwok process of its own instead of the cluster's
    shared one; ``make_node.kubelets[name]`` is its :class:`Kubelet`, to stop and start.
    """
    created = []
    kubelets = {}

    def _make(name=None, cpu="32", memory="256Gi", pods="110", labels=None, taints=None,
              unschedulable=False, ready=True, annotations=None, own_kubelet=False):
        name = name or _unique("kwok-node")
        manifest = node_manifest(name, cpu, memory, pods, labels, taints, unschedulable, annotations)
        if own_kubelet:
            del manifest["metadata"]["annotations"]["kwok.x-k8s.io/node"]
        cluster.core.create_node(manifest)
        created.append(name)
        if own_kubelet:
            kubelets[name] = Kubelet(cluster, name)
            kubelets[name].start()
        if ready:
            wait_node_ready(cluster, name)
        return name

    _make.kubelets = kubelets
    yield _make
    for kubelet in kubelets.values():
        kubelet.stop()
    for name in created:
        try:
            cluster.core.delete_node(name)
        except Exception:  # noqa: BLE001 - a test may have deleted it already
            pass


def wait_node_ready(cluster, name, timeout=60, want="True"):
    deadline = time.monotonic() + timeout
    status, settling = None, []
    while time.monotonic() < deadline:
        node = cluster.core.read_node(name)
        for cond in node.status.conditions or []:
            if cond.type == "Ready":
                status = cond.status
        # A node that just turned Ready still carries the node lifecycle controller's
        # not-ready taint for a moment: a settled node has neither it nor the unreachable one.
        settling = [t.key for t in node.spec.taints or []
                    if t.key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")]
        if status == want and not (want == "True" and settling):
            return node
        time.sleep(0.3)
    raise AssertionError("node %s Ready=%s (taints %s) after %ss, wanted Ready=%s and settled"
                         % (name, status, settling, timeout, want))


# Secrets the tests created (API tokens): every output of run_module / run_playbook is searched for
# them, so a test that leaks one fails whatever it asserts itself. Only names are ever printed.
_SECRETS = {}


def register_secret(value, name="a registered secret"):
    """Remember ``value`` (and, for a JWT, its payload and signature, each enough to spot a leak)."""
    _SECRETS[value] = name
    parts = value.split(".")
    if len(parts) == 3:
        for label, part in zip(("payload", "signature"), parts[1:]):
            if len(part) >= 16:
                _SECRETS[part] = "%s (JWT %s)" % (name, label)
    return value


def leaked_secrets(text):
    """Names (never values) of the registered secrets that appear in ``text``."""
    return sorted({name for secret, name in _SECRETS.items() if text and secret in text})


def assert_no_secret(where, *texts):
    found = sorted({name for text in texts for name in leaked_secrets(text)})
    assert not found, "%s shows %s" % (where, ", ".join(found))


def _ansible_env(cluster, extra=None):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS_ROOT,
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "K8S_AUTH_KUBECONFIG": cluster.kubeconfig,
    })
    env.update(extra or {})
    return {key: value for key, value in env.items() if value is not None}  # None: leave it unset


def _localhost_inventory(tmp_path):
    path = os.path.join(tmp_path, "localhost.ini")
    with open(path, "w") as handle:
        handle.write("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    return path


def run_tasks(workdir, name, tasks, env, args=(), callback="ansible.posix.json", vars_file=None):
    """One play on localhost with ``tasks`` (one Ansible start for all of them, where ``run_module``
    starts Ansible per module run); returns (CompletedProcess, {task name: result})."""
    path = os.path.join(workdir, "%s.yml" % name)
    with open(path, "w") as handle:
        json.dump([{"name": name, "hosts": "localhost", "gather_facts": False, "tasks": tasks}], handle)
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", _localhost_inventory(workdir),
           path] + (["-e", "@" + vars_file] if vars_file else []) + list(args)
    run_env = dict(env, ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK=callback)
    res = subprocess.run(cmd, capture_output=True, text=True, env=run_env, timeout=900, check=False)
    assert_no_secret("the output of playbook %s" % name, res.stdout, res.stderr)
    results = {}
    if callback == "ansible.posix.json":
        try:
            for task in json.loads(res.stdout)["plays"][0]["tasks"]:
                results[task["task"]["name"]] = task["hosts"]["localhost"]
        except (ValueError, KeyError, IndexError):
            raise AssertionError("playbook %s: no JSON results (rc %d)\n%s\n%s"
                                 % (name, res.returncode, res.stdout[-3000:], res.stderr[-3000:]))
    return res, results


@pytest.fixture
def run_module(cluster, tmp_path):
    """Run one module of the collection through ansible-core and return its result dict."""

    def _run(module, args, check=False, diff=False, env=None, auth=True):
        fqcn = module if "." in module else "kubeops.node_maintenance." + module
        cmd = [os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost",
               "-i", _localhost_inventory(str(tmp_path)), "-m", fqcn, "-a", json.dumps(args)]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        run_env = _ansible_env(cluster, env)
        run_env.update({"ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"})
        if not auth:
            run_env.pop("K8S_AUTH_KUBECONFIG")
        res = subprocess.run(cmd, capture_output=True, text=True, env=run_env, timeout=900, check=False)
        assert_no_secret("the output of %s" % fqcn, res.stdout, res.stderr)
        try:
            doc = json.loads(res.stdout)
            result = doc["plays"][0]["tasks"][0]["hosts"]["localhost"]
        except (ValueError, KeyError, IndexError):
            raise AssertionError("could not read the result of %s (rc %d)\nstdout: %s\nstderr: %s"
                                 % (fqcn, res.returncode, res.stdout[-4000:], res.stderr[-4000:]))
        result.setdefault("failed", False)
        result["_stderr"] = res.stderr
        return result

    return _run


@pytest.fixture
def run_playbook(cluster, tmp_path):
    """Run a playbook of this collection on localhost (or a given inventory); ``env`` adds to
    (a None value removes from) the Ansible environment, ``cwd`` is where it runs."""

    def _run(path, extra_vars=None, inventory=None, check=False, env=None, args=(), cwd=None):
        cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
               "-i", inventory or _localhost_inventory(str(tmp_path)), path]
        if extra_vars:
            cmd += ["-e", json.dumps(extra_vars)]
        if check:
            cmd.append("--check")
        cmd += list(args)
        res = subprocess.run(cmd, capture_output=True, text=True, env=_ansible_env(cluster, env), timeout=3600,
                             check=False, cwd=cwd)
        assert_no_secret("the output of %s" % os.path.basename(path), res.stdout, res.stderr)
        return res

    return _run
