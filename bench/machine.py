"""What machine a run was measured on, and how busy it was with other work meanwhile (the machine may be shared)."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.services import process_tree

_TICK = os.sysconf("SC_CLK_TCK")
SERVICES = ("postgres", "redis-server")


def describe() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kb = 0
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": _version(["wrk", "-v"]),
        "nginx": _version(["nginx", "-v"]),
        "loadavg_before": os.getloadavg(),
    }


def _version(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=5)
    except OSError:
        return "not installed"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else ""


def git_revision(repo: Path) -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True)
    except OSError:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _busy_seconds() -> float:
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / _TICK


def _cpu_seconds(pid: int, *, with_children: bool = False) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if with_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime of reaped children (wrk runs)
    return ticks / _TICK


def _per_process() -> dict[int, tuple[str, float]]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                name = Path(f"/proc/{entry}/comm").read_text().strip()
            except OSError:
                continue
            found[int(entry)] = (name, _cpu_seconds(int(entry)))
    return found


def _largest(values: dict[str, float], count: int) -> list[tuple[str, float]]:
    return sorted(values.items(), key=lambda item: -item[1])[:count]


class CpuWatch:
    """CPU used during a window: by the benchmark itself, by PostgreSQL/Redis, and by everything else."""

    def __init__(self) -> None:
        self.me = os.getpid()

    def start(self) -> CpuWatch:
        self.t0 = time.monotonic()
        self.busy0 = _busy_seconds()
        self.mine0 = _cpu_seconds(self.me, with_children=True)
        self.procs0 = _per_process()
        return self

    def stop(self) -> dict[str, Any]:
        wall = time.monotonic() - self.t0
        busy = _busy_seconds() - self.busy0
        procs = _per_process()
        tree = set(process_tree(self.me))
        mine = _cpu_seconds(self.me, with_children=True) - self.mine0
        mine += sum(
            cpu - self.procs0.get(pid, ("", 0.0))[1] for pid, (_, cpu) in procs.items() if pid in tree - {self.me}
        )
        by_name: defaultdict[str, float] = defaultdict(float)
        for pid, (name, cpu) in procs.items():
            if pid not in tree:
                by_name[name] += cpu - self.procs0.get(pid, (name, 0.0))[1]
        services = sum(by_name.pop(name, 0.0) for name in SERVICES)
        others = max(0.0, busy - mine - services)
        return {
            "window_seconds": round(wall, 1),
            "machine_busy_cores": round(busy / wall, 2),
            "benchmark_cores": round(mine / wall, 2),
            "postgres_redis_cores": round(services / wall, 2),
            "other_processes_cores": round(others / wall, 2),
            "top_other_processes": {n: round(c, 1) for n, c in _largest(by_name, 5) if c >= 0.5},
            "loadavg_after": os.getloadavg(),
        }
