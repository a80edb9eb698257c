# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files the controller writes for a rollout (the report, the metrics textfile): atomically, and
only when their content or mode changed."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import tempfile


def write_if_changed(path, content, mode):
    """Write ``content`` (bytes) to ``path`` atomically unless it already holds exactly that; True if written."""
    try:
        with open(path, "rb") as handle:
            if handle.read() == content and (os.stat(path).st_mode & 0o7777) == mode:
                return False
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True
