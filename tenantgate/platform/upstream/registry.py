"""Named upstreams and the routing table from public model names (and aliases) to upstream deployments."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from urllib.parse import quote

from tenantgate.platform.upstream.config import GatewayConfig, UpstreamConfig
from tenantgate.platform.upstream.paths import UpstreamPath, segment
from tenantgate.wire.httperrors import Timeouts


class Upstream:
    # A tenant's own endpoint (for_tenant): connections go through the SSRF guard's connector (client.py).
    tenant_set = False
    # Why a tenant's stored base URL fails the guard's static checks (written around the admin API, or the policy
    # changed since); requests routed to it are refused instead of being sent.
    refused: str | None = None

    def __init__(self, config: UpstreamConfig) -> None:
        self.name = config.name
        self.kind = config.kind
        self.provider = {"openai": "openai", "azure": "azure.ai.openai"}.get(config.kind, "openai")
        self.base_url = config.base_url
        self.max_retries = config.max_retries
        self.first_byte_timeout = config.first_byte_timeout_seconds
        self.total_timeout = config.total_timeout_seconds
        self.stream_timeout = Timeouts(
            total=None, sock_connect=config.connect_timeout_seconds, sock_read=config.idle_timeout_seconds
        )
        self.json_timeout = Timeouts(total=config.total_timeout_seconds, sock_connect=config.connect_timeout_seconds)
        self._api_version = config.api_version
        self._api_key = config.api_key.get_secret_value() if config.api_key is not None else None

    def url(self, target: UpstreamPath, model: str | None) -> str:
        """The upstream URL of a route's path (built from its template) for a deployment ``model``.

        On Azure the model is a path segment: it must pass the same grammar as any identifier (InvalidIdentifier).
        """
        path, query = target.path, target.query
        if self.kind != "azure":
            return f"{self.base_url}{path}?{query}" if query else self.base_url + path
        suffix = "?api-version=" + quote(self._api_version or "", safe="") + (f"&{query}" if query else "")
        if model and target.deployment_scoped:
            return f"{self.base_url}/openai/deployments/{segment(model)}{path}{suffix}"
        return f"{self.base_url}/openai{path}{suffix}"

    def for_tenant(self, base_url: str, api_key: str, *, refused: str | None = None) -> Upstream:
        """This upstream at a tenant's own endpoint, with the tenant's key: same name, kind, api-version, timeouts.

        The copy carries no platform key, so nothing of ours can be sent to an address a tenant chose.
        """
        own = copy.copy(self)
        own.base_url = base_url.rstrip("/")
        own._api_key = api_key
        own.tenant_set = True
        own.refused = refused
        return own

    def auth_header(self, tenant_key: str | None = None) -> tuple[str, str] | None:
        """The credential header: the tenant's own key for this upstream (BYOK) if it has one, else ours."""
        key = tenant_key or self._api_key
        if key is None:
            return None
        return ("api-key", key) if self.kind == "azure" else ("Authorization", f"Bearer {key}")


@dataclass(frozen=True, slots=True)
class Target:
    upstream: Upstream
    model: str


class Routing:
    def __init__(self, config: GatewayConfig) -> None:
        self.upstreams = {u.name: Upstream(u) for u in config.upstreams}
        self.default = self.upstreams[config.default_upstream] if config.default_upstream else None
        self._routes: dict[str, tuple[Target, ...]] = {}
        self._canonical: dict[str, str] = {}
        for route in config.models:
            targets = tuple(Target(self.upstreams[d.upstream], d.model or route.name) for d in route.deployments)
            for name in (route.name, *route.aliases):
                self._routes[name] = targets
                self._canonical[name] = route.name
        self.declared_models = tuple(route.name for route in config.models)

    def targets(self, model: str) -> tuple[Target, ...]:
        """Deployments to try for a public model name, in order; empty if the model is not routable."""
        targets = self._routes.get(model)
        if targets is not None:
            return targets
        if self.default is not None:
            return (Target(self.default, model),)
        return ()

    def canonical(self, model: str) -> str:
        """The public name of a model or alias (allow-lists and metering use it)."""
        return self._canonical.get(model, model)

    @property
    def primary(self) -> Upstream:
        """The upstream that answers model listings when no routing table is declared."""
        return self.default or next(iter(self.upstreams.values()))
