"""Unit tests for _volume_detach: which of a drained node's attached volumes are waited for, the
timeout's message, and the wait against a scripted API server on 127.0.0.1 (the real one, with
real PersistentVolumes and VolumeAttachments, is in tests/integration/test_k8s_node_drain.py)."""
import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _volume_detach
from tests.unit.fake_k8s_server import by_path, item_list
from tests.unit.plugins.module_utils.test__maintenance_lock import Clock

DRIVER = "fake.csi.kubeops.io"


def node(name="n1", attached=()):
    return {"metadata": {"name": name}, "status": {"volumesAttached": [
        {"name": "kubernetes.io/csi/%s^%s" % (DRIVER, handle), "devicePath": ""} for handle in attached]}}


def pv(name, claim=None, handle=None, namespace="shop"):
    spec = {"csi": {"driver": DRIVER, "volumeHandle": handle or "h-" + name}}
    if claim:
        spec["claimRef"] = {"kind": "PersistentVolumeClaim", "namespace": namespace, "name": claim}
    return {"metadata": {"name": name}, "spec": spec}


def va(name, pv_name, node_name="n1", attached=True, detach_error=None):
    status = {"attached": attached}
    if detach_error:
        status["detachError"] = {"message": detach_error, "time": "2026-12-02T10:00:00Z"}
    return {"metadata": {"name": name}, "spec": {"attacher": DRIVER, "nodeName": node_name,
                                                 "source": {"persistentVolumeName": pv_name}}, "status": status}


def pod(name, claims=(), ephemeral=(), phase="Running", deleting=False, namespace="shop"):
    volumes = [{"name": "v%d" % i, "persistentVolumeClaim": {"claimName": c}} for i, c in enumerate(claims)]
    volumes += [{"name": v, "ephemeral": {"volumeClaimTemplate": {"spec": {}}}} for v in ephemeral]
    volumes.append({"name": "scratch", "emptyDir": {}})
    meta = {"namespace": namespace, "name": name}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-02T10:00:00Z"
    return {"metadata": meta, "spec": {"nodeName": "n1", "volumes": volumes}, "status": {"phase": phase}}


def names(volumes):
    return [(v["kind"], v["name"]) for v in volumes]


def test_the_csi_name_of_a_persistent_volume_is_the_attach_detach_controllers():
    assert _volume_detach.csi_volume_name(pv("a", handle="vol-1")) == "kubernetes.io/csi/%s^vol-1" % DRIVER
    assert _volume_detach.csi_volume_name({"metadata": {"name": "x"}, "spec": {"hostPath": {"path": "/x"}}}) is None


def test_a_pods_claims_are_its_pvcs_and_its_generic_ephemeral_volumes():
    assert _volume_detach.pod_claims(pod("db-0", claims=["data-db-0"], ephemeral=["cache"])) == [
        ("shop", "data-db-0"), ("shop", "db-0-cache")]
    assert _volume_detach.pod_claims({"metadata": {}, "spec": {}}) == []


def test_attachments_of_other_nodes_are_not_the_nodes():
    state = _volume_detach.volume_state(node(), [va("va-1", "pv-1", node_name="n2")], [pv("pv-1")], [])
    assert state == {"pending": [], "kept": []}


def test_every_attachment_and_status_entry_is_pending_when_no_pod_is_left():
    state = _volume_detach.volume_state(
        node(attached=["h-pv-1", "unknown"]), [va("va-1", "pv-1"), va("va-2", "pv-2", attached=False, detach_error="busy")],
        [pv("pv-1", "data"), pv("pv-2", "logs")], [])
    assert state["kept"] == []
    assert state["pending"] == [
        {"kind": "VolumeAttachment", "name": "va-1", "persistent_volume": "pv-1", "attacher": DRIVER, "attached": True,
         "detach_error": None},
        {"kind": "VolumeAttachment", "name": "va-2", "persistent_volume": "pv-2", "attacher": DRIVER,
         "attached": False, "detach_error": "busy"},
        {"kind": "volumesAttached", "name": "kubernetes.io/csi/%s^h-pv-1" % DRIVER, "persistent_volume": "pv-1"},
        {"kind": "volumesAttached", "name": "kubernetes.io/csi/%s^unknown" % DRIVER, "persistent_volume": None},
    ]


