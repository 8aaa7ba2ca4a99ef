"""Background load through the official SDK that records which responses clients fully received."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import openai

MESSAGES = [{"role": "user", "content": "Tell me something about metering please"}]


@dataclass
class Load:
    base_url: str
    key: str
    threads: int = 4
    received: list[str] = field(default_factory=list)
    """Gateway request ids of responses a client got completely (non-streamed body, or stream to [DONE])."""
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        for index in range(self.threads):
            worker = threading.Thread(target=self._run, args=(index,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def _run(self, index: int) -> None:
        client = openai.OpenAI(base_url=self.base_url, api_key=self.key, max_retries=0, timeout=10)
        count = 0
        while not self._stop.is_set():
            count += 1
            stream = (count + index) % 2 == 0
            try:
                raw = client.chat.completions.with_raw_response.create(
                    model="gpt-4o-mini", messages=MESSAGES, stream=stream
                )
                parsed = raw.parse()
                if stream:
                    list(parsed)  # raises if the stream does not end properly
                with self._lock:
                    self.received.append(raw.headers["x-request-id"])
            except Exception:  # cut off (SIGKILL, refused connection): not received
                with self._lock:
                    self.errors += 1

    def wait_for(self, responses: int, timeout: float = 30) -> int:
        """Until ``responses`` responses in all were received (or ``timeout`` passed): how many there are. A test
        that needs "under load" waits for a count, not a fixed time: as short as it can be on a fast machine, as
        long as it needs to be on a busy one."""
        deadline = time.monotonic() + timeout
        while len(self.received) < responses and time.monotonic() < deadline:
            time.sleep(0.01)
        return len(self.received)

    def stop(self) -> list[str]:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)
        return list(self.received)
