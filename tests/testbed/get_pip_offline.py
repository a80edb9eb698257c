"""Stand-in for the get-pip.py that ansible-test downloads to seed pip into its sanity virtualenvs.

ansible-test fetches that script from a host this project cannot reach; the pip it installs is
on PyPI like any package. This does the same job as get-pip.py: run pip straight from a wheel
(here the one bundled with Python's ensurepip, so no download) to install the exact packages
ansible-test asked for into the running interpreter's environment.
"""
import glob
import os
import subprocess
import sys

import ensurepip

# Flags only get-pip.py understands; pip install would reject them.
GET_PIP_ONLY_FLAGS = {"--no-setuptools", "--no-wheel"}

bundled = glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl"))
if not bundled:
    sys.exit("no pip wheel bundled with this Python's ensurepip")
args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_FLAGS]
# ansible-test passes a filtered environment: keep the machine's CA bundle (TLS-inspecting proxies).
for cafile in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
    if cafile and os.path.exists(cafile):
        args = ["--cert", cafile] + args
        break
sys.exit(subprocess.call([sys.executable, os.path.join(bundled[0], "pip"), "install"] + args))
