"""_node_api's taint writes (k8s_node_taint) against a scripted API server on 127.0.0.1
(fake_k8s_server): the guarded JSON patch, the retry after a conflicting write, the paged pod list,
the option checks and the module's result. Whole module runs are in
tests/unit/plugins/modules/test_k8s_node_taint.py, the real API server in
tests/integration/test_k8s_node_taint.py.
"""
from __future__ import annotations

import copy
import time

import pytest

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _node_api
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import ApiException, K8sAccessError
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import ModuleFailure
from tests.unit.fake_k8s_server import not_found, status_body

NODE_PATH = "/api/v1/nodes/n1"
PODS_PATH = "/api/v1/pods"
OLD = {"key": "old", "effect": "NoExecute", "timeAdded": "2026-11-30T05:35:33Z"}
MAINT = {"key": "maint", "value": "now", "effect": "NoExecute"}
REJECTED = (422, status_body(422, "Invalid", "the server rejected our request due to an error in our request"))


def pod(name, tolerations=()):
    return {"metadata": {"namespace": "shop", "name": name, "uid": "uid-" + name},
            "spec": {"nodeName": "n1", "tolerations": list(tolerations)}, "status": {"phase": "Running"}}


class TaintStore:
    """Node n1 that applies JSON patches (``test`` + ``add``) as the API server does; its pods come
    in pages of one. ``interfere`` other writes land right after our reads."""

    def __init__(self, taints=(OLD,), pods=(), interfere=0):
        self.node = {"metadata": {"name": "n1", "resourceVersion": "5"}, "spec": {"taints": list(taints)}}
        self.pods = list(pods)
        self.interfere = interfere
        self.refuse = None

    def __call__(self, request):
        method, path, query = request["method"], request["path"], dict(request["query"])
        if path == PODS_PATH and method == "GET":
            start = int(query.get("continue") or 0)
            page = {"kind": "PodList", "metadata": {"resourceVersion": "9"}, "items": self.pods[start:start + 1]}
            if start + 1 < len(self.pods):
                page["metadata"]["continue"] = str(start + 1)
            return 200, page
        if path != NODE_PATH:
            return not_found("nodes", path.rsplit("/", 1)[-1])
        if method == "GET":
            answer = copy.deepcopy(self.node)
            if self.interfere:
                self.interfere -= 1
                self.node["spec"]["taints"].append({"key": "other-%d" % self.interfere, "effect": "NoSchedule"})
                self._bump()
            return 200, answer
        if method == "PATCH":
            assert request["headers"]["content-type"] == "application/json-patch+json"
            if self.refuse:
                return self.refuse
            test, add = request["body"]
            assert test["op"] == "test" and test["path"] == "/metadata/resourceVersion"
            assert add["op"] == "add" and add["path"] == "/spec/taints"
            if test["value"] != self.node["metadata"]["resourceVersion"]:
                return REJECTED
            self.node["spec"]["taints"] = add["value"]
            self._bump()
            return 200, copy.deepcopy(self.node)
        return 405, status_body(405, "MethodNotAllowed", "not allowed")

    def _bump(self):
        self.node["metadata"]["resourceVersion"] = str(int(self.node["metadata"]["resourceVersion"]) + 1)


def test_a_conflicting_write_is_read_again_and_redone(k8s_server):
    store = TaintStore(interfere=2)
    server = k8s_server(store)
    deadline = time.monotonic() + 60
    nodes = _node_api.NodeTaints(server.raw(), "n1", deadline)
    before, after, change, conflicts = _node_api.converge_taints(nodes, [MAINT], "present", False, False, deadline,
                                                                 sleep=lambda s: None)
    assert conflicts == 2 and change["changed"] is True
    assert [m for m, _p in server.calls()] == ["GET", "PATCH"] * 3
    assert [t["key"] for t in before["spec"]["taints"]] == ["old", "other-1", "other-0"]
    assert [t["key"] for t in after["spec"]["taints"]] == ["old", "other-1", "other-0", "maint"]
    assert after == store.node
    # the untouched taint goes back exactly as the API server wrote it
    assert server.requests[-1]["body"][1]["value"][0] == OLD


def test_a_refused_write_with_the_node_unchanged_is_an_error_not_a_conflict(k8s_server):
    store = TaintStore()
    store.refuse = REJECTED
    server = k8s_server(store)
    deadline = time.monotonic() + 60
    with pytest.raises(ApiException) as refused:
        _node_api.converge_taints(_node_api.NodeTaints(server.raw(), "n1", deadline), [MAINT], "present", False,
                                  False, deadline, sleep=lambda s: None)
    assert refused.value.status == 422 and [m for m, _p in server.calls()] == ["GET", "PATCH", "GET"]


