"""The control plane a session runs is the Kubernetes version it asked for: the version matrix
(noxfile.py, KUBEOPS_TEST_K8S_VERSION) is only worth its runs if every one of them runs against its
own minor's API server, controller-manager and scheduler, not the default build's."""
import json
import os
import subprocess

import pytest

from tests.integration.conftest import session_k8s_version

pytestmark = pytest.mark.integration


def test_the_control_plane_is_the_version_the_session_asked_for(cluster):
    want = session_k8s_version()
    assert want == os.environ.get("KUBEOPS_TEST_K8S_VERSION", want)
    server = json.loads(cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert server["gitVersion"] == want, server
    for binary in ("kube-controller-manager", "kube-scheduler"):
        out = subprocess.run([os.path.join(cluster.bin_dir, binary), "--version"], capture_output=True,
                             text=True, check=True).stdout
        assert out.split() == ["Kubernetes", want], (binary, out)
