"""Interpreter settings for a server process, applied once its startup is done (``TENANTGATE_INTERPRETER_TUNING``).

Garbage collector. CPython's cyclic collector walks every tracked object of a generation it collects. A gateway
process holds a few hundred thousand long-lived objects from startup (modules, classes, SQLAlchemy, OTel, pydantic
schemas), so each full collection walked all of them: under load one came every few seconds and held the event
loop about 100 ms, which was the p99 of the whole benchmark and a fifth of its throughput. And with the default
young threshold (700 net allocations) the objects of 32 requests in flight set off a young collection several
hundred times a second. So: collect once, move what survived into the permanent generation (``gc.freeze()``,
never walked again; reference counting still frees it), and let young collections wait for 10,000 net
allocations. Cycles are still collected, later and in less time overall.

GIL switch interval. Background threads that run Python code (the span and metric exporters, ``to_thread`` work;
until it was sliced onto the loop, the metering writer's parsing) hold the GIL; the event loop, back from waiting on
a socket, then waits up to the switch interval for it, on every request in flight. 1 ms instead of 5 ms halved the
p99 at one connection (6.9 -> 3.7 ms, measured while the metering writer still parsed in a thread).

C library allocator (glibc). Each thread that allocates gets an arena of its own, up to eight per core, and freed
memory stays in the arena that served it. The gateway's threads (span and metric export, the tokenizer loader,
``to_thread`` work) are few and light, so their arenas mostly hold memory freed long ago: with two arenas, a worker
ends a benchmark run at 196 MB instead of 204 MB, with the same throughput. Applied when the app is created, before
any of those threads start; an operator's own ``MALLOC_ARENA_MAX`` wins.

glibc also moves its thresholds as it goes: once a block it had mapped on its own (128 kB or more) is freed, blocks
up to that size come from the heap from then on, and the heap's free top is returned to the system only beyond
twice that size (up to 64 MB). A worker frees such blocks now and then (a metering batch, a span export), so its
heap kept megabytes it no longer used. Fixed at 1 MiB each instead: a worker after the benchmark's load holds
about 9 MB less (peak about 3 MB less) at the same CPU per request (bench/README.md's history, sixth session). An
operator's own ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or ``GLIBC_TUNABLES`` wins.

The runs behind these numbers are in the git history of bench/README.md; the latest in docs/performance.md.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys

GEN0_THRESHOLD = 10_000
SWITCH_INTERVAL_SECONDS = 0.001
MALLOC_ARENAS = 2
MALLOC_THRESHOLD_BYTES = 1 << 20
# glibc's mallopt parameter numbers
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def cap_malloc_arenas() -> bool:
    """Limit glibc's malloc to ``MALLOC_ARENAS`` arenas; False where that does not apply (another C library, or
    ``MALLOC_ARENA_MAX`` set by the operator)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_ARENA_MAX, MALLOC_ARENAS))


def fix_malloc_thresholds() -> bool:
    """Fix glibc's mmap and trim thresholds at ``MALLOC_THRESHOLD_BYTES``; False where that does not apply (another
    C library, or the operator set either threshold)."""
    if {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"} & os.environ.keys():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MALLOC_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, MALLOC_THRESHOLD_BYTES)
    )


def settle_after_startup() -> None:
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
