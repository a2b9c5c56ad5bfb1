"""The one atomic-write helper every checkpoint, result and cache file goes through."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from experiments.runs.files import write_json_atomic
from sgt.atomic import atomic_write
from sgt.data.cache import cached
from sgt.errors import StorageError


def test_a_failed_write_keeps_the_earlier_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    target.write_text("earlier")
    with pytest.raises(ValueError), atomic_write(target, "w") as f:
        f.write("half of the new")
        raise ValueError("killed mid-write")
    assert target.read_text() == "earlier"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_a_write_replaces_the_file_with_the_umask_mode_and_fsyncs_file_and_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[bool] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(
        stat.S_ISDIR(os.fstat(fd).st_mode)) or real_fsync(fd))
    old = os.umask(0o027)
    try:
        with atomic_write(tmp_path / "new" / "x.bin") as f:  # the folder is made
            f.write(b"abc")
    finally:
        os.umask(old)
    path = tmp_path / "new" / "x.bin"
    assert path.read_bytes() == b"abc" and stat.S_IMODE(path.stat().st_mode) == 0o640
    assert synced == [False, True]  # the file, then the folder holding the rename


def test_a_fixed_temporary_left_by_a_killed_write_is_replaced(tmp_path: Path) -> None:
    temporary = tmp_path / ".x.tmp"
    temporary.write_bytes(b"left by a killed write")
    with atomic_write(tmp_path / "x", temporary=temporary) as f:
        f.write(b"new")
    assert (tmp_path / "x").read_bytes() == b"new" and not temporary.exists()


def test_results_and_caches_go_through_it(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "m.json", {"b": 1, "a": 2})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 2, "b": 1}
    assert cached(tmp_path / "c.pt", lambda: (1, 2)) == (1, 2)
    assert cached(tmp_path / "c.pt", lambda: (3, 4)) == (1, 2)  # read back, not rebuilt
    with pytest.raises(StorageError, match="cannot write .*m.json/n.json"):
        write_json_atomic(tmp_path / "m.json" / "n.json", {})  # a file where a folder goes
