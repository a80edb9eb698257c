import pytest
from kubernetes import client

pytestmark = pytest.mark.integration


def test_remove_refuses_a_node_with_pods_then_deletes_it_once_drained(cluster, namespace, make_node, run_module):
    name = make_node(unschedulable=True)
    cluster.core.create_namespaced_pod(namespace, {
        "metadata": {"name": "bare"},
        "spec": {"nodeName": name, "containers": [{"name": "c", "image": "registry.invalid/c:1"}]}})

    refused = run_module("k8s_node_remove", {"name": name})
    assert refused["failed"] and "%s/bare" % namespace in refused["msg"]
    cluster.core.read_node(name)  # still there

    cluster.core.delete_namespaced_pod("bare", namespace, grace_period_seconds=0)
    checked = run_module("k8s_node_remove", {"name": name}, check=True)
    assert checked["changed"] and not checked["failed"]
    cluster.core.read_node(name)  # check mode deleted nothing

    removed = run_module("k8s_node_remove", {"name": name})
    assert removed["changed"] and removed["existed"]
    with pytest.raises(client.ApiException) as gone:
        cluster.core.read_node(name)
    assert gone.value.status == 404

    again = run_module("k8s_node_remove", {"name": name})
    assert not again["changed"] and not again["existed"] and not again["failed"]


def test_remove_refuses_a_schedulable_node(make_node, run_module):
    name = make_node()
    res = run_module("k8s_node_remove", {"name": name})
    assert res["failed"] and "not cordoned" in res["msg"]
