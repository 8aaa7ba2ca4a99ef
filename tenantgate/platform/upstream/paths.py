"""Upstream request paths, built only from fixed templates and validated, encoded identifiers.

An identifier that goes into an upstream URL (an object id, a model in ``/models/{model}``, an Azure deployment)
must be one path segment of a strict grammar: ASCII letters, digits and ``_ - . :``, not starting with a dot, at
most 256 characters. So it cannot add a segment, a dot-segment, a query, a fragment or a matrix parameter, even
behind a front that percent-decodes and normalizes paths (``%2F``, ``%2e%2e``, ``\\``, ``;``, Unicode dots are all
outside the grammar); it is percent-encoded all the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._:-]{0,255}")


class InvalidIdentifier(ValueError):
    """A value that is not a single path segment of the strict grammar."""


def is_segment(value: object) -> bool:
    return isinstance(value, str) and SEGMENT.fullmatch(value) is not None


def segment(value: str) -> str:
    """``value`` as one percent-encoded path segment; InvalidIdentifier unless it matches the grammar."""
    if not is_segment(value):
        raise InvalidIdentifier(value)
    return quote(value, safe="")


@dataclass(frozen=True, slots=True)
class UpstreamPath:
    """A path below an upstream's ``/v1`` (e.g. ``/responses/resp_1/input_items``) and its encoded query."""

    path: str
    query: str = ""
    deployment_scoped: bool = False
    """Azure OpenAI addresses it per deployment (``/openai/deployments/{model}/...``)."""
