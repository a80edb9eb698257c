"""rollout_metrics: the push (real HTTP on 127.0.0.1 against a scripted server), and the role's
report tasks (report.yml, metrics.yml) through ansible-playbook on localhost without a cluster:
a Pushgateway that does not answer warns and the rollout goes on, unless
node_maintenance_metrics_required; the textfile is written; no credential is shown."""
from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading

import pytest
import yaml

from ansible_collections.kubeops.node_maintenance.plugins.action import rollout_metrics
from tests.conftest import COLLECTIONS_ROOT
from tests.unit.plugins.plugin_utils.test__rollout_metrics import parse, value

ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
TOKEN = "Bearer metrics-token-4f0c9e1d2b"
PASSWORD = "pg-password-77a1c3"


class Scripted(http.server.ThreadingHTTPServer):
    """Answers each request with the next status of ``statuses`` (the last one repeats), and keeps
    what it was sent."""

    def __init__(self, statuses):
        self.statuses, self.requests = list(statuses), []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(handler):  # noqa: N805  # pylint: disable=no-self-argument
                body = handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
                self.requests.append((handler.command, handler.path, dict(handler.headers), body))
                status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
                handler.send_response(status)
                answer = b"" if status < 300 else b"pushed metrics are invalid or inconsistent"
                handler.send_header("Content-Length", str(len(answer)))
                handler.end_headers()
                handler.wfile.write(answer)

            def log_message(handler, *args):  # noqa: N805  # pylint: disable=no-self-argument
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server_address[1]

    def close(self):
        self.shutdown()
        self.server_close()


@pytest.fixture
def server():
    started = []

    def start(*statuses):
        started.append(Scripted(statuses or (200,)))
        return started[-1]

    yield start
    for one in started:
        one.close()


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_push_puts_the_text_with_its_content_type_and_headers(server):
    pg = server(200)
    sleeps = []
    status, error = rollout_metrics.push(pg.url + "/metrics/job/j/rollout/r1", b"x 1\n", {"Authorization": TOKEN},
                                         5, True, 3, 0.5, sleep=sleeps.append)
    assert (status, error, sleeps) == (200, None, [])
    [(method, path, headers, body)] = pg.requests
    assert (method, path, body) == ("PUT", "/metrics/job/j/rollout/r1", b"x 1\n")
    assert headers["Authorization"] == TOKEN
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"


def test_push_retries_what_asking_again_may_fix_and_stops_at_a_refusal(server):
    busy = server(503, 502, 200)
    sleeps = []
    assert rollout_metrics.push(busy.url, b"", {}, 5, True, 3, 0.5, sleep=sleeps.append) == (200, None)
    assert sleeps == [0.5, 0.5] and len(busy.requests) == 3

    refused = server(400)
    status, error = rollout_metrics.push(refused.url, b"", {}, 5, True, 3, 0, sleep=lambda _s: None)
    assert status == 400 and len(refused.requests) == 1
    assert error == "the Pushgateway answered HTTP 400: pushed metrics are invalid or inconsistent after 1 attempt"

    status, error = rollout_metrics.push("http://127.0.0.1:%d/metrics/job/j" % closed_port(), b"", {}, 5, True, 2, 0,
                                         sleep=lambda _s: None)
    assert status is None
    assert error.startswith("no answer from the Pushgateway (") and error.endswith(") after 2 attempts")
    assert "127.0.0.1" not in error


