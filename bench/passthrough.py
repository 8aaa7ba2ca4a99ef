"""The naive passthrough: the reference tenantgate is measured against (issue 9).

A plain FastAPI route that reads the request body and forwards it with aiohttp through one pooled ClientSession,
relaying a streamed (SSE) answer chunk by chunk. It does what any forwarder must (replace the caller's key with the
upstream's, drop hop-by-hop headers) and nothing else: no auth, limits, metering or telemetry.

Run: ``python -m bench.passthrough --port 8100 --upstream http://127.0.0.1:9000/v1``.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

_DROP = frozenset({"host", "content-length", "authorization", "connection", "accept-encoding", "transfer-encoding"})


def create_app(upstream_url: str, upstream_key: str = "sk-bench-upstream") -> FastAPI:
    session: aiohttp.ClientSession | None = None
    auth = f"Bearer {upstream_key}"

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nonlocal session
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000), auto_decompress=False)
        yield
        await session.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        assert session is not None
        body = await request.body()
        headers = {name: value for name, value in request.headers.items() if name not in _DROP}
        headers["authorization"] = auth
        upstream = await session.post(upstream_url + "/chat/completions", data=body, headers=headers)
        if upstream.content_type == "text/event-stream":

            async def relay() -> AsyncIterator[bytes]:
                try:
                    async for chunk in upstream.content.iter_any():
                        yield chunk
                finally:
                    upstream.release()

            return StreamingResponse(relay(), status_code=upstream.status, media_type="text/event-stream")
        payload = await upstream.read()
        upstream.release()
        return Response(payload, status_code=upstream.status, media_type=upstream.content_type)

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Naive FastAPI + aiohttp passthrough (benchmark reference)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--upstream", required=True, help="OpenAI base URL, e.g. http://127.0.0.1:9000/v1")
    args = parser.parse_args()
    # The same server settings as `tenantgate serve`: one worker, no access log, no server header.
    uvicorn.run(
        create_app(args.upstream.rstrip("/")),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
