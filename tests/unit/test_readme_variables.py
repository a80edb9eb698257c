"""README.md's variables table is the roles' argument specs, rendered (tools/variables_table.py)."""
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_readme_variables_table_matches_the_argument_specs():
    res = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "tools", "variables_table.py"), "--check"],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