def test_the_volumes_of_pods_left_on_the_node_are_kept_not_waited_for():
    pods = [pod("agent-x", claims=["agent-state"]), pod("db-0", claims=["data-db-0"], deleting=True),
            pod("job-1", claims=["job-out"], phase="Succeeded"), pod("cache-0", ephemeral=["tmp"])]
    pvs = [pv("pv-agent", "agent-state"), pv("pv-db", "data-db-0"), pv("pv-job", "job-out"),
           pv("pv-cache", "cache-0-tmp"), pv("pv-other-ns", "agent-state", namespace="ops")]
    attachments = [va("va-agent", "pv-agent"), va("va-db", "pv-db"), va("va-job", "pv-job"), va("va-cache", "pv-cache"),
                   va("va-other", "pv-other-ns"), va("va-inline", None)]
    state = _volume_detach.volume_state(node(attached=["h-pv-agent", "h-pv-db"]), attachments, pvs, pods)
    # a running pod keeps its claim's volume, both as attachment and as status entry; a generic ephemeral one too
    assert names(state["kept"]) == [("VolumeAttachment", "va-agent"), ("VolumeAttachment", "va-cache"),
                                    ("volumesAttached", "kubernetes.io/csi/%s^h-pv-agent" % DRIVER)]
    assert state["kept"][0]["pods"] == ["shop/agent-x"]
    # a pod being deleted or finished lets go of its volume; a claim of the same name in another
    # namespace is not the pod's; an inline volume cannot be tied to a pod
    assert names(state["pending"]) == [("VolumeAttachment", "va-db"), ("VolumeAttachment", "va-job"),
                                       ("VolumeAttachment", "va-other"), ("VolumeAttachment", "va-inline"),
                                       ("volumesAttached", "kubernetes.io/csi/%s^h-pv-db" % DRIVER)]


def test_the_volumes_of_pods_the_drain_moves_are_waited_for_while_they_are_still_there():
    # check mode: the drain has not evicted them yet, but will
    db, agent = pod("db-0", claims=["data-db-0"]), pod("agent-x", claims=["agent-state"])
    db["metadata"]["uid"], agent["metadata"]["uid"] = "uid-db", "uid-agent"
    state = _volume_detach.volume_state(node(), [va("va-db", "pv-db"), va("va-agent", "pv-agent")],
                                        [pv("pv-db", "data-db-0"), pv("pv-agent", "agent-state")], [db, agent],
                                        moving={"uid-db"})
    assert names(state["pending"]) == [("VolumeAttachment", "va-db")]
    assert names(state["kept"]) == [("VolumeAttachment", "va-agent")]


def test_a_pv_bound_to_something_else_than_a_claim_is_no_pods():
    odd = pv("pv-1")
    odd["spec"]["claimRef"] = {"kind": "Other", "namespace": "shop", "name": "data"}
    state = _volume_detach.volume_state(node(), [va("va-1", "pv-1")], [odd], [pod("p", claims=["data"])])
    assert names(state["pending"]) == [("VolumeAttachment", "va-1")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.booleans(), st.sampled_from(["n1", "n2"]),
                          st.sampled_from(["Running", "Succeeded", "Pending"]), st.booleans()), max_size=6))
def test_every_volume_of_the_node_is_either_pending_or_kept_and_kept_ones_name_a_pod_that_stays(rows):
    pvs = [pv("pv-" + c, c) for c in "abcd"]
    attachments = [va("va-%d" % i, "pv-" + c, node_name=n, attached=att) for i, (c, att, n, _p, _d) in enumerate(rows)]
    pods = [pod("p-%d" % i, claims=[c], phase=phase, deleting=deleting) for i, (c, _a, _n, phase, deleting) in enumerate(rows)]
    state = _volume_detach.volume_state(node(attached=["h-pv-a"]), attachments, pvs, pods)
    mine = [a for a in attachments if a["spec"]["nodeName"] == "n1"]
    assert len(state["pending"]) + len(state["kept"]) == len(mine) + 1
    staying = dict(("pv-" + c, "shop/p-%d" % i) for i, (c, _a, _n, phase, deleting) in enumerate(rows)
                   if phase != "Succeeded" and not deleting)
    for volume in state["kept"]:
        assert volume["persistent_volume"] in staying and staying[volume["persistent_volume"]] in volume["pods"]
    for volume in state["pending"]:
        assert volume["persistent_volume"] not in staying


def test_the_timeout_message_names_each_attachment_with_its_pv_and_what_to_do():
    volumes = {"pending": [
        {"kind": "VolumeAttachment", "name": "va-1", "persistent_volume": "pv-1", "attacher": DRIVER, "attached": True,
         "detach_error": None},
        {"kind": "VolumeAttachment", "name": "va-2", "persistent_volume": None, "attacher": DRIVER, "attached": False,
         "detach_error": "rpc error: volume busy"},
        {"kind": "volumesAttached", "name": "kubernetes.io/csi/x^h", "persistent_volume": None}], "kept": []}
    msg = _volume_detach.timeout_message("n1", volumes, 30)
    assert msg.startswith("drain of node/n1: the pods are gone, but 3 volume(s) were still attached to the node "
                          "after 30s (volume_detach_timeout): ")
    assert "volumeattachment/va-1 (pv/pv-1, attacher %s, attached)" % DRIVER in msg
    assert ("volumeattachment/va-2 (an inline volume, no PersistentVolume, attacher %s, detaching, detach error: "
            "rpc error: volume busy)" % DRIVER) in msg
    assert "status.volumesAttached kubernetes.io/csi/x^h (no PersistentVolume matches it)" in msg
    assert "The node stays cordoned" in msg and "kubectl describe volumeattachment NAME" in msg


