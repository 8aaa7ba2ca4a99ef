"""Once started, the server freezes its startup heap and switches the GIL more often (platform/interpreter.py)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator

import pytest

from tenantgate.platform.interpreter import GEN0_THRESHOLD, SWITCH_INTERVAL_SECONDS
from tests.support.gateway import Gateway


@pytest.fixture
def interpreter_state() -> Iterator[None]:
    threshold, interval = gc.get_threshold(), sys.getswitchinterval()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    sys.setswitchinterval(interval)


def test_startup_heap_is_frozen_and_collections_are_rare(
    interpreter_state: None, gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str
) -> None:
    assert gc.get_freeze_count() == 0
    gateway_factory(database_url=sqlite_url, upstream_base_url=dev_upstream, interpreter_tuning=True)
    # Everything alive once the app started (the app, its modules, the test session itself) is out of the
    # collector's reach: a full collection no longer walks it.
    assert gc.get_freeze_count() > 50_000
    assert gc.get_threshold()[0] == GEN0_THRESHOLD
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_SECONDS)


def test_setting_off_leaves_the_interpreter_alone(
    interpreter_state: None, gateway_factory: Callable[..., Gateway], sqlite_url: str, dev_upstream: str
) -> None:
    before = gc.get_threshold(), sys.getswitchinterval()
    gateway_factory(database_url=sqlite_url, upstream_base_url=dev_upstream, interpreter_tuning=False)
    assert gc.get_freeze_count() == 0
    assert (gc.get_threshold(), sys.getswitchinterval()) == before
