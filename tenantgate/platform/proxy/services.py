"""What the /v1 proxy uses of a process's components, and nothing else: handed to the router when the app is built.

The router and the endpoint families (files, batches, vector stores, conversations, models, stored responses) take
this, not the whole ``Runtime``: what the proxy can reach is what is listed here, typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tenantgate.platform.background.settlement import Settler
    from tenantgate.platform.limits.hook import Limiter
    from tenantgate.platform.limits.pacing import RefusalPacer
    from tenantgate.platform.proxy.hooks import Hooks
    from tenantgate.platform.proxy.unfinished import UnfinishedStreams
    from tenantgate.platform.upstream.client import UpstreamClient
    from tenantgate.platform.upstream.registry import Routing
    from tenantgate.platform.workslots import WorkSlots
    from tenantgate.settings import Settings
    from tenantgate.tenants.file_room import FileRoom
    from tenantgate.tenants.metering.meter import Metering
    from tenantgate.tenants.object_index import ObjectIndex
    from tenantgate.tenants.objects import ObjectOwnership


@dataclass(slots=True)
class ProxyServices:
    settings: Settings
    routing: Routing
    """The upstreams and which serves a model."""
    http: UpstreamClient
    hooks: Hooks
    """Telemetry, limits, object answers and metering around every exchange (tests may swap them before serving)."""
    limiter: Limiter
    pacer: RefusalPacer
    work_slots: WorkSlots
    ownership: ObjectOwnership
    objects: ObjectIndex
    file_room: FileRoom
    """What a tenant's files may still take under its count and storage limits (uploads hold room first)."""
    metering: Metering
    """For its current price book (batches price their lines before they are made)."""
    unfinished_streams: UnfinishedStreams
    settler: Settler | None = None
    """Billing of batches and background responses (an output file or a response is settled before its delete)."""
