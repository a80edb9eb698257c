"""tests/matrix/report.py, the judge of the version matrix in tests/run.sh: every session nox
selected must have succeeded, or the run fails with the tail of that session's log; a session that
was skipped, aborted or never run, a missing report or exit status, and any non-zero exit status
are failures too, never silence."""
import importlib.util
import json
import os

import pytest

from tests.conftest import REPO_ROOT

_SPEC = importlib.util.spec_from_file_location("matrix_report", os.path.join(REPO_ROOT, "tests", "matrix", "report.py"))
report = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(report)

SESSIONS = ["core-2.16", "core-2.17"]


def _log(failing=None):
    lines = []
    for name in SESSIONS:
        lines += ["nox > Running session %s" % name, "nox > python -m pytest tests/unit"]
        lines += ["%s line %d" % (name, number) for number in range(100)]
        if name == failing:
            lines += ["FAILED tests/unit/test_x.py::test_y - AssertionError", "nox > Command python -m pytest failed "
                      "with exit code 1", "nox > Session %s failed." % name]
        else:
            lines += ["nox > took 120s: unit tests on ansible-core==x", "nox > Session %s was successful in 5 minutes."
                      % name]
    return "\n".join(lines) + "\n"


def _report(**results):
    """What nox 2026.10.20's --report writes."""
    return json.dumps({"result": 1, "sessions": [
        {"name": name, "signatures": [name, name + "-3.11"], "result": result, "result_code": 1, "args": {},
         "reason": "Python interpreter 3.11 not found." if result == "skipped" else None, "duration": 332.8}
        for name, result in results.items()]})


def _write(tmp_path, rc="0\n", report_text=None, log=None, sessions=tuple(SESSIONS)):
    (tmp_path / "sessions.json").write_text(json.dumps([{"session": name} for name in sessions]))
    (tmp_path / "nox.log").write_text(_log() if log is None else log)
    if report_text is not None:
        (tmp_path / "report.json").write_text(report_text)
    if rc is not None:
        (tmp_path / "rc").write_text(rc)
    return str(tmp_path)


def _run(folder, capsys):
    status = report.main(["report.py", folder])
    return status, capsys.readouterr().err


def test_every_session_succeeded_passes_with_a_line_per_session_and_its_times(tmp_path, capsys):
    status, out = _run(_write(tmp_path, report_text=_report(**{"core-2.16": "success", "core-2.17": "success"})),
                       capsys)
    assert status == 0, out
    assert "version matrix: core-2.16    success (332s in all; took 120s: unit tests on ansible-core==x)" in out
    assert "core-2.17    success" in out
    assert out.rstrip().endswith("version matrix: PASSED")
    assert "line 99" not in out  # no log tail when everything passed


def test_a_failed_session_fails_the_run_with_the_tail_of_its_own_log(tmp_path, capsys):
    folder = _write(tmp_path, rc="1\n", log=_log(failing="core-2.16"),
                    report_text=_report(**{"core-2.16": "failed", "core-2.17": "success"}))
    status, out = _run(folder, capsys)
    assert status == 1
    assert "version matrix: core-2.16    failed" in out
    assert "---- version matrix: core-2.16, the last 60 lines of its log ----" in out
    assert "FAILED tests/unit/test_x.py::test_y - AssertionError" in out
    assert "core-2.17 line" not in out  # the tail is the failed session's, not the log's end
    assert "nox exited with status 1" in out
    assert out.rstrip().endswith("version matrix: FAILED")


@pytest.mark.parametrize("result", ["skipped", "aborted"])
def test_a_skipped_or_aborted_session_is_a_failure_even_when_nox_says_0(tmp_path, capsys, result):
    status, out = _run(_write(tmp_path, report_text=_report(**{"core-2.16": result, "core-2.17": "success"})), capsys)
    assert status == 1
    assert "version matrix: core-2.16    %s (332s in all" % result in out
    assert ("Python interpreter 3.11 not found." in out) == (result == "skipped")
    assert out.rstrip().endswith("FAILED")


def test_a_selected_session_missing_from_the_report_did_not_run(tmp_path, capsys):
    only_first = _log().split("nox > Running session core-2.17", maxsplit=1)[0]
    status, out = _run(_write(tmp_path, log=only_first, report_text=_report(**{"core-2.16": "success"})), capsys)
    assert status == 1
    assert "version matrix: core-2.17    did not run" in out
    assert out.count("---- version matrix: the last 60 lines of nox's log ----") == 1, out
    assert "---- version matrix: core-2.16" not in out  # it succeeded


def test_no_report_and_no_exit_status_is_an_unfinished_matrix(tmp_path, capsys):
    status, out = _run(_write(tmp_path, rc=None, log="nox > Running session core-2.16\nhalf way\n"), capsys)
    assert status == 1
    assert "did not finish (no exit status)" in out
    assert "nox wrote no report (it stopped early)" in out
    assert "half way" in out


def test_a_non_zero_exit_status_fails_although_every_session_succeeded(tmp_path, capsys):
    status, out = _run(_write(tmp_path, rc="2\n", report_text=_report(**{"core-2.16": "success",
                                                                         "core-2.17": "success"})), capsys)
    assert status == 1
    assert "nox exited with status 2" in out


def test_nothing_selected_is_a_failure(tmp_path, capsys):
    status, out = _run(_write(tmp_path, sessions=[], report_text=json.dumps({"result": 1, "sessions": []})), capsys)
    assert status == 1
    assert "no session selected or run" in out


def test_an_unreadable_report_is_a_failure(tmp_path, capsys):
    status, out = _run(_write(tmp_path, report_text="{not json"), capsys)
    assert status == 1
    assert "nox's report is unreadable" in out
