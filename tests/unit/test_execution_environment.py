"""The execution environment definitions are what ansible-builder accepts and carry the
collection's requirements.

- execution-environment.yml (ansible-builder v3): `ansible-builder create` turns it into a build
  context whose requirement files list the Python and system packages and the collection.
- meta/execution-environment.yml: what ansible-builder reads from the installed collection while it
  builds any image that includes it (`ansible-builder introspect`, the step the image build runs).

Building the image itself needs a container runtime and registries this machine does not reach.
"""
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import COLLECTIONS_ROOT, REPO_ROOT

TOOL = shutil.which("ansible-builder", path=os.path.dirname(sys.executable)) or shutil.which("ansible-builder")


def _requirement_names(path):
    names = set()
    with open(path) as handle:
        for line in handle:
            line = line.split("#", 1)[0].strip()
            if line:
                names.add(line.split()[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].lower())
    return names


@pytest.fixture(scope="module")
def ansible_builder():
    if not TOOL:
        pytest.fail("ansible-builder is not installed (tests/requirements.txt lists it)")
    return TOOL


def test_ansible_builder_create_makes_a_context_with_every_requirement(ansible_builder, tmp_path):
    context = tmp_path / "context"
    res = subprocess.run([ansible_builder, "create", "-f", os.path.join(REPO_ROOT, "execution-environment.yml"),
                          "-c", str(context), "--output-filename", "Containerfile"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    build = context / "_build"
    assert _requirement_names(build / "requirements.txt") >= _requirement_names(
        os.path.join(REPO_ROOT, "requirements.txt")) >= {"kubernetes", "pyyaml"}
    assert _requirement_names(build / "bindep.txt") >= {"openssh-client", "openssh-clients"}
    galaxy = yaml.safe_load((build / "requirements.yml").read_text())
    assert [c["name"] for c in galaxy["collections"]] == ["kubeops.node_maintenance"]
    containerfile = (context / "Containerfile").read_text()
    assert "ansible-core==" in containerfile and "ansible-runner==" in containerfile
    assert "ansible-galaxy collection install" in containerfile


def test_the_ee_pins_the_ansible_core_and_runner_the_tests_use():
    with open(os.path.join(REPO_ROOT, "execution-environment.yml")) as handle:
        deps = yaml.safe_load(handle)["dependencies"]
    with open(os.path.join(REPO_ROOT, "tests", "requirements.txt")) as handle:
        pinned = {line.split("==")[0]: line.strip() for line in handle if "==" in line}
    assert deps["ansible_core"]["package_pip"] == pinned["ansible-core"]
    assert deps["ansible_runner"]["package_pip"] == pinned["ansible-runner"]


def test_the_installed_collection_declares_its_requirements_to_ansible_builder(ansible_builder):
    """What the image build's introspection step finds in the collection (meta/execution-environment.yml)."""
    res = subprocess.run([ansible_builder, "introspect", COLLECTIONS_ROOT], capture_output=True, text=True,
                         timeout=300, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    found = yaml.safe_load(res.stdout.split("\n", 1)[1] if res.stdout.startswith("#") else res.stdout)
    ours = "from collection kubeops.node_maintenance"
    python = {line.split()[0].split(">")[0].lower() for line in found["python"] if ours in line}
    system = {line.split()[0] for line in found["system"] if ours in line}
    # (PyYAML is left out by ansible-builder itself: ansible-core brings it.)
    assert "kubernetes" in python, found
    assert {"openssh-client", "openssh-clients"} <= system, found
    with open(os.path.join(REPO_ROOT, "meta", "execution-environment.yml")) as handle:
        meta = yaml.safe_load(handle)
    assert meta["version"] == 3
    for entry in ("python", "system"):
        # relative to the collection root: ansible-builder refuses anything else for a collection
        assert os.path.exists(os.path.join(REPO_ROOT, meta["dependencies"][entry])), entry
