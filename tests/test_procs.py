"""What a worker process asks of glibc and Python (rlscale.procs) and of the tokenizer (run_job).

(die_with_parent and dir_lock are tested with the other process-level failures, test_fuzz.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A training step's pattern in miniature: four 8 MB blocks allocated, written, freed, six times.
# Under glibc's defaults the first free raises the mmap threshold to 8 MB, so later blocks come
# from the heap, and freeing them leaves 32 MB at its top, over the 16 MB trim threshold: every
# cycle hands the memory back and faults its 8,192 pages in again.
CHILD = f"""
import ctypes, resource, sys
sys.path.insert(0, {str(ROOT)!r})
from rlscale.procs import keep_freed_memory
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
size = 8 << 20
def cycle():
    blocks = [libc.malloc(size) for _ in range(4)]
    for b in blocks:
        libc.memset(b, 1, size)
    for b in blocks:
        libc.free(b)
cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    cycle()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_reused_without_page_faults():
    kept, kept_faults = _faults("keep")
    _, default_faults = _faults("default")
    pages = 5 * 4 * (8 << 20) // 4096  # what five cycles fault in when nothing is kept
    assert default_faults > pages // 2  # the pattern does fault by default: the test can tell
    assert kept == "True" and kept_faults < pages // 50


# Builds 300,000 small lists (a corpus's token ids in miniature) and counts the full
# collections that run meanwhile, with or without gc_paused around the build.
GC_CHILD = f"""
import gc, sys
sys.path.insert(0, {str(ROOT)!r})
from rlscale.procs import gc_paused
full = []
gc.callbacks.append(lambda phase, info: phase == "stop" and info["generation"] == 2
                    and full.append(info["collected"]))
if sys.argv[1] == "paused":
    with gc_paused():
        ids = [[i, i + 1, i + 2] for i in range(300_000)]
else:
    ids = [[i, i + 1, i + 2] for i in range(300_000)]
print(len(full), gc.isenabled())
"""


def test_gc_paused_runs_no_full_collection_during_a_bulk_build():
    def run(mode):
        out = subprocess.run([sys.executable, "-c", GC_CHILD, mode], capture_output=True,
                             text=True, check=True).stdout.split()
        return int(out[0]), out[1]

    assert run("default")[0] >= 1  # the build does trigger full collections by default
    assert run("paused") == (0, "True")  # none inside the block; the collector back on after


def test_gc_paused_nests_and_leaves_a_disabled_collector_disabled():
    import gc

    from rlscale.procs import gc_paused

    assert gc.isenabled()
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner block did not turn it back on
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # disabled before: left so
    finally:
        gc.enable()


def test_freeze_imports_takes_the_live_objects_out_of_collection():
    code = (f"import gc, sys\nsys.path.insert(0, {str(ROOT)!r})\nimport json, fractions\n"
            "from rlscale.procs import freeze_imports\nbefore = len(gc.get_objects())\n"
            "freeze_imports()\nprint(gc.get_freeze_count() >= before // 2, "
            "len(gc.get_objects()) < before // 10)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "True"]


def test_a_one_thread_study_worker_runs_the_tokenizer_without_its_pool(monkeypatch):
    """run_job in a one-core worker turns the tokenizers' thread pool off (its threads would
    run beside the other worker's job); with threads 0 (a GPU study) the default stays."""
    import torch

    from rlscale.scheduler import run_job

    before = torch.get_num_threads()
    try:
        for threads, expected in ((0, None), (1, "false")):
            monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
            with pytest.raises(ValueError):  # an unknown kind: the settings come first
                run_job("no-such-kind", "unused", {}, threads)
            assert os.environ.get("TOKENIZERS_PARALLELISM") == expected
    finally:
        torch.set_num_threads(before)
