"""A JSON request body as received, and the (few) rewrites the gateway must make to it.

Every byte the client sent goes upstream unchanged, except: ``stream_options.include_usage`` on streams (spliced
in, so the rest stays byte-identical) and the model name when a public name or alias maps to another upstream name
(the body is then re-serialised).
"""

from __future__ import annotations

from typing import Any

import orjson

from tenantgate.platform.upstream.registry import Target


class JsonBody:
    def __init__(self, raw: bytes, payload: dict[str, Any], model: str) -> None:
        self.raw = raw
        self.payload = payload
        self.model = model
        self._by_model: dict[str, bytes] = {}

    def ask_for_stream_usage(self) -> bool:
        """Make sure the upstream sends the usage chunk. True if the client had not asked for it itself."""
        options = self.payload.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            if self.raw.count(b'"include_usage"') > 1:
                # Named twice (true read last): an upstream reading the first could stream without usage. The
                # body is written again with the one value the gateway read, so what it checked is what goes on.
                self.raw = orjson.dumps(self.payload)
            return False
        if "stream_options" not in self.payload and self.raw.lstrip().startswith(b"{"):
            head, brace, tail = self.raw.partition(b"{")
            self.raw = head + brace + b'"stream_options":{"include_usage":true},' + tail
        else:
            merged = {**(options if isinstance(options, dict) else {}), "include_usage": True}
            self.raw = orjson.dumps({**self.payload, "stream_options": merged})
        self.payload = {**self.payload, "stream_options": {"include_usage": True}}
        return True

    def for_target(self, target: Target) -> bytes:
        if target.model == self.model:
            return self.raw
        body = self._by_model.get(target.model)
        if body is None:
            body = orjson.dumps({**orjson.loads(self.raw), "model": target.model})
            self._by_model[target.model] = body
        return body