def test_a_long_list_is_cut_in_the_message_not_in_the_result():
    pending = [{"kind": "volumesAttached", "name": "v%d" % i, "persistent_volume": "pv-%d" % i} for i in range(13)]
    msg = _volume_detach.timeout_message("n1", {"pending": pending, "kept": []}, 5)
    assert "pv/pv-9)" in msg and "pv/pv-10)" not in msg and "and 3 more (see volumes.pending)" in msg


# --- the wait against a scripted API server ----------------------------------------------------

class Storage:
    """Node n1's attached volumes as the API server keeps them; after ``detach_after`` reads of
    the node, its VolumeAttachments and status entries are gone (None: never)."""

    def __init__(self, attachments, attached, detach_after=None, pods=()):
        self.attachments = attachments
        self.node = node(attached=attached)
        self.detach_after = detach_after
        self.pods = list(pods)
        self.looks = 0

    def answer(self):
        def read_node(_query):
            self.looks += 1
            if self.detach_after is not None and self.looks > self.detach_after:
                self.attachments = []
                self.node["status"]["volumesAttached"] = []
            return 200, copy.deepcopy(self.node)

        return by_path({
            "/api/v1/nodes/n1": read_node,
            _volume_detach.VOLUME_ATTACHMENTS: lambda _q: (200, item_list("VolumeAttachmentList",
                                                                          copy.deepcopy(self.attachments))),
            _volume_detach.PERSISTENT_VOLUMES: lambda _q: (200, item_list("PersistentVolumeList", [pv("pv-1", "data")])),
            "/api/v1/pods": lambda _q: (200, item_list("PodList", self.pods)),
        })


def wait(server, timeout, once=False):
    clock = Clock()
    return _volume_detach.wait_detached(server.raw(), "n1", timeout, once=once, sleep=clock.sleep, clock=clock)


def test_the_wait_ends_when_the_attachments_are_gone(k8s_server):
    storage = Storage([va("va-1", "pv-1")], ["h-pv-1"], detach_after=2)
    result = wait(k8s_server(storage.answer()), 60)
    assert result["detached"] is True and result["pending"] == [] and result["polls"] == 3
    assert result["seconds"] == 2 * _volume_detach.POLL_INTERVAL


def test_the_wait_ends_at_its_timeout_with_what_is_still_attached(k8s_server):
    storage = Storage([va("va-1", "pv-1")], ["h-pv-1"])
    result = wait(k8s_server(storage.answer()), 5)
    assert result["detached"] is False and result["seconds"] == 5.0 and result["polls"] == 4
    assert names(result["pending"]) == [("VolumeAttachment", "va-1"),
                                        ("volumesAttached", "kubernetes.io/csi/%s^h-pv-1" % DRIVER)]


def test_check_mode_looks_once_and_does_not_wait(k8s_server):
    storage = Storage([va("va-1", "pv-1")], [])
    server = k8s_server(storage.answer())
    result = wait(server, 60, once=True)
    assert result["detached"] is False and result["polls"] == 1 and result["seconds"] == 0.0
    assert [p for _m, p in server.calls()] == ["/api/v1/nodes/n1", _volume_detach.VOLUME_ATTACHMENTS, "/api/v1/pods",
                                               _volume_detach.PERSISTENT_VOLUMES]


def test_a_node_with_nothing_attached_costs_two_requests(k8s_server):
    server = k8s_server(Storage([va("va-9", "pv-1", node_name="n2")], []).answer())
    result = wait(server, 60)
    assert result == {"pending": [], "kept": [], "detached": True, "polls": 1, "seconds": 0.0}
    assert [p for _m, p in server.calls()] == ["/api/v1/nodes/n1", _volume_detach.VOLUME_ATTACHMENTS]


def test_volumes_of_a_pod_that_stays_do_not_hold_the_wait(k8s_server):
    storage = Storage([va("va-1", "pv-1")], ["h-pv-1"], pods=[pod("agent", claims=["data"])])
    result = wait(k8s_server(storage.answer()), 60)
    assert result["detached"] is True and result["polls"] == 1
    assert [v["pods"] for v in result["kept"]] == [["shop/agent"], ["shop/agent"]]


@pytest.mark.parametrize("timeout, polls", [(0, 1), (1, 2), (4, 3)])
def test_the_last_look_comes_at_the_timeout(k8s_server, timeout, polls):
    result = wait(k8s_server(Storage([va("va-1", "pv-1")], []).answer()), timeout)
    assert result["polls"] == polls and result["seconds"] == float(timeout)
