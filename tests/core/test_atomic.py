"""core.atomic: a file is replaced whole or not at all, and nothing is left behind."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from core import atomic


def test_write_creates_the_folder_and_replaces_the_file(tmp_path):
    target = tmp_path / "a" / "b" / "manifest.jsonl"
    atomic.write(target, "first\n")
    atomic.write(target, b"second\n")
    assert target.read_bytes() == b"second\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # readable by the deployment's other processes
    assert [p.name for p in target.parent.iterdir()] == ["manifest.jsonl"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "thumb.jpg"
    atomic.write(target, b"old")

    def disk_full(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        atomic.write(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["thumb.jpg"]


def test_replacing_hands_a_path_to_writers_that_want_one(tmp_path):
    target = tmp_path / "records"
    with atomic.replacing(target) as temporary:
        temporary.write_bytes(b"half")
        assert not target.exists()  # nobody sees it before the block ends
        temporary.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"

    with pytest.raises(RuntimeError), atomic.replacing(target) as temporary:
        temporary.write_bytes(b"broken")
        raise RuntimeError("the writer failed")
    assert target.read_bytes() == b"whole"
    assert [p.name for p in tmp_path.iterdir()] == ["records"]
