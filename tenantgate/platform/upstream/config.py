"""Upstreams and the model routing table, as configured (YAML file or the single-upstream settings).

```yaml
upstreams:
  - name: openai
    kind: openai                       # openai | azure | openai_compatible
    base_url: https://api.openai.com/v1
    api_key: ${OPENAI_API_KEY}         # ${VAR} is expanded from the environment
  - name: azure-eu
    kind: azure
    base_url: https://my-resource.openai.azure.com
    api_key: ${AZURE_OPENAI_API_KEY}
    api_version: "2024-10-21"
models:
  - name: gpt-4o-mini
    aliases: [fast]
    deployments:                       # tried in order: retries, then failover to the next
      - {upstream: openai, model: gpt-4o-mini}
      - {upstream: azure-eu, model: my-4o-mini-deployment}
default_upstream: openai               # where models not listed go; null refuses them (404)
```
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from tenantgate.settings import DEFAULT_UPSTREAM_BASE_URL, Settings

UpstreamKind = Literal["openai", "azure", "openai_compatible"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UpstreamConfig(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: UpstreamKind = "openai_compatible"
    base_url: str
    api_key: SecretStr | None = None
    api_version: str | None = Field(default=None, description="Azure OpenAI api-version query parameter")
    max_retries: int = Field(default=2, ge=0, le=10, description="Retries on this upstream before failing over")
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    first_byte_timeout_seconds: float = Field(
        default=300.0, gt=0, description="Streams: until the first event. Non-streamed: until the whole answer."
    )
    idle_timeout_seconds: float = Field(default=120.0, gt=0, description="Longest silence inside a stream")
    total_timeout_seconds: float = Field(default=600.0, gt=0, description="Whole non-streamed request")

    @field_validator("base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _azure_needs_version(self) -> UpstreamConfig:
        if self.kind == "azure" and not self.api_version:
            raise ValueError(f"upstream {self.name!r}: azure upstreams need api_version")
        return self


class DeploymentConfig(_Strict):
    upstream: str
    model: str | None = Field(default=None, description="Model (Azure: deployment) name upstream; default: same")


class ModelRouteConfig(_Strict):
    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    deployments: list[DeploymentConfig] = Field(min_length=1)


class GatewayConfig(_Strict):
    upstreams: list[UpstreamConfig] = Field(min_length=1)
    models: list[ModelRouteConfig] = Field(default_factory=list)
    default_upstream: str | None = None

    @model_validator(mode="after")
    def _references_exist(self) -> GatewayConfig:
        names = [u.name for u in self.upstreams]
        if len(set(names)) != len(names):
            raise ValueError("upstream names must be unique")
        if self.default_upstream is not None and self.default_upstream not in names:
            raise ValueError(f"default_upstream {self.default_upstream!r} is not a configured upstream")
        public: set[str] = set()
        for route in self.models:
            for deployment in route.deployments:
                if deployment.upstream not in names:
                    raise ValueError(f"model {route.name!r}: unknown upstream {deployment.upstream!r}")
            for name in (route.name, *route.aliases):
                if name in public:
                    raise ValueError(f"model name or alias {name!r} is declared twice")
                public.add(name)
        return self


def gateway_config(settings: Settings) -> GatewayConfig:
    """The configured routing: the YAML file if given, else one upstream from the TENANTGATE_UPSTREAM_* settings."""
    raw = settings.load_config_file()
    if raw is not None:
        return GatewayConfig.model_validate(raw)
    default = UpstreamConfig(
        name="default",
        kind="openai" if settings.upstream_base_url == DEFAULT_UPSTREAM_BASE_URL else "openai_compatible",
        base_url=settings.upstream_base_url,
        api_key=settings.upstream_api_key,
        max_retries=settings.upstream_max_retries,
        connect_timeout_seconds=settings.upstream_connect_timeout_seconds,
        first_byte_timeout_seconds=settings.upstream_first_byte_timeout_seconds,
        idle_timeout_seconds=settings.upstream_idle_timeout_seconds,
        total_timeout_seconds=settings.upstream_read_timeout_seconds,
    )
    return GatewayConfig(upstreams=[default], default_upstream="default")
