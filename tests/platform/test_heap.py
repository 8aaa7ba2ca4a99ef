"""The server freezes its startup heap, so the cyclic collector stops walking it under load (platform/heap.py)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator

import pytest

from tenantgate.platform.heap import GEN0_THRESHOLD
from tests.support.gateway import Gateway


@pytest.fixture
def gc_state() -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_startup_heap_is_frozen_and_young_collections_are_rare(
    gc_state: None, gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str
) -> None:
    assert gc.get_freeze_count() == 0
    gateway_factory(database_url=sqlite_url, upstream_base_url=dev_upstream, gc_tuning=True)
    # Everything alive once the app started (the app, its modules, the test session itself) is out of the
    # collector's reach: a full collection no longer walks it.
    assert gc.get_freeze_count() > 50_000
    assert gc.get_threshold()[0] == GEN0_THRESHOLD
    gc.collect()
    assert gc.get_freeze_count() > 50_000  # a collection does not thaw it


def test_setting_off_leaves_the_collector_alone(
    gc_state: None, gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str
) -> None:
    before = gc.get_threshold()
    gateway_factory(database_url=sqlite_url, upstream_base_url=dev_upstream, gc_tuning=False)
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
