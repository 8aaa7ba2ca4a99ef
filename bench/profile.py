"""Profile tenantgate under load with py-spy: ``python -m bench.run --profile 15``.

Serves the production-configured variant alone (no other contender competes for the CPU), drives it with wrk at 32
connections (non-streamed) and samples it with py-spy. Writes the collapsed stacks (open them in speedscope or
flamegraph.pl) and a text summary to bench/results/, and prints where the time goes: by library, by function, and
inclusive time of tenantgate's own functions, which is where optimisation starts.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench import config
from bench.load import run_wrk, write_bodies
from bench.stack import REPO, Stack, StackOptions

OWN_CODE = str(REPO / "tenantgate") + "/"
# The process's entry point is in every stack; it says nothing about the request path.
_ENTRY = (OWN_CODE + "cli.py", OWN_CODE + "__main__.py", OWN_CODE + "platform/serving.py")


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed: pip install -e '.[bench]'")
    return found


def _where(path: str) -> str:
    if path.startswith(OWN_CODE):
        return "tenantgate"
    if "/site-packages/" in path:
        return path.split("/site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/lib/python3" in path:
        return "stdlib:" + path.rsplit("/", 1)[-1].removesuffix(".py")
    return path.rsplit("/", 1)[-1] or "?"


def _frame(raw: str) -> tuple[str, str]:
    """'function (path)' -> (function, path)."""
    name, _, rest = raw.partition(" (")
    return name, rest.rstrip(")")


def _short(path: str) -> str:
    return path.removeprefix(str(REPO) + "/").split("/site-packages/")[-1]


def summarise(collapsed: str, top: int = 15) -> str:
    total = 0
    self_by_function: Counter[str] = Counter()
    self_by_library: Counter[str] = Counter()
    inclusive_own: Counter[str] = Counter()
    self_own: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame(f) for f in stack.split(";") if " (" in f]
        if not frames:
            continue
        name, path = frames[-1]
        self_by_function[f"{name} ({_short(path)})"] += count
        self_by_library[_where(path)] += count
        if path.startswith(OWN_CODE):
            self_own[f"{name} ({_short(path)})"] += count
        for key in {f"{n} ({_short(p)})" for n, p in frames if p.startswith(OWN_CODE) and p not in _ENTRY}:
            inclusive_own[key] += count
    if not total:
        return "py-spy recorded no samples."

    def block(title: str, counter: Counter[str]) -> list[str]:
        lines = [title]
        lines += [f"  {100 * n / total:5.1f}%  {what}" for what, n in counter.most_common(top)]
        return lines

    out = [f"{total} samples of the tenantgate worker holding the GIL (time waiting for I/O is not sampled)", ""]
    out += [*block("Self time by library:", self_by_library), ""]
    out += [*block("Self time by function (all code):", self_by_function), ""]
    out += [*block("tenantgate's own functions, inclusive (they and their callees):", inclusive_own), ""]
    out += block("tenantgate's own functions, self:", self_own)
    return "\n".join(out)


def profile(args: argparse.Namespace) -> int:
    seconds = int(args.profile)
    wanted = config.FULLY_TRACED if args.profile_traced else config.PRIMARY
    variant = next(v for v in config.GATEWAY_VARIANTS if v.name == wanted)
    workdir = Path(tempfile.mkdtemp(prefix="tg-bench-profile-"))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    collapsed_path = args.results_dir / f"profile-{stamp}.collapsed"
    options = StackOptions(
        variants=(variant,),
        with_passthrough=False,
        upstream_kind=args.upstream,
        postgres_server=args.postgres_url.rstrip("/"),
        redis_url=args.redis_url,
        keep=args.keep,
    )
    try:
        with Stack(workdir, options) as stack:
            contender = stack.contenders[variant.name]
            pid = contender.processes[0].pid
            bodies = write_bodies(workdir)
            load: dict[str, object] = {}

            def drive() -> None:
                load["result"] = run_wrk(
                    contender.chat_url,
                    key=contender.key,
                    body_file=bodies[args.profile_stream],
                    stream=args.profile_stream,
                    connections=args.profile_connections,
                    seconds=seconds + 2,
                )

            print(
                f"profiling {variant.label} (pid {pid}) under {args.profile_connections} connections "
                f"for {seconds} s ...",
                flush=True,
            )
            driver = threading.Thread(target=drive)
            driver.start()
            time.sleep(1)  # past the connection ramp-up
            command = [_py_spy(), "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250", "--gil"]
            command += ["--format", "raw", "--nolineno", "--full-filenames", "--output", str(collapsed_path)]
            spy = subprocess.run(command, capture_output=True, text=True)
            driver.join()
            if spy.returncode != 0:
                print(f"py-spy failed: {spy.stderr.strip()}", file=sys.stderr)
                return 1
            result = load.get("result")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = summarise(collapsed_path.read_text())
    text_path = collapsed_path.with_suffix(".txt")
    header = (
        f"tenantgate under wrk -c{args.profile_connections} ({'streamed' if args.profile_stream else 'non-streamed'}), "
        f"py-spy 250 Hz --gil for {seconds} s; "
        f"load meanwhile: {result}"
    )
    text_path.write_text(header + "\n\n" + summary + "\n")
    print(header + "\n\n" + summary)
    print(f"\nCollapsed stacks: {collapsed_path}\nSummary: {text_path}")
    return 0
