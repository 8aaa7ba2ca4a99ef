"""Once started, the server freezes its startup heap and switches the GIL more often (platform/interpreter.py)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from tenantgate.platform.interpreter import (
    GEN0_THRESHOLD,
    MALLOC_ARENAS,
    SWITCH_INTERVAL_SECONDS,
    cap_malloc_arenas,
    fix_malloc_thresholds,
)
from tests.support.gateway import Gateway


@pytest.fixture
def interpreter_state() -> Iterator[None]:
    threshold, interval = gc.get_threshold(), sys.getswitchinterval()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    sys.setswitchinterval(interval)


def test_startup_heap_is_frozen_and_collections_are_rare(
    interpreter_state: None, gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str
) -> None:
    assert gc.get_freeze_count() == 0
    gateway_factory(database_url=sqlite_url, upstream_base_url=dev_upstream, interpreter_tuning=True)
    # Everything alive once the app started (the app, its modules, the test session itself) is out of the
    # collector's reach: a full collection no longer walks it.
    assert gc.get_freeze_count() > 50_000
    assert gc.get_threshold()[0] == GEN0_THRESHOLD
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_SECONDS)


def test_setting_off_leaves_the_interpreter_alone(
    interpreter_state: None, gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str
) -> None:
    before = gc.get_threshold(), sys.getswitchinterval()
    gateway_factory(database_url=sqlite_url, upstream_base_url=dev_upstream, interpreter_tuning=False)
    assert gc.get_freeze_count() == 0
    assert (gc.get_threshold(), sys.getswitchinterval()) == before


_COUNT_ARENAS = """
import ctypes, sys, tempfile, threading
from tenantgate.platform.interpreter import cap_malloc_arenas
if sys.argv[1] == "cap":
    assert cap_malloc_arenas()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.fopen.restype = ctypes.c_void_p
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
together = threading.Barrier(6)
def allocate():
    block = libc.malloc(4096)
    together.wait()  # all six threads hold memory at once
    libc.free(block)
threads = [threading.Thread(target=allocate) for _ in range(6)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
with tempfile.NamedTemporaryFile(suffix=".xml") as report:
    stream = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    print(open(report.name).read().count("<heap nr="))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
@pytest.mark.parametrize(("mode", "most"), [("cap", MALLOC_ARENAS), ("default", None)])
def test_threads_share_a_capped_number_of_malloc_arenas(mode: str, most: int | None) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run(
        [sys.executable, "-c", _COUNT_ARENAS, mode], env=env, capture_output=True, text=True, check=True
    ).stdout
    arenas = int(out)
    if most is None:
        assert arenas > MALLOC_ARENAS  # without the cap each thread gets its own: the test can tell the difference
    else:
        assert 1 <= arenas <= most


def test_an_operators_malloc_arena_max_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert cap_malloc_arenas() is False


_HEAP_AFTER_A_BURST = """
import ctypes, sys
from tenantgate.platform.interpreter import fix_malloc_thresholds
if sys.argv[1] == "fixed":
    assert fix_malloc_thresholds()
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
libc.free(libc.malloc(4 << 20))  # one big block, mapped on its own and freed: glibc's thresholds move up
burst = [0] * 96  # its item array (malloc'd, > 512 bytes) now, below the burst: it must not pin the heap's top
for i in range(96):
    burst[i] = libc.malloc(64 << 10)  # then 6 MB in blocks of 64 kB, all freed
for block in burst:
    libc.free(block)
print(libc.mallinfo2().arena >> 10)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_fixed_malloc_thresholds_give_a_freed_burst_back_to_the_system() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}

    def heap_kb(mode: str) -> int:
        run = subprocess.run([sys.executable, "-c", _HEAP_AFTER_A_BURST, mode], env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        return int(run.stdout)

    assert heap_kb("default") > 6 * 1024  # glibc's moving thresholds: the freed 6 MB stay in the heap
    assert heap_kb("fixed") < 2 * 1024  # trimmed back: the process gave them back


def test_an_operators_malloc_thresholds_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "4194304")
    assert fix_malloc_thresholds() is False
