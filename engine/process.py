"""Process-wide allocator settings for a batch run: the CLI applies them before anything imports Polars.

A run allocates and frees the same large buffers unit after unit (a file's bytes, its decoded JSON, a
day's typed rows and their sorted and wire-form copies). Returning that memory to the kernel between
units only makes the kernel zero fresh pages for the next one. These are settings of the whole
process, so the CLI (and the benchmark's measured processes) set them; the library never does.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

# jemalloc's own default for dirty pages (10 s) instead of the 0.5 s / 1 s that Polars sets for itself:
# a unit's freed pages are reused by the next unit instead of being given back and faulted in again.
# `observer etl` on the 10M bench archive into SQLite, three alternating pairs (2026-11-28, 12:41-12:47):
# 55.6 / 54.5 / 55.6 s against 56.9 / 55.2 / 59.1 s, minor page faults 0.46-0.50M against 1.70-1.72M,
# system time 11.5-12.0 s against 14.3-15.6 s, for a peak RSS of 700-747 MB against 617-688 MB.
# And one arena per usable CPU instead of jemalloc's four per CPU: every arena keeps its own freed
# pages, and a run's few threads need no more. 10M, alternating (13:45-13:50): 53.1 / 52.9 s against
# 53.7 / 52.5 s with eight (2 CPUs), peak 627-655 MB against 700-709 MB; 1M 578-588 against 622-638 MB;
# 100k 242-244 against 256-259 MB (one arena: 610-639 MB at 10M, no slower on 2 cores, but one lock
# for every thread).
DECAY_MS = 10_000


def polars_jemalloc_conf(decay_ms: int = DECAY_MS) -> str:
    """The options ``observer etl`` gives Polars' jemalloc (see above); the benchmark's memory probe
    sets other decay times through the same string."""
    try:
        cpus = len(os.sched_getaffinity(0))  # a container's share, not the host's cores
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return f"dirty_decay_ms:{decay_ms},muzzy_decay_ms:{decay_ms},narenas:{max(1, cpus)}"


# What Polars (2.1) writes into the variable at import, its own defaults first: a process started by one
# that imported Polars (the bench harness, a test, a scheduler written in Python) inherits it.
_POLARS_OWN = "dirty_decay_ms:500,muzzy_decay_ms:1000"


def tune_for_batch_runs(glibc: bool = True, decay_ms: int = DECAY_MS) -> None:
    """The settings below (``glibc=False``: Polars' only); call before the first ``import polars``."""
    keep_freed_pages_in_polars(decay_ms)
    if glibc:
        keep_freed_memory_for_reuse()


def keep_freed_pages_in_polars(decay_ms: int = DECAY_MS) -> bool:
    """Let Polars' allocator keep freed pages for 10 s before it gives them back, in one arena per CPU.

    Polars configures its jemalloc from ``_RJEM_MALLOC_CONF`` when it is imported, its own decay times
    first and the variable's value after them (a later option wins). Ours goes in front of a value the
    user set, so the user's still wins; Polars' own defaults inherited from a parent process are not
    the user's. False (and nothing changed) once Polars is imported.
    """
    if "polars" in sys.modules:
        return False
    user = os.environ.get("_RJEM_MALLOC_CONF", "")
    while user.startswith(_POLARS_OWN):
        user = user[len(_POLARS_OWN) :].lstrip(",")
    os.environ["_RJEM_MALLOC_CONF"] = polars_jemalloc_conf(decay_ms) + (f",{user}" if user else "")
    return True


def keep_freed_memory_for_reuse() -> bool:
    """Let glibc keep freed buffers up to 32 MiB in the heap instead of returning them to the kernel.

    The NumPy and Python buffers of a run otherwise come from a fresh mmap each time, whose pages the
    kernel must zero again (about 5 % of a run's CPU, measured on the 1M bench archive, at the same peak
    RSS).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
