"""Processes that end with their parent, and one process at a time per output directory.

`die_with_parent()` runs first thing in a worker (a study job, a sweep's Ray task): on Linux it
asks the kernel for SIGKILL when the parent dies (prctl PR_SET_PDEATHSIG), so killing
`rlscale study` with SIGKILL leaves no worker computing beside a restarted study.

`dir_lock(dir, what)` holds an flock on DIR/.rlscale.lock for the life of a command: a second
command on the same directory refuses with one line. The kernel drops an flock when its holder
dies, so a killed holder never blocks the next run (no stale lock files to clean up).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import sys
from pathlib import Path

from rlscale.errors import UserError

LOCK_NAME = ".rlscale.lock"
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> bool:
    """SIGKILL this process when its parent dies (Linux); False where unsupported.

    parent_pid: the parent we were started by; if it is already gone (it died before this
    call, the signal's race) we exit at once.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return False
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)  # orphaned before the request took effect: the parent is gone
    return True


@contextlib.contextmanager
def dir_lock(directory: str | os.PathLike, what: str):
    """Hold DIR/.rlscale.lock exclusively; UserError when another live process holds it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
            raise UserError(f"{directory}: in use by a running {what}"
                            f"{f' (pid {pid})' if pid else ''}; wait for it to finish or stop "
                            "it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the flock
