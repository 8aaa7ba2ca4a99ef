"""The dev upstream served on a loopback port, and official openai SDK clients pointed straight at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import openai
import pytest

from tenantgate.devupstream import DevUpstream
from tests.support.server import ServedApp

KEY = "sk-devupstream-test"


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    """The served dev upstream's root url (the OpenAI base url is this plus ``/v1``)."""
    with ServedApp(DevUpstream(api_key=KEY, name="alpha"), lifespan="off") as served:
        yield served.url


@pytest.fixture
def client(upstream: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=upstream + "/v1", api_key=KEY, max_retries=0, timeout=10) as sdk:
        yield sdk


@pytest.fixture
async def async_client(upstream: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=upstream + "/v1", api_key=KEY, max_retries=0, timeout=10) as sdk:
        yield sdk