def test_pods_are_listed_page_by_page_for_the_node(k8s_server):
    server = k8s_server(TaintStore(pods=[pod("a"), pod("b"), pod("c")]))
    pods = _node_api.NodeTaints(server.raw(), "n1", time.monotonic() + 60).pods()
    assert [p["metadata"]["name"] for p in pods] == ["a", "b", "c"]
    assert [dict(r["query"]).get("continue") for r in server.requests] == [None, "1", "2"]
    assert all(dict(r["query"])["fieldSelector"] == "spec.nodeName=n1" and dict(r["query"])["limit"] == "500"
               for r in server.requests)


def test_a_conflict_is_a_409_or_a_422_with_the_node_changed():
    assert _node_api.is_write_conflict(ApiException(status=409), "5", "5") is True
    assert _node_api.is_write_conflict(ApiException(status=422), "5", "6") is True
    assert _node_api.is_write_conflict(ApiException(status=422), "5", "5") is False
    assert _node_api.is_write_conflict(ApiException(status=500), "5", "6") is False


def test_a_node_that_keeps_changing_fails_at_the_deadline_with_nothing_changed(k8s_server):
    store = TaintStore(interfere=100)
    server = k8s_server(store)
    clock = iter([0.0, 0.0, 10.0])
    with pytest.raises(K8sAccessError) as failed:
        _node_api.converge_taints(_node_api.NodeTaints(server.raw(), "n1", time.monotonic() + 60), [MAINT],
                                  "present", False, False, 5.0, clock=lambda: next(clock), sleep=lambda s: None)
    assert failed.value.status == 409
    assert failed.value.message == ("node/n1: the node kept changing while its taints were written (3 conflicting "
                                    "writes); nothing was changed, run the task again")
    assert all(t["key"] != "maint" for t in store.node["spec"]["taints"])


@pytest.mark.parametrize("taints, state, replace, msg", [
    ([{"key": "a"}], "absent", True, "replace=true applies to state=present only"),
    ([{"key": "a"}], "present", False, "invalid taints for node/n1: "),
])
def test_options_it_cannot_act_on_are_refused(taints, state, replace, msg):
    with pytest.raises(ModuleFailure) as refused:
        _node_api.check_taint_request("n1", taints, state, replace)
    assert refused.value.msg.startswith(msg) and refused.value.fields == {}
    _node_api.check_taint_request("n1", [MAINT], "present", False)  # a good request passes


def test_taint_node_returns_the_result_and_warns_of_the_noexecute_evictions(k8s_server):
    store = TaintStore(pods=[pod("web")])
    server = k8s_server(store)
    warned = []
    result = _node_api.taint_node(server.raw(), "n1", [MAINT], "present", False, True, time.monotonic() + 60,
                                  True, warned.append)
    assert result["changed"] is True and result["name"] == "n1" and result["conflict_retries"] == 0
    assert result["taints_before"] == [OLD] and [t["key"] for t in result["taints"]] == ["old", "maint"]
    assert result["resource_version"] == "5" and store.node["spec"]["taints"] == [OLD], "check mode writes nothing"
    assert result["diff"]["before"] == {"spec": {"taints": [OLD]}}
    assert result["diff"]["after"] == {"spec": {"taints": result["taints"]}}
    assert [e["name"] for e in result["noexecute_evictions"]] == ["web"]
    (warning,) = warned
    assert warning.startswith("The NoExecute taint maint=now:NoExecute on node/n1 would delete 1 pod(s) at once")


def test_removing_a_taint_lists_no_pods_and_warns_of_nothing(k8s_server):
    store = TaintStore(pods=[pod("web")])
    server = k8s_server(store)
    result = _node_api.taint_node(server.raw(), "n1", [{"key": "old"}], "absent", False, False,
                                  time.monotonic() + 60, False, lambda msg: pytest.fail("warned: " + msg))
    assert result["removed"] == [OLD] and result["taints"] == [] and result["noexecute_evictions"] == []
    assert "diff" not in result and [p for _m, p in server.calls()] == [NODE_PATH, NODE_PATH]


LB = "node.kubernetes.io/exclude-from-external-load-balancers"


class LabelledNode:
    """Node n1 with labels: records the JSON patches it gets and answers with the node after them."""

    def __init__(self, labels):
        self.node = {"metadata": {"name": "n1", "resourceVersion": "5", "labels": dict(labels)}, "spec": {}}
        self.patches = []

    def __call__(self, request):
        if request["method"] == "PATCH":
            self.patches.append(request["body"])
            for op in request["body"][1:]:
                if op["path"] == "/spec/taints":
                    self.node["spec"]["taints"] = op["value"]
                elif op["path"] == "/spec/unschedulable":
                    self.node["spec"]["unschedulable"] = op["value"]
                elif op["op"] == "add":
                    self.node["metadata"]["labels"][LB] = op["value"]
                else:
                    self.node["metadata"]["labels"].pop(LB)
            self.node["metadata"]["resourceVersion"] = "6"
        return 200, copy.deepcopy(self.node)


