"""rollout_report through ansible-playbook on localhost (no cluster): what it writes, that it
rewrites nothing unchanged, check mode, and the errors for bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from tests.conftest import COLLECTIONS_ROOT

ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")


def play(tmp_path, args, check=False):
    """The task result of one rollout_report task with ``args``."""
    book = tmp_path / "play.yml"
    book.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "report", "kubeops.node_maintenance.rollout_report": args, "register": "out",
         "ignore_errors": True},
        {"name": "show", "ansible.builtin.copy": {"content": "{{ out | to_json }}", "dest": str(tmp_path / "out.json")},
         "check_mode": False}]}]))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_ROOT, ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_INVENTORY_UNPARSED_WARNING="False")
    command = [ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=" + sys.executable,
               str(book)] + (["--check"] if check else [])
    res = subprocess.run(command,
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads((tmp_path / "out.json").read_text())


def test_writes_json_and_text_once_and_leaves_unchanged_files_alone(tmp_path):
    target = tmp_path / "reports" / "r1"
    args = {"dir": str(target), "json": {"report.json": {"rollout": "r1", "nodes": [{"node": "w1", "ü": 1}]}},
            "text": {"report.md": "# Rollout r1\n\n| w1 | done |\n"}}
    first = play(tmp_path, args)
    assert first["changed"] is True and first["written"] == ["report.json", "report.md"]
    assert json.loads((target / "report.json").read_text()) == {"rollout": "r1", "nodes": [{"node": "w1", "ü": 1}]}
    assert (target / "report.json").read_text().startswith('{\n    "nodes"')  # indented 4, keys sorted
    assert (target / "report.md").read_text() == "# Rollout r1\n\n| w1 | done |\n"
    assert oct(os.stat(target / "report.md").st_mode & 0o777) == "0o644"
    assert oct(os.stat(target).st_mode & 0o777) == "0o755"
    second = play(tmp_path, args)
    assert second["changed"] is False and second["written"] == []
    args["text"]["report.md"] += "| w2 | done |\n"
    third = play(tmp_path, args)
    assert third["written"] == ["report.md"]
    assert not [n for n in os.listdir(target) if n.startswith(".")]  # no temporary file left


def test_check_mode_writes_nothing(tmp_path):
    result = play(tmp_path, {"dir": str(tmp_path / "r"), "text": {"report.md": "x"}}, check=True)
    assert result["changed"] is True and result["written"] == ["report.md"]
    assert not (tmp_path / "r").exists()


def test_a_path_as_file_name_is_refused_before_anything_is_written(tmp_path):
    result = play(tmp_path, {"dir": str(tmp_path / "r"), "text": {"ok.md": "x", "../escape.md": "y"}})
    assert result["failed"] is True
    assert "'../escape.md' must be a plain file name" in result["msg"]
    assert not (tmp_path / "r").exists() and not (tmp_path / "escape.md").exists()


def test_data_given_as_text_is_refused_with_the_fix(tmp_path):
    result = play(tmp_path, {"dir": str(tmp_path / "r"), "text": {"report.json": {"a": 1}}})
    assert result["failed"] is True and "pass data in json" in result["msg"]


def test_an_unwritable_directory_fails_naming_it(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = play(tmp_path, {"dir": str(blocker / "r"), "text": {"report.md": "x"}})
    assert result["failed"] is True and str(blocker / "r") in result["msg"]
    assert "node_maintenance_report_dir" in result["msg"]
