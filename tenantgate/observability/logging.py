"""Structured logs: one JSON object per line, with the request's trace id, span id, request id and tenant.

Two handler filters do the work, so every logger (ours, uvicorn's, libraries') gets them:
  ``RequestContextFilter`` - adds ``request_id``, ``tenant_id``, ``trace_id``, ``span_id`` from the request being
                             served (observability/context.py), when there is one;
  ``RedactingFilter``      - renders the message and any traceback, then removes credentials from them:
                             Authorization/api-key/cookie/password-like fields, bearer tokens, tenant (``tg-``)
                             and OpenAI-style (``sk-``) keys, passwords in URLs, and the configured secrets
                             themselves (admin token, secret key, upstream key, database/Redis passwords).
``serve`` installs them through ``logging_config(settings)`` for uvicorn's workers.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import orjson

from tenantgate.observability.context import CURRENT
from tenantgate.settings import Settings

REDACTED = "[REDACTED]"
_MIN_SECRET_LENGTH = 8

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # "authorization: Bearer x", "'api-key': 'x'", "TENANTGATE_ADMIN_TOKEN=x", "password=x" (not "max_tokens=5")
    (
        re.compile(
            r"(?i)\b([\w.-]*?(?:authorization|api[-_]?key|cookie|passw(?:or)?d|secret|token(?!s))[\w.-]*)"
            r"(\"|')?(\s*[:=]\s*)(\"|')?((?:bearer|basic)\s+)?[^\s\"',;&}\]]+"
        ),
        rf"\1\2\3\4\5{REDACTED}",
    ),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), rf"\1 {REDACTED}"),
    # Tenant keys (tg-), admin, billing and tenant tokens (tga-), OpenAI keys (sk-).
    (re.compile(r"\b(tga|tg|sk)-[A-Za-z0-9_-]{12,}"), rf"\1-{REDACTED}"),
    (re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@"), rf"\1{REDACTED}@"),
)

# Record attributes that are not extra fields (uvicorn's color_message duplicates the message with ANSI codes).
_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime", "taskName", "color_message"}
)
_CONTEXT_ATTRIBUTES = ("request_id", "tenant_id", "trace_id", "span_id")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def settings_secrets(settings: Settings) -> list[str]:
    """The literal secret values of a configuration, for exact-match redaction."""
    values = [settings.secret_key.get_secret_value()]
    for secret in (settings.admin_token, settings.upstream_api_key):
        if secret is not None:
            values.append(secret.get_secret_value())
    for url in (settings.database_url, settings.redis_url):
        password = urlsplit(url).password if url else None
        if password:
            values.append(password)
    return [value for value in values if len(value) >= _MIN_SECRET_LENGTH]


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret containing another is removed whole.
        self.secrets = sorted({s for s in secrets if len(s) >= _MIN_SECRET_LENGTH}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        record.msg = redact(message, self.secrets)
        record.args = None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        for name, value in list(vars(record).items()):
            if name not in _STANDARD_ATTRIBUTES and isinstance(value, str):
                setattr(record, name, redact(value, self.secrets))
        return True


class RequestContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        state = CURRENT.get()
        if state is None:
            return True
        request_id = state.request_id
        if request_id:
            record.request_id = request_id
        ctx = state.context
        if ctx is not None:
            record.tenant_id = ctx.principal.tenant_id
        if state.trace_id:
            record.trace_id = f"{state.trace_id:032x}"
        if state.sampled:
            record.span_id = f"{state.span_id:016x}"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        seconds = record.created
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1000):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _CONTEXT_ATTRIBUTES:
            value = getattr(record, name, None)
            if value:
                entry[name] = value
        for name, value in vars(record).items():
            if name not in _STANDARD_ATTRIBUTES and name not in entry and not name.startswith("_"):
                entry[name] = value if isinstance(value, str | int | float | bool | type(None)) else repr(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return orjson.dumps(entry).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(
            f"{name}={getattr(record, name)}" for name in _CONTEXT_ATTRIBUTES if getattr(record, name, None)
        )
        return f"{line} [{context}]" if context else line


def logging_config(settings: Settings) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the server (passed to uvicorn, which applies it in every worker)."""
    level = settings.log_level.upper()
    formatter = (
        {"()": f"{__name__}.JsonFormatter"}
        if settings.log_format == "json"
        else {"()": f"{__name__}.TextFormatter", "format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    handler = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "formatter": "default",
        "filters": ["context", "redact"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {
            "context": {"()": f"{__name__}.RequestContextFilter"},
            "redact": {"()": f"{__name__}.RedactingFilter", "secrets": settings_secrets(settings)},
        },
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": "WARNING"},
        "loggers": {
            "tenantgate": {"level": level},
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["default"], "level": level, "propagate": False},
        },
    }
