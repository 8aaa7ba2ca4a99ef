"""A dev upstream whose batches finish within a second, and a gateway polling every half second."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tenantgate.devupstream import DevUpstream
from tests.conftest import UPSTREAM_KEY
from tests.support.gateway import Gateway
from tests.support.server import ServedApp


@pytest.fixture(scope="module")
def fast_upstream() -> Iterator[str]:
    with ServedApp(DevUpstream(api_key=UPSTREAM_KEY, batch_seconds=1.0), lifespan="off") as served:
        yield served.url + "/v1"


@pytest.fixture
def objects_gateway(
    postgres_url: str, redis_url: str, redis_prefix: str, fast_upstream: str, gateway_factory: Callable[..., Gateway]
) -> Callable[..., Gateway]:
    """Gateways on one Postgres database and Redis prefix (so several can share them, as replicas do)."""

    def start(**overrides: Any) -> Gateway:
        values: dict[str, Any] = {
            "database_url": postgres_url,
            "redis_url": redis_url,
            "redis_prefix": redis_prefix,
            "upstream_base_url": fast_upstream,
            "object_poll_seconds": 0.5,
            "metering_flush_interval_seconds": 0.2,
        }
        values.update(overrides)
        return gateway_factory(**values)

    return start
