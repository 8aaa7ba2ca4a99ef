"""The process-wide pooled HTTP client to the upstreams.

aiohttp moves raw bytes with far less overhead per request than httpx or the openai SDK's typed calls
(see shared REFERENCE.md), and one pooled session keeps connections warm across requests and upstreams.
Timeouts are per request (see forward.py), since they differ by upstream and by streaming.
"""

from __future__ import annotations

import aiohttp


class UpstreamClient:
    def __init__(self, pool_size: int) -> None:
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self._pool_size, ttl_dns_cache=300, keepalive_timeout=60)
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            read_bufsize=2**16,
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "upstream client used before startup"
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
