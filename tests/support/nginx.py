"""nginx as a dot-segment-normalizing front: ``proxy_pass http://127.0.0.1:PORT/;`` (with a URI) makes nginx send
the normalized, re-encoded path (``/a/../b`` becomes ``/b``, ``%2e%2e`` is decoded first), as many egress proxies and
load balancers do. Isolation tests put it between the gateway and a recording upstream."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.services import free_port


class NormalizingFront:
    def __init__(self, backend_port: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._workdir = Path(tempfile.mkdtemp(prefix="tg-nginx-"))
        self._workdir.chmod(0o755)
        temp = self._workdir / "temp"
        temp.mkdir()
        (self._workdir / "nginx.conf").write_text(
            f"""
worker_processes 1;
daemon off;
pid {self._workdir / "nginx.pid"};
error_log {self._workdir / "error.log"} warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {temp}/body;
  proxy_temp_path {temp}/proxy;
  fastcgi_temp_path {temp}/fastcgi;
  uwsgi_temp_path {temp}/uwsgi;
  scgi_temp_path {temp}/scgi;
  server {{
    listen 127.0.0.1:{self.port};
    location / {{ proxy_pass http://127.0.0.1:{backend_port}/; proxy_http_version 1.1; }}
  }}
}}
"""
        )
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> NormalizingFront:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self._process = subprocess.Popen(
            [nginx, "-c", str(self._workdir / "nginx.conf"), "-p", str(self._workdir), "-e", "stderr"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        with httpx.Client(timeout=1) as probe:  # one client for every probe (a new one costs ~30 ms of CPU)
            while time.monotonic() < deadline:
                try:
                    probe.get(self.url + "/")
                    return self
                except httpx.HTTPError:
                    time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
        shutil.rmtree(self._workdir, ignore_errors=True)


def nginx_available() -> bool:
    return shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()
