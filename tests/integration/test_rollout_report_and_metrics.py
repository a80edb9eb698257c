"""The rollout's HTML report in a real headless browser, and its metrics in a real Pushgateway.

One short rollout on kwok nodes (the rollout fixture of test_rolling_maintenance: two nodes to roll,
one to take the pods): the first node is done, a hook before the drain fails the second with a
message full of HTML. Then:

- Chromium (Debian's package, tests/bootstrap.sh installs it) loads report.html headless: the
  DOM it dumps has the failure on top and one timeline row per node with a bar per phase, and its
  screenshot (kept under the test's tmp dir, path printed) shows the failure banner's red at the top.
- The Pushgateway (built from the Go module proxy by tests/testbed/build-pushgateway.sh, cached)
  on 127.0.0.1 got the metrics after each node: scraped back from its /metrics and parsed, they
  say what report.json says; the node-exporter textfile says the same.
"""
import json
import os
import re
import shutil
import struct
import subprocess
import time
import urllib.request
import zlib

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.conftest import register_secret
# rollout: the fixture of test_rolling_maintenance (two kwok nodes to roll, one to take the pods)
from tests.integration.test_rolling_maintenance import deployment, rollout, wait_ready  # noqa: F401  # pylint: disable=unused-import
from tests.unit.plugins.plugin_utils.test__rollout_metrics import strict_parse

pytestmark = pytest.mark.integration

