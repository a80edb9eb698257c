"""The version matrix: the ansible-core lines and the Kubernetes minors README's support matrix
claims, each tested (nox, https://nox.thea.codes).

One session per ansible-core line of tests/matrix/ansible-core.txt, ``core-2.16`` ... ``core-2.19``,
each in its own virtualenv (that ansible-core, tests/matrix/requirements.txt, the collection's
requirements.txt and the ansible.posix collection the module fixture's JSON callback comes from).
A session runs, as its arguments (after ``--``) say:

- ``units``: the unit tests (tests/unit) but the two that check tools rather than the collection
  (antsibull-changelog, ansible-builder: the main suite runs them), in KUBEOPS_MATRIX_UNIT_WORKERS
  parallel workers (default 4);
- ``subset``: the module-level integration subset (SUBSET: cordon, taint, drain, lock, state)
  against a control plane of each Kubernetes version of ``k8s=v1.34.4,v1.35.4`` (``k8s=all``: every
  version of tests/testbed/versions.sh), each started by the ``cluster`` fixture from that
  version's build (tests/testbed/build-binaries.sh, cached) on a state directory of its own;
- nothing: ``units subset`` on the session's paired Kubernetes version (PAIRED): what CI runs
  (tests/run.sh through tests/matrix/ci.sh, judged by tests/matrix/report.py), so that every
  ansible-core line and every Kubernetes minor is tested on each run. Each part logs ``took Ns``.

Virtualenvs live in ~/.cache/kubeops-node-maintenance/nox/<key>/ (``--envdir`` is set here), the key a
hash of the files the requirements come from, so a changed pin makes new ones (tests/bootstrap.sh
removes the old ones). Run with ``--reuse-venv=yes``: a virtualenv is reused, and its packages are
installed only when its marker (written after the last install) is missing, so an interrupted install
is redone, and a warm run installs nothing. ``--install-only`` (tests/bootstrap.sh, in the background)
only builds them.

    nox -f noxfile.py --reuse-venv=yes -s core-2.16 -- units subset k8s=all
"""
import hashlib
import os
import subprocess
import sys
import time

import nox

REPO = os.path.dirname(os.path.abspath(__file__))
MATRIX = os.path.join(REPO, "tests", "matrix")
TESTBED = os.path.join(REPO, "tests", "testbed")
PYTHON = "3.11"
SUBSET = ["tests/integration/test_k8s_node_cordon.py", "tests/integration/test_k8s_node_taint.py",
          "tests/integration/test_k8s_node_drain.py", "tests/integration/test_k8s_maintenance_lock.py",
          "tests/integration/test_k8s_node_maintenance_state.py", "tests/integration/test_testbed_version.py"]
# Tool checks, independent of ansible-core; they need the main virtualenv's antsibull-changelog and
# ansible-builder and run in the main suite.
NOT_UNITS = ["tests/unit/test_changelog.py", "tests/unit/test_execution_environment.py"]
REQUIREMENT_FILES = [os.path.join(MATRIX, "ansible-core.txt"), os.path.join(MATRIX, "requirements.txt"),
                     os.path.join(REPO, "requirements.txt")]


def _lines(path):
    with open(path) as handle:
        return [line.strip() for line in handle if line.strip() and not line.startswith("#")]


def _testbed(name):
    out = subprocess.run(["bash", "-c", 'source "$1"; echo "${!2}"', "v", os.path.join(TESTBED, "versions.sh"), name],
                         check=True, capture_output=True, text=True, env=dict(os.environ, K8S_VERSION=""))
    return out.stdout.strip()


CORES = {pin.split("==")[1].rsplit(".", 1)[0]: pin for pin in _lines(REQUIREMENT_FILES[0])}
K8S_DEFAULT = _testbed("K8S_DEFAULT_VERSION")
K8S_VERSIONS = _testbed("K8S_MATRIX_VERSIONS").split() + [K8S_DEFAULT]
# What CI runs: each ansible-core line beside one Kubernetes minor, the oldest with the oldest; the
# newest core with the default version is the main suite (tests/run.sh's pytest), not repeated here.
PAIRED = dict(zip(CORES, K8S_VERSIONS + [K8S_DEFAULT] * len(CORES)))
CI_SESSIONS = ["core-%s" % line for line in list(CORES)[:-1]]