def _report_play(tmp_path, **role_vars):
    """Runs the role's report.yml (the report and the metrics) on localhost for two nodes, one done
    and one failed, as the rollout leaves them; returns the CompletedProcess."""
    nodes = [{"node": "w1", "status": "done", "seconds": 20.0, "pods_evicted": 2, "checks": {"capacity": "pass"},
              "phases": {"preflight": 0.5, "drain": 6.0, "action": 1.0, "return": 0.4, "verify": 2.0}},
             {"node": "w2", "status": "failed", "seconds": 4.0, "pods_evicted": 0, "phases": {"preflight": 0.6},
              "failed_phase": "drain", "failed_task": "Cordon and drain (evict)", "message": "drain <timed out>"}]
    for entry in nodes:
        entry.update(action="none", rollout="r1", resumed_from=None, message=entry.get("message", ""))
    book = tmp_path / "play.yml"
    hosts = [{"hosts": "nodes", "gather_facts": False, "tasks": [
        {"name": "As the rollout leaves the node", "ansible.builtin.set_fact": {
            "__node_maintenance_result": "{{ nodes[inventory_hostname] }}",
            "__node_maintenance_started_at": "{{ 1796180000.0 + (30 if inventory_hostname == 'w2' else 0) }}"},
         "when": "inventory_hostname in nodes"},
        {"name": "Report", "ansible.builtin.include_role": {"name": "kubeops.node_maintenance.node_maintenance",
                                                            "tasks_from": "report.yml"}}]}]
    book.write_text(yaml.safe_dump(hosts))
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("[nodes]\nw1\nw2\n[nodes:vars]\nansible_connection=local\nansible_python_interpreter=%s\n"
                         % sys.executable)
    extra = {"nodes": {n["node"]: n for n in nodes}, "node_maintenance_rollout_id": "r1",
             "node_maintenance_report_dir": str(tmp_path / "reports")}
    extra.update(role_vars)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_ROOT, ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_DEPRECATION_WARNINGS="False")
    return subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inventory), str(book), "-e", json.dumps(extra)],
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def test_a_pushgateway_that_does_not_answer_warns_and_the_textfile_is_still_written(tmp_path):
    textfile = tmp_path / "kubeops.prom"
    res = _report_play(tmp_path, node_maintenance_metrics_textfile=str(textfile),
                       node_maintenance_metrics_pushgateway_url="http://kubeops:%s@127.0.0.1:%d" % (PASSWORD, closed_port()),
                       node_maintenance_metrics_pushgateway_headers={"Authorization": TOKEN},
                       node_maintenance_metrics_pushgateway_retries=2, node_maintenance_metrics_pushgateway_delay=0)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "WARNING: rollout metrics not delivered: no answer from the Pushgateway" in out
    assert "the rollout goes on" in out
    assert PASSWORD not in out and TOKEN not in out
    series = parse(textfile.read_text())
    assert value(series, "rollout_in_progress", rollout="r1") == 0, "a failed node stopped the rollout"
    assert value(series, "rollout_nodes", rollout="r1", result="failed") == 1
    assert value(series, "node_phase_duration_seconds", rollout="r1", cluster="default", node="w1", phase="drain") == 6
    assert oct(os.stat(textfile).st_mode & 0o777) == "0o644"
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".kubeops.prom")]  # no temporary file left
    assert {"report.json", "report.md", "report.html"} <= set(os.listdir(tmp_path / "reports" / "r1"))


def test_metrics_required_stops_when_they_cannot_be_delivered(tmp_path):
    res = _report_play(tmp_path, node_maintenance_metrics_textfile=str(tmp_path / "missing-dir" / "kubeops.prom"),
                       node_maintenance_metrics_pushgateway_url="http://127.0.0.1:%d" % closed_port(),
                       node_maintenance_metrics_pushgateway_headers={"Authorization": TOKEN},
                       node_maintenance_metrics_pushgateway_retries=1, node_maintenance_metrics_required=True)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "ERROR: rollout metrics not delivered: cannot write the textfile" in out
    assert "node_maintenance_metrics_required is true; the node itself is done" in out
    assert TOKEN not in out


def test_metrics_reach_a_pushgateway_while_the_rollout_runs(tmp_path, server):
    pg = server(200)
    # w2 without a result yet: the rollout is still running
    res = _report_play(tmp_path, node_maintenance_metrics_pushgateway_url=pg.url,
                       node_maintenance_metrics_pushgateway_job="node maintenance/nightly",
                       nodes={"w1": {"node": "w1", "status": "done", "seconds": 2.0, "pods_evicted": 1, "phases": {},
                                     "action": "none", "resumed_from": None, "message": ""}})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "not delivered" not in res.stdout
    paths = {path for _method, path, _headers, _body in pg.requests}
    assert paths == {"/metrics/job@base64/bm9kZSBtYWludGVuYW5jZS9uaWdodGx5/rollout/r1"}
    series = parse(pg.requests[-1][3].decode())
    assert value(series, "rollout_in_progress", rollout="r1") == 1
    assert value(series, "rollout_nodes", rollout="r1", result="done") == 1
