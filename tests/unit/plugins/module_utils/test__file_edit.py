from __future__ import annotations

import os

import pytest

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _file_edit
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._file_edit import (
    FileEditError,
    PlannedFile,
    apply,
    atomic_write,
    restore,
)


def test_atomic_write_writes_through_a_symlink_and_keeps_mode(tmp_path):
    target = tmp_path / "real"
    target.write_text("old")
    os.chmod(target, 0o640)
    link = tmp_path / "link"
    link.symlink_to(target)
    atomic_write(str(link), b"new")
    assert link.is_symlink() and target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(os.listdir(tmp_path)) == ["link", "real"]


def test_failed_rename_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "f"
    target.write_text("old")

    def boom(src, dst):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(_file_edit.os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write(str(target), b"new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f"]


def test_apply_is_all_or_nothing_and_restore_removes_created_files(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "sub" / "b"
    a.write_text("A")
    files = [PlannedFile("a", str(a), b"A", b"A2"), PlannedFile("b", str(b), None, b"B")]
    with pytest.raises(FileEditError) as err:
        apply(files)
    assert "directory" in str(err.value) and "nothing was changed" in str(err.value)
    assert a.read_text() == "A"

    (tmp_path / "sub").mkdir()
    backups = apply(files, backup=True, make_backup=lambda p: p + ".bak")
    assert a.read_text() == "A2" and b.read_text() == "B"
    assert backups == {str(a): str(a) + ".bak"}  # b did not exist, so there is nothing to back up
    assert restore(files) == []
    assert a.read_text() == "A" and not b.exists()


def test_backup_failure_changes_nothing(tmp_path):
    a = tmp_path / "a"
    a.write_text("A")

    def broken_backup(path):
        raise Exception("Could not make backup")

    with pytest.raises(FileEditError, match="could not back up"):
        apply([PlannedFile("a", str(a), b"A", b"B")], backup=True, make_backup=broken_backup)
    assert a.read_text() == "A"