def taint(server, check_mode=False, diff=False, **options):
    return _node_api.taint_node(server.raw(), "n1", [MAINT], options.pop("state", "present"), False, check_mode,
                                time.monotonic() + 60, diff, lambda msg: None, **options)


def test_the_load_balancer_label_goes_into_the_guarded_taint_write(k8s_server):
    store = LabelledNode({"zone": "a"})
    server = k8s_server(store)
    result = taint(server, diff=True, exclude_from_load_balancers=True)
    assert result["changed"] is True and result["labels_added"] == [LB] and result["labels_removed"] == []
    assert result["excluded_from_load_balancers"] is True
    (patch,) = store.patches
    assert patch[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "5"}
    assert patch[2] == {"op": "add", "path": "/metadata/labels/node.kubernetes.io~1exclude-from-external-load-balancers",
                        "value": "true"}
    assert result["diff"]["before"]["metadata"] == {"labels": {LB: None}}
    assert result["diff"]["after"]["metadata"] == {"labels": {LB: "true"}}
    # the taint there and the label there: no write, no change
    again = taint(server, exclude_from_load_balancers=True)
    assert again["changed"] is False and again["labels_added"] == [] and len(store.patches) == 1


def test_the_return_takes_the_label_off_with_the_taints(k8s_server):
    store = LabelledNode({LB: "true"})
    store.node["spec"]["taints"] = [MAINT]
    server = k8s_server(store)
    result = taint(server, state="absent", unschedulable=False, exclude_from_load_balancers=False)
    assert result["changed"] is True and result["labels_removed"] == [LB] and result["excluded_from_load_balancers"] is False
    (patch,) = store.patches
    assert patch[-1] == {"op": "remove", "path": "/metadata/labels/node.kubernetes.io~1exclude-from-external-load-balancers"}
    assert store.node["metadata"]["labels"] == {} and store.node["spec"]["taints"] == []


def test_a_label_alone_is_a_change_and_check_mode_writes_nothing(k8s_server):
    store = LabelledNode({})
    store.node["spec"]["taints"] = [MAINT]
    server = k8s_server(store)
    result = taint(server, check_mode=True, exclude_from_load_balancers=True)
    assert result["changed"] is True and result["labels_added"] == [LB] and store.patches == []
    assert taint(server, exclude_from_load_balancers=None)["changed"] is False  # not given: not looked at


def test_the_cordon_writes_the_label_in_its_patch_and_reports_it(k8s_server):
    node = {"metadata": {"name": "n1", "labels": {}}, "spec": {}}
    bodies = []

    def answer(request):
        if request["method"] == "PATCH":
            bodies.append(request["body"])
            node["spec"].update(request["body"].get("spec") or {})
            node["metadata"]["labels"].update(request["body"]["metadata"]["labels"])
        return 200, copy.deepcopy(node)

    server = k8s_server(answer)
    changed, before, after = _node_api.set_unschedulable(server.raw(), "n1", True, False, time.monotonic() + 60,
                                                         exclude_from_load_balancers=True)
    assert changed and bodies == [{"spec": {"unschedulable": True}, "metadata": {"labels": {LB: "true"}}}]
    result = _node_api.cordon_result("n1", changed, before, after, True)
    assert result["labels_added"] == [LB] and result["excluded_from_load_balancers"] is True
    assert result["diff"]["after"] == {"spec": {"unschedulable": True}, "metadata": {"labels": {LB: "true"}}}
    # cordoned and labelled already: nothing to write
    assert _node_api.set_unschedulable(server.raw(), "n1", True, False, time.monotonic() + 60,
                                       exclude_from_load_balancers=True)[0] is False
    assert len(bodies) == 1


def test_taint_intent_is_what_the_write_then_adds():
    on_node = [OLD, {"key": "maint", "value": "old", "effect": "NoExecute"}]
    node = {"metadata": {"name": "n1", "labels": {}}, "spec": {"taints": on_node}}
    wanted = [MAINT, {"key": "old", "effect": "NoExecute"}, {"key": "new", "effect": "NoSchedule"}]
    intent = _node_api.taint_intent(node, wanted, "present", False, exclude_from_load_balancers=True)
    # maint's value changes (re-added), old is there, new is added; the label is added
    assert [t["key"] for t in intent["taints_added"]] == ["maint", "new"]
    assert intent["labels_added"] == ["node.kubernetes.io/exclude-from-external-load-balancers"]
    assert _node_api.taint_intent(node, [{"key": "old"}], "absent", False) == {"taints_added": [], "labels_added": []}
