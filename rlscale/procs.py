"""Processes that end with their parent, one process at a time per output directory, and
what a worker process asks of glibc's malloc and Python's collector.

`die_with_parent()` runs first thing in a worker (a study job, a sweep's Ray task): on Linux it
asks the kernel for SIGKILL when the parent dies (prctl PR_SET_PDEATHSIG), so killing
`rlscale study` with SIGKILL leaves no worker computing beside a restarted study.

`keep_freed_memory()` runs first thing in a process that trains or evaluates: it asks glibc's
malloc to keep the memory a step frees for the next step instead of handing it back to the kernel
and faulting it in again, zeroed, a page at a time (docs/benchmarks.md,
`benchmarks/worker_settings.py`).

`freeze_imports()` (a study worker, once its imports are done) and `gc_paused()` (around bulk
builders of acyclic containers: a corpus's token id lists, a task file's rows) keep Python's
cyclic collector off what it cannot free: otherwise the heap's growth triggers full collections
that walk every object and free nothing (docs/benchmarks.md, session 48).

`dir_lock(dir, what)` holds an flock on DIR/.rlscale.lock for the life of a command: a second
command on the same directory refuses with one line. The kernel drops an flock when its holder
dies, so a killed holder never blocks the next run (no stale lock files to clean up).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import gc
import os
import signal
import sys
from pathlib import Path

from rlscale.errors import UserError

LOCK_NAME = ".rlscale.lock"
_PR_SET_PDEATHSIG = 1
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks under it come from the heap, reusable
TRIM_THRESHOLD = 1 << 30  # free memory at the heap's top kept up to this before trimming


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


def keep_freed_memory() -> bool:
    """Have glibc's malloc reuse freed blocks instead of returning them to the kernel.

    By default glibc serves a large block (an activation, a logits tensor) by mmap and unmaps it
    on free, or trims the heap's top once its free part passes twice the last such size; the
    next step's tensors then fault their pages in afresh, each one zeroed by the kernel. A
    training step frees and reallocates the same sizes every step, so those faults are the
    whole of it: fixed thresholds (both above any one step's churn) keep the memory in the
    process. Process-wide and for the process's life; results do not change (where a tensor's
    memory comes from is not its value). False where there is no glibc mallopt (not Linux, or
    a C library without it), which changes nothing but speed.
    """
    if not sys.platform.startswith("linux"):
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return (mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)


def freeze_imports() -> None:
    """Move every object alive now (in a worker just started: its imported modules, ~190,000
    objects with torch and transformers) out of the cyclic collector's reach for good: each
    later full collection then walks only what the jobs made. Those objects live as long as
    the process anyway; reference counting still frees them."""
    gc.collect()  # what is garbage already goes now, not into the frozen set
    gc.freeze()


@contextlib.contextmanager
def gc_paused():
    """No cyclic garbage collection inside the block (reference counting still frees what it
    drops): for builders of many acyclic containers. The block's objects are collected as
    usual afterwards; nesting is safe (the collector is re-enabled only by the block that
    disabled it)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


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