PREFIX = "kubeops_node_maintenance_"
HOOK_MESSAGE = "<script>alert('x')</script> & \"quoted\" <b>not bold</b>: refused by the test's hook"
# Chromium must not reach out on its own (updates, safe browsing, DNS prefetch): the machine
# talks to loopback only, so every name resolves nowhere and any proxied request dies on port 9.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability",
                  "--disable-client-side-phishing-detection", "--metrics-recording-only",
                  "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9"]


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory):
    """A real Pushgateway on a free loopback port, for this module; stopped (by its pid) after it."""
    started = time.monotonic()
    binary = subprocess.run(["bash", os.path.join(REPO_ROOT, "tests", "testbed", "build-pushgateway.sh")],
                            check=True, capture_output=True, text=True, timeout=1800).stdout.strip()
    print("pushgateway %s ready in %.1fs (build or cache)" % (binary, time.monotonic() - started))
    port = _free_port()
    log = open(tmp_path_factory.mktemp("pushgateway") / "pushgateway.log", "w")
    proc = subprocess.Popen([binary, "--web.listen-address=127.0.0.1:%d" % port, "--log.level=warn"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = "http://127.0.0.1:%d" % port
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the Pushgateway did not start; see %s" % log.name
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def chromium():
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "no chromium: tests/bootstrap.sh installs Debian's package (apt-get install chromium)"
    return binary


def run_chromium(tmp_path, *args):
    profile = tmp_path / "chromium-profile"
    res = subprocess.run([chromium()] + CHROMIUM_FLAGS + ["--user-data-dir=%s" % profile] + list(args),
                         capture_output=True, text=True, timeout=180, check=False)
    assert res.returncode == 0, "chromium failed (%d): %s" % (res.returncode, res.stderr[-3000:])
    return res.stdout


def png_pixels(path):
    """(width, height, rows of (r, g, b)) of an 8-bit RGB or RGBA non-interlaced PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunks.setdefault(kind, []).append(data[pos + 8:pos + 8 + length])
        pos += 12 + length
    width, height, depth, color, _c, _f, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"][0])
    assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
    channels = 3 if color == 2 else 4
    raw = zlib.decompress(b"".join(chunks[b"IDAT"]))
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
            elif kind == 4:
                guess = left + up - corner
                pa, pb, pc = abs(guess - left), abs(guess - up), abs(guess - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append([tuple(line[x * channels:x * channels + 3]) for x in range(width)])
        previous = line
    return width, height, rows


class Dom:
    """The elements of an HTML text in order: (tag, attributes)."""

    def __init__(self, text):
        from html.parser import HTMLParser

        elements, texts = [], []

        class Parser(HTMLParser):
            def handle_starttag(self, tag, attrs):
                elements.append((tag, dict(attrs)))

            def handle_data(self, data):
                texts.append(data)

        parser = Parser(convert_charrefs=True)
        parser.feed(text)
        parser.close()
        self.elements, self.text = elements, "".join(texts)

    def with_class(self, tag, name):
        return [(i, attrs) for i, (t, attrs) in enumerate(self.elements) if t == tag and name in attrs.get("class", "").split()]


def ours(text):
    """Our families out of a /metrics text (the Pushgateway adds its own): the lines of each
    family whose name starts with PREFIX, as strict_parse reads them."""
    kept, keep = [], False
    for line in text.splitlines():
        if line.startswith("# HELP "):
            keep = line.split()[2].startswith(PREFIX)
        if keep:
            kept.append(line)
    return "\n".join(kept) + "\n"


def sample(series, family, **labels):
    """The value of the one series of ``family`` whose labels include ``labels``."""
    found = [v for (name, have), v in series.items() if name == PREFIX + family and set(labels.items()) <= have]
    assert len(found) == 1, (family, labels, found)
    return found[0]


def test_a_failed_rollout_report_in_a_browser_and_its_metrics_in_a_pushgateway(
        cluster, namespace, rollout, pushgateway, tmp_path):
    cluster.apps.create_namespaced_deployment(namespace, deployment("web", 4, rollout.pool))
    wait_ready(cluster, namespace, "web", 4)
    first, second = rollout.nodes[:2]
    hook = tmp_path / "hook.yml"
    hook.write_text(json.dumps([{"name": "A hook that refuses the second node", "ansible.builtin.fail": {
        "msg": HOOK_MESSAGE}, "when": "inventory_hostname == %s" % json.dumps(second)}]))
    textfile = tmp_path / "textfile" / "kubeops_node_maintenance.prom"
    textfile.parent.mkdir()
    token = register_secret("Bearer pushgateway-test-token-0d9c6f2a71", "the Pushgateway token")

    started = time.monotonic()
    res = rollout("html-metrics", node_maintenance_hook_before_drain=str(hook),
                  node_maintenance_metrics_pushgateway_url=pushgateway,
                  node_maintenance_metrics_pushgateway_headers={"Authorization": token},
                  node_maintenance_metrics_textfile=str(textfile),
                  # web's replicas may share a node of this small pool: not what this test is about
                  node_maintenance_preflight_fail_on=["capacity"])
    rollout_seconds = time.monotonic() - started
    assert res.returncode != 0, res.stdout[-4000:]
    assert "refused by the test's hook" in res.stdout
    assert "not delivered" not in res.stdout
    # after each node: once for the first node, once for the second
    assert len(re.findall(r"^TASK \[[^]]*Write and push the rollout metrics\]", res.stdout, re.M)) == 2
    report = rollout.report("html-metrics")
    by_node = {n["node"]: n for n in report["nodes"]}
    assert (by_node[first]["status"], by_node[second]["status"]) == ("done", "failed")
    assert by_node[first]["pods_evicted"] >= 1

    # --- the HTML report in Chromium ---
    page = tmp_path / "reports" / "html-metrics" / "report.html"
    source = page.read_text()
    for needle in ("<script>alert", "<b>not bold", "<link", "src=", "href=", "url("):
        assert needle not in source, needle
    started = time.monotonic()
    dom = Dom(run_chromium(tmp_path, "--dump-dom", page.as_uri()))
    screenshot = tmp_path / "report.png"
    run_chromium(tmp_path, "--screenshot=%s" % screenshot, "--window-size=1280,1000", "--hide-scrollbars",
                 page.as_uri())
    browser_seconds = time.monotonic() - started
    print("rollout %.1fs, chromium (dump-dom + screenshot) %.1fs; screenshot: %s"
          % (rollout_seconds, browser_seconds, screenshot))

    assert "script" not in [tag for tag, _attrs in dom.elements]
    sections = [attrs.get("id") for tag, attrs in dom.elements if tag == "section"]
    assert sections[0] == "failure", sections
    assert HOOK_MESSAGE in dom.text and second in dom.text
    rows = dom.with_class("g", "row")
    assert [attrs["data-node"] for _i, attrs in rows] == [first, second]
    for index, (position, attrs) in enumerate(rows):
        end = rows[index + 1][0] if index + 1 < len(rows) else len(dom.elements)
        phases = [a["data-phase"] for t, a in dom.elements[position:end] if t == "rect" and "bar" in a.get("class", "").split()]
        node = by_node[attrs["data-node"]]
        recorded = [p for p in ("preflight", "drain", "action", "data_disks", "return", "verify", "after_node_hook")
                    if p in node["phases"]]
        assert phases == recorded + ([node["failed_phase"]] if node["status"] == "failed" else []), (phases, node)
    assert len(by_node[first]["phases"]) >= 4  # preflight, drain, action, return, verify

    width, height, pixels = png_pixels(screenshot)
    assert (width, height) == (1280, 1000)
    assert len({pixel for row in pixels[::20] for pixel in row[::20]}) > 8, "the screenshot is all one colour"
    red_rows = [y for y, row in enumerate(pixels) if any(abs(r - 0xd1) < 24 and g < 0x50 and b < 0x60 for r, g, b in row)]
    assert red_rows and red_rows[0] < height // 3, "the failure's red border is not near the top"

    # --- the metrics: scraped back from the Pushgateway, and the textfile ---
    with urllib.request.urlopen(pushgateway + "/metrics", timeout=10) as answer:
        scraped = answer.read().decode()
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        text_string_to_metric_families = None
    if text_string_to_metric_families is not None:  # the whole scrape, the Pushgateway's own metrics too
        assert "push_time_seconds" in {family.name for family in text_string_to_metric_families(scraped)}
    grouping = {"job": "kubeops_node_maintenance", "rollout": "html-metrics"}
    for series in (strict_parse(ours(scraped)), strict_parse(textfile.read_text())):
        assert sample(series, "rollout_in_progress", rollout="html-metrics") == 0
        assert sample(series, "rollout_nodes", result="done", rollout="html-metrics") == 1
        assert sample(series, "rollout_nodes", result="failed", rollout="html-metrics") == 1
        assert sample(series, "node_result", node=second, result="failed") == 1
        for name, node in by_node.items():
            assert sample(series, "node_pods_evicted", node=name) == node["pods_evicted"]
            assert sample(series, "node_duration_seconds", node=name) == node["seconds"]
            for phase, seconds in node["phases"].items():
                assert sample(series, "node_phase_duration_seconds", node=name, phase=phase) == seconds
        assert sample(series, "node_drain_retries", node=first) >= 0
        assert abs(sample(series, "rollout_last_update_timestamp_seconds", rollout="html-metrics") - time.time()) < 600
    scraped_series = strict_parse(ours(scraped))
    assert sample(scraped_series, "rollout_in_progress", **grouping) == 0, "the Pushgateway's group labels"