def _key():
    digest = hashlib.sha256()
    for path in REQUIREMENT_FILES:
        with open(path, "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()[:16]


CACHE = _testbed("TESTBED_CACHE")
KEY = _key()
nox.options.envdir = os.path.join(CACHE, "nox", KEY)
nox.options.sessions = CI_SESSIONS
# A session whose Python is missing fails instead of being skipped: a skipped cell of the support
# matrix must not look like a tested one (tests/matrix/report.py fails on "skipped" as well).
nox.options.error_on_missing_interpreters = True
MARKER = ".kubeops-requirements"


def _install(session, pin):
    """The virtualenv's packages, unless its marker says they are complete."""
    marker = os.path.join(session.virtualenv.location, MARKER)
    want = "%s %s\n" % (KEY, pin)
    if os.path.exists(marker) and open(marker).read() == want:
        return
    session.run_install("python", "-m", "pip", "install", "-q", pin,
                        "-r", REQUIREMENT_FILES[1], "-r", REQUIREMENT_FILES[2], silent=True)
    # ansible.posix (its json callback: the run_module fixture's output) from the main virtualenv's
    # `ansible` package (requires_ansible >=2.15), installed into this one's site-packages, where
    # ansible-core finds collections whatever ANSIBLE_COLLECTIONS_PATH says.
    posix = os.path.join(CACHE, "venv", "lib", "python%s" % PYTHON, "site-packages", "ansible_collections",
                         "ansible", "posix")
    site = session.run_install("python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                               silent=True)
    if site is not None:  # None: skipped by --no-install on a reused virtualenv
        session.run_install("python", "-c", "import shutil, sys; shutil.copytree(sys.argv[1], sys.argv[2], "
                            "dirs_exist_ok=True)", posix,
                            os.path.join(site.strip(), "ansible_collections", "ansible", "posix"), silent=True)
        with open(marker, "w") as handle:
            handle.write(want)


def _parse(session, line):
    """(run the units, Kubernetes versions for the subset) from the session's arguments; a wrong one
    fails the session (session.error: nox records it and goes on with the next)."""
    args = session.posargs
    units, subset, versions = not args, not args, [PAIRED[line]]
    for arg in args:
        if arg == "units":
            units = True
        elif arg == "subset":
            subset = True
        elif arg.startswith("k8s="):
            value = arg.split("=", 1)[1]
            versions = K8S_VERSIONS if value == "all" else value.split(",")
        else:
            session.error("unknown argument %r: units, subset, k8s=v1.34.4,... or k8s=all" % arg)
    unknown = sorted(set(versions) - set(K8S_VERSIONS))
    if unknown:
        session.error("Kubernetes %s: not in tests/testbed/versions.sh (%s)" % (
            ", ".join(unknown), " ".join(K8S_VERSIONS)))
    return units, versions if subset else []


def _session(line, pin):
    def session(session):
        units, versions = _parse(session, line)
        _install(session, pin)
        env = {"KUBEOPS_FUZZ_EXAMPLES": os.environ.get("KUBEOPS_MATRIX_FUZZ_EXAMPLES", "200"),
               "PYTHONDONTWRITEBYTECODE": "1"}
        session.run("python", "-c", "import ansible, kubernetes; print('ansible-core', ansible.__version__,"
                    " 'kubernetes', kubernetes.__version__)")
        pytest = ["python", "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n0"]
        if units:
            start = time.monotonic()
            # in parallel workers: the unit tests wait (retry pauses, scripted slow servers) more than
            # they compute; measured with 200 fuzz cases: 195 s in one process, 71 s in four (80 s and
            # 102 s of CPU)
            workers = os.environ.get("KUBEOPS_MATRIX_UNIT_WORKERS", "4")
            session.run(*pytest[:-1], "-n", workers, "tests/unit", *["--ignore=" + path for path in NOT_UNITS],
                        env=env)
            session.log("took %ds: unit tests on %s" % (time.monotonic() - start, pin))
        for version in versions:
            session.log("module-level integration subset on Kubernetes %s" % version)
            start = time.monotonic()
            session.run(*pytest, *SUBSET, env=dict(env, KUBEOPS_TEST_K8S_VERSION=version))
            session.log("took %ds: module subset on %s, Kubernetes %s" % (time.monotonic() - start, pin, version))

    session.__doc__ = "%s: unit tests and the module-level integration subset (paired: Kubernetes %s)" % (
        pin, PAIRED[line])
    return session


for _line, _pin in CORES.items():
    nox.session(name="core-%s" % _line, python=PYTHON, venv_backend="venv")(_session(_line, _pin))

if __name__ == "__main__":
    sys.exit("run with nox: nox -f %s -l" % __file__)
