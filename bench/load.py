"""Drive one load case with wrk (one thread) and read its result line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import canned

LUA_SCRIPT = Path(__file__).with_name("chat.lua")


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    rps: float
    non_2xx: int
    socket_errors: int
    latency_ms: dict[str, float]

    @property
    def successes(self) -> int:
        return self.requests - self.non_2xx

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_wrk_output(stdout: str) -> WrkResult:
    line = next((line for line in stdout.splitlines() if line.startswith("BENCH_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result line:\n{stdout[-2000:]}")
    raw = json.loads(line[len("BENCH_RESULT ") :])
    duration = raw["duration_us"] / 1e6
    errors = raw["errors"]
    return WrkResult(
        requests=raw["requests"],
        duration_s=round(duration, 3),
        rps=round(raw["requests"] / duration, 1) if duration else 0.0,
        non_2xx=errors["status"],
        socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        latency_ms={name: round(value / 1000, 4) for name, value in raw["latency_us"].items()},
    )


def write_bodies(workdir: Path) -> dict[bool, Path]:
    paths = {False: workdir / "request.json", True: workdir / "request-stream.json"}
    paths[False].write_text(json.dumps(canned.REQUEST))
    paths[True].write_text(json.dumps(canned.STREAM_REQUEST))
    return paths


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not installed: `apt-get install wrk` (Debian/Ubuntu), or run bench/run")
    return path


def run_wrk(
    url: str,
    *,
    key: str,
    body_file: Path,
    stream: bool,
    connections: int,
    seconds: int,
    log: Path | None = None,
) -> WrkResult:
    env = {**os.environ, "BENCH_KEY": key, "BENCH_BODY_FILE": str(body_file), "BENCH_STREAM": "1" if stream else "0"}
    command = [
        wrk_path(),
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",  # wrk counts whole seconds
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(LUA_SCRIPT),
        url,
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60)
    if log is not None:
        with log.open("a") as out:
            out.write(f"$ {' '.join(command)}\n{completed.stdout}{completed.stderr}\n")
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr.strip()}")
    return parse_wrk_output(completed.stdout)
