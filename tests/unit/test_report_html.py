"""The role's HTML report template (roles/node_maintenance/templates/report.html.j2), rendered by
ansible-core's own templating in this process: self-contained, everything from the cluster escaped,
the failure on top, one timeline row per node with a bar per phase on one shared axis.

A real browser renders a report of a real rollout in tests/integration/test_rollout_report_html.py.
"""
import html.parser
import os
import re

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from tests.conftest import REPO_ROOT

try:
    from ansible.template import trust_as_template
except ImportError:  # ansible-core before 2.19 templates every string not marked unsafe
    from ansible.utils.unsafe_proxy import wrap_var as from_modules

    def trust_as_template(text):
        return text
else:
    def from_modules(value):
        """ansible-core 2.19 trusts no variable's strings as templates: nothing to mark."""
        return value

TEMPLATE = os.path.join(REPO_ROOT, "roles", "node_maintenance", "templates", "report.html.j2")
PHASE_ORDER = ["preflight", "drain", "action", "data_disks", "return", "verify", "after_node_hook", "done"]
T0 = 1796180000.0


class Page(html.parser.HTMLParser):
    """Elements (tag, attributes) in document order, with the text inside each element of interest."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.elements, self.text, self._open = [], [], []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def find(self, tag, **wanted):
        """Elements ``tag`` whose attributes have the ``wanted`` values (``class_``: one of its classes;
        ``data_x``: attribute ``data-x``)."""
        found = []
        for name, attrs in self.elements:
            if name != tag:
                continue
            if all(value in (attrs.get("class") or "").split() if key == "class_"
                   else attrs.get(key.replace("_", "-")) == value for key, value in wanted.items()):
                found.append(attrs)
        return found


def render(nodes, deferred=(), rollout="r1"):
    with open(TEMPLATE) as handle:
        source = handle.read()
    # The nodes' results come from modules, and ansible-core (every line) hands module results to the
    # templates marked unsafe (before 2.19: wrap_var), never as templates; so does the rollout id here
    # (before 2.19 a rollout id written as a template is templated by Ansible before the report).
    templar = Templar(loader=DataLoader(), variables={
        "__report_nodes": from_modules(nodes), "__deferred": from_modules(list(deferred)),
        "node_maintenance_rollout_id": from_modules(rollout), "__node_maintenance_phase_order": PHASE_ORDER})
    return templar.template(trust_as_template(source))


def node(name, status="done", start=0.0, seconds=10.0, phases=None, **extra):
    entry = {"node": name, "rollout": "r1", "action": "none", "status": status, "resumed_from": None,
             "phases": {"preflight": 1.0, "drain": 4.0, "return": 1.0, "verify": 2.0} if phases is None else phases,
             "pods_evicted": 0, "checks": {}, "message": "", "seconds": seconds, "started_at": T0 + start,
             "cluster": "default", "moved_pods": []}
    entry.update(extra)
    return entry


def bars(page, row_index):
    """The bars of the timeline's row ``row_index``: (phase, x, width)."""
    rows = [i for i, (tag, attrs) in enumerate(page.elements) if tag == "g" and "row" in attrs.get("class", "").split()]
    end = rows[row_index + 1] if row_index + 1 < len(rows) else len(page.elements)
    return [(attrs["data-phase"], float(attrs["x"]), float(attrs["width"]))
            for tag, attrs in page.elements[rows[row_index]:end]
            if tag == "rect" and "bar" in attrs.get("class", "").split()]


def test_a_done_and_a_failed_node_failure_on_top_and_rows_on_one_axis():
    failed = node("w2", status="failed", start=20.0, seconds=5.0, phases={"preflight": 1.0}, failed_phase="drain",
                  failed_task="Cordon and drain (evict)", message="drain of node w2 did not finish in 60s")
    done = node("w1", moved_pods=[{"namespace": "ns", "name": "web-1", "action": "evicted"}],
                checks={"capacity": "pass", "single_node_workloads": "warn"}, pods_evicted=1)
    text = render([done, failed])
    page = Page(text)
    sections = [attrs.get("id") for tag, attrs in page.elements if tag == "section"]
    assert sections[0] == "failure", sections
    assert "drain of node w2 did not finish in 60s" in "".join(page.text)
    rows = page.find("g", class_="row")
    assert [r["data-node"] for r in rows] == ["w1", "w2"]
    assert [p for p, _x, _w in bars(page, 0)] == ["preflight", "drain", "return", "verify"]
    assert [p for p, _x, _w in bars(page, 1)] == ["preflight", "drain"]
    assert page.find("rect", data_failed="true")[0]["data-phase"] == "drain"
    # one axis: w1 starts at its left, w2 20 s later; bars end to end from each node's start
    first, second = bars(page, 0), bars(page, 1)
    assert first[0][1] == 200.0 and second[0][1] > first[-1][1] + first[-1][2]
    for row in (first, second):
        for (_p, x, width), (_q, next_x, _w) in zip(row, row[1:]):
            assert abs(x + width - next_x) < 0.2
    assert "web-1" in "".join(page.text)


def test_the_page_is_self_contained():
    text = render([node("w1")])
    assert text.startswith("<!DOCTYPE html>")
    for needle in ("<script", "<link", "<img", "<iframe", "src=", "href=", "url(", "@import", "@font-face"):
        assert needle not in text, needle


def test_no_node_started_yet():
    page = Page(render([node("w1", status="deferred", started_at=None, seconds=None, phases={},
                             message="maintenance window closed")],
                       deferred=[{"node": "w1", "message": "maintenance window closed"}]))
    assert not page.find("svg") and page.find("section", id="stopped")


_hostile = st.lists(st.sampled_from(list("<>&\"'/=;` \nab\u00e9\u2028{}%#") + ["</script>", "&amp;", "<!--", "]]>"]),
                    min_size=1, max_size=12).map("".join)


REFERENCE_TAGS = [tag for tag, _attrs in Page(render([
    node("a", checks={"c": "pass"}, moved_pods=[{"namespace": "p", "name": "p", "action": "evicted"}]),
    node("a2", status="failed", start=3.0, message="m", failed_phase="m", failed_task="m")])).elements]


# no shrinking: a render takes ~0.1 s, and the generated strings are short already
@settings(max_examples=60, deadline=None, phases=(Phase.explicit, Phase.reuse, Phase.generate))
@given(name=_hostile, message=_hostile, check=_hostile, pod=_hostile, rollout=_hostile)
def test_everything_from_the_cluster_is_escaped(name, message, check, pod, rollout):
    nodes = [node(name, checks={check: "pass"}, moved_pods=[{"namespace": pod, "name": pod, "action": "evicted"}]),
             node(name + "2", status="failed", start=3.0, message=message, failed_phase=message, failed_task=message)]
    text = render(nodes, rollout=rollout)
    page = Page(text)
    tags = [tag for tag, _attrs in page.elements]
    assert "script" not in tags
    assert [attrs["data-node"] for attrs in page.find("g", class_="row")] == [name, name + "2"]
    assert [attrs["data-node"] for attrs in page.find("article")] == [name, name + "2"]
    shown = "".join(page.text)
    for value in (message, check, pod):
        assert value in shown
    # the page's element structure does not depend on what the names say
    assert tags == REFERENCE_TAGS
    assert not re.search(r"<(?!/?(?:%s)\b|!DOCTYPE)" % "|".join(sorted(set(tags))), text)
