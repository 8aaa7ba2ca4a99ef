"""Structured JSON logs with request context, and no credential in any line."""

from __future__ import annotations

import io
import logging
import logging.config
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tenantgate.core.exchange import Exchange
from tenantgate.observability.logging import REDACTED, logging_config, redact
from tenantgate.platform.proxy.hooks import Hooks
from tests.conftest import ADMIN_TOKEN, SECRET_KEY, UPSTREAM_KEY, make_settings

_LOGGERS = ("tenantgate", "uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    saved = {
        name: (list(lg.handlers), lg.level, lg.propagate, lg.disabled)
        for name in _LOGGERS
        for lg in [logging.getLogger(name)]
    }
    yield
    root.handlers[:], root.level = saved_root
    for name, (handlers, level, propagate, disabled) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:], lg.level, lg.propagate, lg.disabled = handlers, level, propagate, disabled


def _install(settings: Any) -> io.StringIO:
    """The server's own logging configuration (what ``serve`` hands uvicorn), writing to a buffer."""
    buffer = io.StringIO()
    config = logging_config(settings)
    config["handlers"]["default"]["stream"] = buffer
    logging.config.dictConfig(config)
    return buffer


@pytest.mark.parametrize(
    "text",
    [
        "headers {'authorization': 'Bearer tg-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', 'api-key': 'abcdef123456'}",
        'json {"Authorization": "Basic dXNlcjpwYXNzd29yZA==", "x-api-key": "abcdef123456"}',
        "calling with sk-proj-abcdefghijklmnop0123",
        "a named admin token tga-abcdefghijklmnop0123 in a message",
        "connect postgresql+asyncpg://tg:abcdef123456@db:5432/tenantgate failed",
        "set TENANTGATE_ADMIN_TOKEN=abcdef123456 and password: abcdef123456",
        "Cookie: session=abcdef123456",
    ],
)
def test_credentials_are_redacted_from_text(text: str) -> None:
    cleaned = redact(text)
    assert REDACTED in cleaned
    for secret in ("abcdef123456", "AAAAAAAAAAAA", "dXNlcjpwYXNzd29yZA", "abcdefghijklmnop0123"):
        assert secret not in cleaned


def test_ordinary_text_is_left_alone() -> None:
    text = "chat gpt-4o-mini used 12 prompt_tokens, max_tokens=50, key tg-abc***wxyz, 200 OK"
    assert redact(text) == text


class LeakyHook:
    """A buggy hook whose error message and log arguments carry credentials (the tenant key it was given)."""

    name = "leaky"

    def __init__(self) -> None:
        self.key = ""

    async def admit(self, exchange: Exchange) -> None:
        logging.getLogger("tenantgate.leaky").warning(
            "admitting with headers %s", {"authorization": f"Bearer {self.key}"}
        )

    async def settle(self, exchange: Exchange) -> None:
        return None

    def finish(self, exchange: Exchange) -> None:
        raise RuntimeError(f"boom: upstream key {UPSTREAM_KEY}, admin {ADMIN_TOKEN}, key {self.key}")


def test_every_log_line_of_a_served_gateway_is_json_with_context_and_without_secrets(
    traced_factory, dev_upstream: str, restore_logging: None
) -> None:
    traced = traced_factory(upstream_base_url=dev_upstream, access_log=True)
    gateway = traced.gateway
    remember = LeakyHook()
    gateway.runtime.proxy.hooks = Hooks([gateway.runtime.telemetry.hook, remember])
    buffer = _install(gateway.settings)

    key = gateway.new_key()
    remember.key = key["key"]
    traced.clear()
    chat = httpx.post(
        gateway.base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {key['key']}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert chat.status_code == 200
    server = traced.named("POST /v1/chat/completions")["POST /v1/chat/completions"]
    httpx.post(gateway.base_url + "/embeddings", headers={"api-key": key["key"]}, json={"model": "x", "input": "y"})
    httpx.get(gateway.base_url + "/models", headers={"Authorization": "Bearer tg-wrongwrongwrongwrongwrong00000000000"})
    gateway.admin("GET", "/readyz")
    logging.getLogger("tenantgate.test").info(
        "db url %s", gateway.settings.database_url.replace("///", "//u:pw12345678@h/")
    )

    uvicorn_style = {"color_message": "Started server process [\x1b[36m%d\x1b[0m]"}
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42, extra=uvicorn_style)

    lines = [orjson.loads(line) for line in buffer.getvalue().splitlines()]
    started = next(line for line in lines if line["logger"] == "uvicorn.error")
    assert started["message"] == "Started server process [42]" and "color_message" not in started
    assert len(lines) >= 6
    text = buffer.getvalue()
    for secret in (key["key"], ADMIN_TOKEN, UPSTREAM_KEY, SECRET_KEY, "pw12345678", "tg-wrongwrongwrong"):
        assert secret not in text
    for line in lines:
        assert {"ts", "level", "logger", "message"} <= set(line)

    (access,) = [
        line for line in lines if line["logger"] == "tenantgate.access" and line["http_route"] == "/v1/chat/completions"
    ]
    assert access["status"] == 200 and access["request_id"] == chat.headers["x-request-id"]
    assert access["tenant_id"] == key["tenant_id"]
    assert server.context is not None
    assert access["trace_id"] == f"{server.context.trace_id:032x}"
    assert access["span_id"] == f"{server.context.span_id:016x}"
    failure = next(line for line in lines if "failed in finish" in line["message"])
    assert "RuntimeError: boom" in failure["exception"] and failure["request_id"] == chat.headers["x-request-id"]
    leaky = next(line for line in lines if line["logger"] == "tenantgate.leaky")
    assert "Bearer [REDACTED]" in leaky["message"]


def test_text_format_is_available_for_local_use(restore_logging: None) -> None:
    buffer = _install(make_settings(log_format="text"))
    logging.getLogger("tenantgate.test").warning("plain %s", "line with api_key=abcdef123456")
    line = buffer.getvalue().strip()
    assert "WARNING tenantgate.test: plain line with api_key=[REDACTED]" in line
