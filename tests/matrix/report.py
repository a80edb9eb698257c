"""The version matrix's result, as tests/run.sh reports it: one line per session, the tail of the
log of every session that did not succeed, and an exit status that fails the run unless every
session it expected succeeded.

    python3 tests/matrix/report.py DIR

DIR is what tests/matrix/ci.sh wrote: sessions.json (the sessions ``nox -l --json`` selected: the
expected ones), nox.log (nox's whole output), report.json (``nox --report``; missing when nox did not
get that far) and rc (nox's exit status; missing when ci.sh did not finish). A session
that was skipped (for example, no Python 3.11 for its virtualenv), aborted, failed, or did not run
at all is a failure, as is any exit status but 0: a result is never dropped without a word.
"""
import json
import os
import re
import sys

TAIL = 60


def sections(log):
    """{session name: its lines of LOG}, from each ``nox > Running session NAME`` to the next."""
    found, name = {}, None
    for line in log.splitlines():
        match = re.match(r"^nox > Running session (\S+)$", line)
        if match:
            name = match.group(1)
            found[name] = []
        if name is not None:
            found[name].append(line)
    return found


def results(report_text):
    """{session name: its entry of ``nox --report``}: result (success, failed, skipped, aborted),
    reason, duration (seconds)."""
    return {entry["name"]: entry for entry in json.loads(report_text)["sessions"]}


def summarize(nox_rc, report_text, log, expected):
    """(lines to print, whether the matrix passed)."""
    try:
        found = results(report_text) if report_text is not None else {}
    except (ValueError, KeyError, TypeError) as exc:
        found = {}
        report_error = "nox's report is unreadable (%s)" % exc
    else:
        report_error = None if report_text is not None else "nox wrote no report (it stopped early)"
    parts = sections(log)
    names = list(expected) + [name for name in found if name not in expected]
    lines, passed = [], nox_rc == 0 and report_error is None and bool(names)
    if not names:
        lines.append("version matrix: no session selected or run")
    for name in names:
        entry = found.get(name, {})
        result = entry.get("result", "did not run")
        notes = ["%ds in all" % entry["duration"]] if entry.get("duration") is not None else []
        notes += [entry["reason"]] if entry.get("reason") else []
        notes += [line.split("nox > ", 1)[1] for line in parts.get(name, []) if re.match(r"^nox > took ", line)]
        lines.append("version matrix: %-12s %s%s" % (name, result, (" (%s)" % "; ".join(notes)) if notes else ""))
        if result != "success":
            passed = False
    if report_error:
        lines.append("version matrix: %s" % report_error)
    if nox_rc < 0:
        lines.append("version matrix: did not finish (no exit status)")
    elif nox_rc != 0:
        lines.append("version matrix: nox exited with status %d" % nox_rc)
    if not passed:
        failed = [name for name in names if found.get(name, {}).get("result") != "success"]
        for name in failed:
            if parts.get(name):
                lines.append("---- version matrix: %s, the last %d lines of its log ----" % (
                    name, min(TAIL, len(parts[name]))))
                lines.extend(parts[name][-TAIL:])
        if not failed or any(not parts.get(name) for name in failed):  # nox itself, or a session never started
            tail = log.splitlines()[-TAIL:]
            lines.append("---- version matrix: the last %d lines of nox's log ----" % len(tail))
            lines.extend(tail)
    lines.append("version matrix: %s" % ("PASSED" if passed else "FAILED"))
    return lines, passed


def _read(path):
    try:
        with open(path, errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def main(argv):
    folder = argv[1]
    rc_text = _read(os.path.join(folder, "rc"))
    nox_rc = int(rc_text) if rc_text and rc_text.strip().isdigit() else -1  # -1: ci.sh did not finish
    try:
        expected = [entry["session"] for entry in json.loads(_read(os.path.join(folder, "sessions.json")) or "[]")]
    except (ValueError, KeyError, TypeError):
        expected = []
    lines, passed = summarize(nox_rc, _read(os.path.join(folder, "report.json")),
                              _read(os.path.join(folder, "nox.log")) or "", expected)
    sys.stderr.write("\n".join(lines) + "\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
