"""The changelog is made from fragments by antsibull-changelog: every fragment passes its lint, and
CHANGELOG.rst is what ``antsibull-changelog generate`` makes of changelogs/changelog.yaml."""
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

TOOL = shutil.which("antsibull-changelog", path=os.path.dirname(sys.executable)) or shutil.which("antsibull-changelog")


@pytest.fixture(scope="module")
def antsibull_changelog():
    if not TOOL:
        pytest.fail("antsibull-changelog is not installed (tests/requirements.txt lists it)")
    return TOOL


def test_fragments_and_changelog_pass_antsibull_changelog_lint(antsibull_changelog):
    res = subprocess.run([antsibull_changelog, "lint"], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=300, check=False)
    assert res.returncode == 0 and not res.stdout.strip(), res.stdout + res.stderr


def test_changelog_rst_is_generated_from_changelog_yaml(antsibull_changelog, tmp_path):
    out = tmp_path / "CHANGELOG.rst"
    res = subprocess.run([antsibull_changelog, "generate", "--output", str(out), "--output-format", "rst"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    with open(os.path.join(REPO_ROOT, "CHANGELOG.rst")) as handle:
        committed = handle.read()
    assert out.read_text() == committed, (
        "CHANGELOG.rst is out of date: run `antsibull-changelog generate` (or `release`) in the repository root")
