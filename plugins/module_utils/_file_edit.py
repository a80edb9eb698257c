# -*- coding: utf-8 -*-
# Copyright: kubeops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write small system files (fstab, daemon.json) so that a crash leaves the old file or the new.

Each file is written to a temporary file in its own directory, flushed to disk, given the old
file's mode and owner (and SELinux context, through a hook), then renamed over the old one. A
group of files is written as one change: if a later file cannot be written, the earlier ones are
put back. ``module.atomic_move`` is not used for the rename because on failure it ends the module
(``fail_json``) before the earlier files can be restored.
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence


class FileEditError(Exception):
    """A file could not be written; the message says which, why, and what was put back."""


@dataclass
class PlannedFile:
    label: str  # what the file is to the user: "fstab", "daemon.json"
    path: str
    before: Optional[bytes]  # None: the file does not exist yet
    after: bytes
    mode_if_new: int = 0o644

    @property
    def changed(self) -> bool:
        return self.before != self.after


def read_file(path: str) -> Optional[bytes]:
    """The file's bytes, or None if it does not exist."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def unwritable_reason(path: str) -> Optional[str]:
    """Why ``path`` cannot be replaced atomically, or None if it looks writable."""
    real = os.path.realpath(path)
    directory = os.path.dirname(real) or "."
    if os.path.lexists(real) and not os.path.isfile(real):
        return "%s is not a regular file" % path
    if not os.path.isdir(directory):
        return "directory %s does not exist" % directory
    if not os.access(directory, os.W_OK | os.X_OK):
        return "cannot create a temporary file in %s (not writable)" % directory
    if os.path.exists(real) and not os.access(real, os.W_OK):
        return "%s is not writable" % path
    return None


def atomic_write(
    path: str,
    data: bytes,
    mode_if_new: int = 0o644,
    set_attributes: Optional[Callable[[str, str], None]] = None,
) -> None:
    """Replace ``path`` with ``data``: temp file in the same directory, fsync, rename."""
    real = os.path.realpath(path)  # write through a symlink, do not replace the link
    directory = os.path.dirname(real) or "."
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(real), suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if os.path.exists(real):
            st = os.stat(real)
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            if (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
                os.chown(tmp, st.st_uid, st.st_gid)
        else:
            os.chmod(tmp, mode_if_new)
        if set_attributes is not None:
            set_attributes(tmp, real)
        os.replace(tmp, real)
        tmp = None
        fsync_directory(directory)
    finally:
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)


def fsync_directory(directory: str) -> None:
    """Make a rename or an unlink in ``directory`` durable (where the filesystem supports it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems do not support it; the rename is still atomic
    finally:
        os.close(fd)


def restore(files: Sequence[PlannedFile], set_attributes=None) -> List[str]:
    """Put ``before`` back for each file; returns problems (empty when all were restored)."""
    problems = []
    for planned in reversed(list(files)):
        try:
            if planned.before is None:
                if os.path.lexists(planned.path):
                    os.unlink(planned.path)
            else:
                atomic_write(planned.path, planned.before, set_attributes=set_attributes)
        except OSError as exc:
            problems.append("%s: %s" % (planned.path, exc))
    return problems


def apply(
    files: Sequence[PlannedFile],
    backup: bool = False,
    make_backup: Optional[Callable[[str], str]] = None,
    set_attributes: Optional[Callable[[str, str], None]] = None,
) -> Dict[str, str]:
    """Write every changed file, or none of them. Returns {path: backup path}.

    Raises ``FileEditError`` before writing anything if a file is not writable, and after
    restoring the files already written if a write fails half way.
    """
    changed = [f for f in files if f.changed]
    reasons = [r for r in (unwritable_reason(f.path) for f in changed) if r]
    if reasons:
        raise FileEditError("cannot write: %s; nothing was changed" % "; ".join(reasons))
    backups: Dict[str, str] = {}
    if backup and make_backup is not None:
        for planned in changed:
            if planned.before is not None:
                try:
                    backups[planned.path] = make_backup(planned.path)
                except Exception as exc:  # ansible-core raises a bare Exception here
                    raise FileEditError("could not back up %s: %s; nothing was changed" % (planned.path, exc))
    written: List[PlannedFile] = []
    for planned in changed:
        try:
            atomic_write(planned.path, planned.after, planned.mode_if_new, set_attributes)
        except OSError as exc:
            problems = restore(written, set_attributes)
            undo = "; the files written before it were restored" if written else ""
            if problems:
                undo = "; restoring the files written before it FAILED: %s" % "; ".join(problems)
            raise FileEditError("could not write %s %s: %s%s" % (planned.label, planned.path, exc, undo))
        written.append(planned)
    return backups
