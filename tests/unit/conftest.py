"""Hypothesis without deadlines: a property test asserts what the code does, never how fast it
does it on a loaded machine (speed is measured in benchmarks/).

``k8s_server``: scripted Kubernetes API servers on 127.0.0.1 (tests/unit/fake_k8s_server.py),
closed at the end of the test."""
import pytest
from hypothesis import settings

from tests.unit.fake_k8s_server import FakeK8sServer

settings.register_profile("kubeops", deadline=None)
settings.load_profile("kubeops")


@pytest.fixture
def k8s_server():
    """``start(answer, date=None)`` starts a ``FakeK8sServer`` and returns it."""
    servers = []

    def start(answer, date=None):
        server = FakeK8sServer(answer, date=date)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
