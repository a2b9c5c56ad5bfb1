"""The run-folder lock: one live run per folder, released when its process dies, and working
on filesystems without ``flock`` (some cluster filesystems), where it falls back to a soft
lock instead of a traceback."""

from __future__ import annotations

import errno
import fcntl
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.runs.claim import LOCK, claim_run_dir, held_by_another, release_run_dir
from sgt.errors import SettingError
from tests.conftest import ROOT

# Claims the folder argv[1] (argv[2] == "noflock": on a filesystem without flock), prints
# the outcome, then holds the claim until its stdin closes.
CLAIM = """
import errno, fcntl, sys
from pathlib import Path
if sys.argv[2] == "noflock":
    def no_flock(*args):
        raise OSError(errno.ENOSYS, "Function not implemented")
    fcntl.flock = no_flock
from experiments.runs.claim import claim_run_dir
from sgt.errors import SettingError
try:
    claim_run_dir(Path(sys.argv[1]))
except SettingError as err:
    print("refused:", err, flush=True)
    sys.exit(3)
print("claimed", flush=True)
sys.stdin.read()
"""


def start_claim(run: Path, flock: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CLAIM, str(run), flock], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def no_flock(*args: object) -> None:
    raise OSError(errno.ENOSYS, "Function not implemented")


def test_a_killed_holder_releases_the_folder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    holder = start_claim(run, "flock")
    assert holder.stdout.readline() == "claimed\n"
    assert held_by_another(run)
    with pytest.raises(SettingError, match=f"{run} is in use by another run"):
        claim_run_dir(run)
    holder.send_signal(signal.SIGKILL)
    holder.wait(30)
    assert not held_by_another(run)
    assert claim_run_dir(run) is False  # the folder was there already
    release_run_dir(run)


def test_without_flock_a_soft_lock_refuses_a_second_start(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setattr(fcntl, "flock", no_flock)
    run = tmp_path / "run"
    assert claim_run_dir(run) is True
    assert (run / LOCK).exists()
    second = start_claim(run, "noflock")
    out, _ = second.communicate(timeout=60)
    assert second.returncode == 3 and out.startswith(f"refused: {run} is in use"), out
    release_run_dir(run)
    assert not run.exists()  # created by this claim, left holding nothing: removed
    third = start_claim(run, "noflock")
    assert third.stdout.readline() == "claimed\n"
    third.communicate(timeout=60)
    assert third.returncode == 0
