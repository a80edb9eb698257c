"""Unit tests for _k8s_client.RawApi, api_path and api_exception, over real HTTP on 127.0.0.1.

The server is the scripted one of tests/unit/fake_k8s_server.py: every request is recorded (method,
path, query, headers, body) and answered from a script, so what RawApi sends and how it reads the
answers is checked on the wire, not by stubbing the client library.
"""
import ast
import json
import os
import socket
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    METADATA_ONLY,
    STRATEGIC_MERGE_PATCH,
    ApiException,
    K8sAccessError,
    RawApi,
    api_exception,
    api_path,
    build_api_client,
    describe_api_error,
    is_transient,
    retry_transient,
)
from tests.unit.fake_k8s_server import TOKEN, status_body

AGENT = "kubeops-test"


def test_call_sends_auth_agent_body_and_query(k8s_server):
    server = k8s_server(lambda request: (200, {"kind": "Node", "metadata": {"name": "n1"}}))
    raw = server.raw(user_agent=AGENT)
    node = raw.call("PATCH", api_path("/api/v1/nodes", "n1"), query=[("fieldManager", "me"), ("dryRun", None)],
                    body={"spec": {"unschedulable": True}}, content_type=STRATEGIC_MERGE_PATCH, count_as="patch node")
    assert node == {"kind": "Node", "metadata": {"name": "n1"}}
    sent = server.requests[0]
    assert (sent["method"], sent["path"], sent["query"]) == ("PATCH", "/api/v1/nodes/n1", [("fieldManager", "me")])
    assert sent["headers"]["authorization"] == "Bearer " + TOKEN
    assert sent["headers"]["user-agent"] == AGENT
    assert sent["headers"]["content-type"] == STRATEGIC_MERGE_PATCH
    assert sent["body"] == {"spec": {"unschedulable": True}}
    assert raw.counts == {"patch node": 1}


def test_get_sends_no_content_type(k8s_server):
    server = k8s_server(lambda request: (200, {}))
    raw = server.raw(user_agent=AGENT)
    raw.call("GET", "/api/v1/nodes/n1")
    assert "content-type" not in server.requests[0]["headers"]
    assert raw.counts == {"GET": 1}


def test_error_answer_raises_api_exception_the_error_text_understands(k8s_server):
    server = k8s_server(lambda request: (404, status_body(404, "NotFound", 'nodes "n1" not found')))
    raw = server.raw(user_agent=AGENT)
    with pytest.raises(ApiException) as err:
        raw.call("GET", api_path("/api/v1/nodes", "n1"))
    assert err.value.status == 404
    assert json.loads(err.value.body)["message"] == 'nodes "n1" not found'
    assert describe_api_error(err.value, "node/n1") == "node/n1: not found (404); `kubectl get nodes` lists the names"
    assert not is_transient(err.value)


def test_forbidden_answer_keeps_the_server_words(k8s_server):
    message = 'nodes "n1" is forbidden: User "x" cannot patch resource "nodes" in API group "" at the cluster scope'
    raw = k8s_server(lambda request: (403, status_body(403, "Forbidden", message))).raw(user_agent=AGENT)
    with pytest.raises(ApiException) as err:
        raw.call("PATCH", "/api/v1/nodes/n1", body={})
    text = describe_api_error(err.value, "node/n1")
    assert text.startswith("node/n1: forbidden (403): " + message)
    assert "kubectl auth can-i patch nodes" in text


def test_throttling_is_retried_and_retry_after_honoured(k8s_server):
    answers = [(429, status_body(429, "TooManyRequests", "slow down"), {"Retry-After": "0"}),
               (200, {"ok": True})]
    server = k8s_server(lambda request: answers.pop(0))
    # retries=False, as the drain uses it: otherwise urllib3 itself retries a 429 with Retry-After
    # (as it does for the generated client over the same pool) and retry_transient never sees it.
    raw = server.raw(retries=False)
    waits = []
    result = retry_transient(lambda: raw.call("GET", "/api/v1/nodes"), deadline=float("inf"),
                             describe="nodes", sleep=waits.append)
    assert result == {"ok": True}
    assert waits == [0.0]  # the Retry-After header reached retry_transient
    assert len(server.requests) == 2


def test_undecoded_body_for_callers_that_decode_elsewhere(k8s_server):
    answers = [(200, b'{"items": [1, 2]}'), (404, status_body(404, "NotFound", "gone"))]
    raw = k8s_server(lambda request: answers.pop(0)).raw(user_agent=AGENT)
    assert raw.call("GET", "/api/v1/pods", decode=False) == b'{"items": [1, 2]}'
    with pytest.raises(ApiException) as err:  # an error answer is decoded all the same
        raw.call("GET", "/api/v1/pods", decode=False)
    assert json.loads(err.value.body)["message"] == "gone"


def test_request_returns_status_without_raising(k8s_server):
    raw = k8s_server(lambda request: (429, status_body(429, "TooManyRequests", "pdb"))).raw(user_agent=AGENT)
    status, body, _headers = raw.request("POST", "/api/v1/namespaces/a/pods/b/eviction", body={})
    assert status == 429 and body["message"] == "pdb"


def test_empty_and_non_json_answers(k8s_server):
    answers = [(200, None), (502, b"<html>Bad Gateway from the proxy</html>")]
    raw = k8s_server(lambda request: answers.pop(0)).raw(user_agent=AGENT)
    assert raw.call("DELETE", "/api/v1/nodes/n1") is None
    with pytest.raises(ApiException) as err:
        raw.call("GET", "/api/v1/nodes/n1")
    assert "Bad Gateway from the proxy" in describe_api_error(err.value, "node/n1")
    assert is_transient(err.value)


