"""What the unit tests need from ansible-core, on every line the collection supports (2.16-2.19,
noxfile.py's matrix): ``patch_module_args`` is ansible-core 2.19's; before it, AnsibleModule read
its arguments from ``ansible.module_utils.basic._ANSIBLE_ARGS`` as JSON bytes."""
import contextlib
import json
from unittest import mock

import ansible

# (2, 16), (2, 19), ...: the ansible-core line the tests run on
CORE = tuple(int(part) for part in ansible.__version__.split(".")[:2])


def as_module_process(monkeypatch):
    """Run modules in this test process as on a host. ansible-core 2.19 tells module code whether it
    runs in the controller (a filter plugin's test may have imported controller code here), and then
    keeps module warnings out of the result; older lines have no such switch."""
    try:
        from ansible.module_utils import _internal
    except ImportError:  # ansible-core < 2.18 has no _internal
        return
    if hasattr(_internal, "is_controller"):  # 2.18's _internal has no such switch either
        monkeypatch.setattr(_internal, "is_controller", False)


try:
    from ansible.module_utils.testing import patch_module_args  # noqa: F401  pylint: disable=unused-import
except ImportError:  # ansible-core < 2.19
    from ansible.module_utils import basic as _basic

    @contextlib.contextmanager
    def patch_module_args(args=None):
        """Expose the given module args to ``AnsibleModule`` instances created within this context."""
        if not isinstance(args, (dict, type(None))):
            raise TypeError("The `args` arg must be a dict or None.")
        payload = json.dumps({"ANSIBLE_MODULE_ARGS": args or {}}).encode()
        with mock.patch.object(_basic, "_ANSIBLE_ARGS", payload):
            yield