def paged(items, page_size, fail_token=None):
    """An answer function listing ``items`` in pages; ``fail_token`` answers 410 once."""
    state = {"failed": False}

    def answer(request):
        query = dict(request["query"])
        start = int(query.get("continue") or 0)
        if fail_token is not None and query.get("continue") == fail_token and not state["failed"]:
            state["failed"] = True
            return 410, status_body(410, "Expired", "The provided continue parameter is too old")
        limit = int(query["limit"])
        assert limit == page_size
        chunk = items[start:start + limit]
        token = str(start + limit) if start + limit < len(items) else ""
        return 200, {"kind": "PodList", "metadata": {"continue": token}, "items": chunk}

    return answer


def test_list_all_pages_through_continue(k8s_server):
    items = [{"metadata": {"name": "p%d" % i}} for i in range(7)]
    server = k8s_server(paged(items, 3))
    raw = server.raw(user_agent=AGENT)
    got = raw.list_all("/api/v1/pods", [("fieldSelector", "spec.nodeName=n1")], accept=METADATA_ONLY,
                       count_as="list pods", page_size=3)
    assert got == items
    assert [r["query"] for r in server.requests] == [
        [("fieldSelector", "spec.nodeName=n1"), ("limit", "3")],
        [("fieldSelector", "spec.nodeName=n1"), ("limit", "3"), ("continue", "3")],
        [("fieldSelector", "spec.nodeName=n1"), ("limit", "3"), ("continue", "6")]]
    assert all(r["headers"]["accept"] == METADATA_ONLY for r in server.requests)
    assert raw.counts == {"list pods": 3}


def test_list_all_starts_over_when_the_continue_token_expired(k8s_server):
    items = [{"metadata": {"name": "p%d" % i}} for i in range(5)]
    server = k8s_server(paged(items, 2, fail_token="4"))
    raw = server.raw(user_agent=AGENT)
    assert raw.list_all("/api/v1/pods", page_size=2) == items  # no page twice, none missing
    assert [dict(r["query"]).get("continue") for r in server.requests] == [None, "2", "4", None, "2", "4"]


def test_list_all_error_on_first_page_raises(k8s_server):
    raw = k8s_server(lambda request: (403, status_body(403, "Forbidden", "no"))).raw(user_agent=AGENT)
    with pytest.raises(ApiException) as err:
        raw.list_all("/api/v1/pods")
    assert err.value.status == 403


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("retries", [None, False])
def test_connection_refused_names_the_server(retries):
    port = closed_port()
    raw = RawApi(build_api_client({"host": "https://127.0.0.1:%d" % port, "validate_certs": False}), retries=retries)
    with pytest.raises(Exception) as err:
        raw.call("GET", "/api/v1/nodes/n1", timeout=5)
    assert is_transient(err.value)
    msg = describe_api_error(err.value, "node/n1")
    assert msg.startswith("node/n1: cannot reach https://127.0.0.1:%d" % port), msg
    assert "refused" in msg.lower()
    with pytest.raises(K8sAccessError) as gave_up:
        retry_transient(lambda: raw.call("GET", "/api/v1/nodes/n1", timeout=5), deadline=0, describe="node/n1")
    assert "cannot reach https://127.0.0.1:%d" % port in gave_up.value.message


def test_api_exception_shape():
    exc = api_exception(409, status_body(409, "Conflict", "the object has been modified"), {"X": "1"})
    assert (exc.status, exc.reason, exc.headers) == (409, "Conflict", {"X": "1"})
    assert "the object has been modified" in describe_api_error(exc, "node/n1")
    bare = api_exception(503, None)
    assert bare.status == 503 and bare.reason == "service unavailable" and is_transient(bare)


SEGMENT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)


@settings(max_examples=int(os.environ.get("KUBEOPS_FUZZ_EXAMPLES", "300")), deadline=None)
@given(segments=st.lists(SEGMENT, min_size=1, max_size=4))
def test_api_path_keeps_every_name_one_segment(segments):
    path = api_path("/api/v1/namespaces", *segments)
    assert "?" not in path and "#" not in path
    rest = path[len("/api/v1/namespaces/"):].split("/")
    assert [unquote(part) for part in rest] == segments


# ------------------------------------------------------------------------------------------------
# Guard: the generated API classes stay out of the modules
# ------------------------------------------------------------------------------------------------

PLUGINS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "plugins")


def generated_api_uses(path):
    """Names of generated API classes (``CoreV1Api`` & co.) a plugin file imports or touches."""
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kubernetes"):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.Attribute):
            names = [node.attr]
        found += [name for name in names if name.endswith("Api") and name[:1].isupper() and name != "RawApi"
                  and not name.startswith(("Drain", "Node", "Raw"))]
    return found


def plugin_files():
    for root, _dirs, files in os.walk(os.path.abspath(PLUGINS)):
        for name in files:
            if name.endswith(".py"):
                yield os.path.join(root, name)


def test_plugins_do_not_use_the_generated_api_classes():
    """Importing ``kubernetes.client.CoreV1Api`` costs ~0.65 s of CPU with the pydantic-based client
    (kubernetes >= 35): more than most module runs spend on their own work. Requests go through
    ``_k8s_client.RawApi``; this fails when a plugin starts using a generated API class again."""
    offenders = dict((os.path.relpath(path, PLUGINS), generated_api_uses(path)) for path in plugin_files())
    assert {path: names for path, names in offenders.items() if names} == {}
    assert len(offenders) > 20  # the walk really saw the plugins
