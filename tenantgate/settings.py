"""The one place configuration is read from the environment.

Every setting has the prefix ``TENANTGATE_`` and may also come from a ``.env`` file in the working
directory. Secrets are ``SecretStr`` so they never show up in reprs, logs or tracebacks.

Management commands (``Settings.for_command``) also read the dev setup's file that ``tenantgate serve`` writes in
dev mode beside a SQLite database (``tenantgate.db`` -> ``tenantgate.dev.env``), below the environment and
``.env``: so the CLI works on ``./scripts/serve``'s database as it is. Servers never read it, and nothing reads
it for any other database, so a production server still refuses the built-in secret key.
"""

from __future__ import annotations

import json
import os
import re
from enum import StrEnum
from functools import cached_property
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SECRET_KEY = "dev-insecure-secret-key-change-me"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./tenantgate.db"
DEFAULT_UPSTREAM_BASE_URL = "https://api.openai.com/v1"
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


OtlpProtocol = Literal["http/protobuf", "grpc"]
TokenEstimates = Literal["tiktoken", "heuristic"]
_EXPORTERS = {
    "otel_traces_exporter": ("otlp", "console", "none"),
    "otel_metrics_exporter": ("otlp", "prometheus", "console", "none"),
}


class Environment(StrEnum):
    DEV = "dev"
    PRODUCTION = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TENANTGATE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    env: Environment = Environment.PRODUCTION
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = ""
    redis_prefix: str = "tg"
    upstream_base_url: str = DEFAULT_UPSTREAM_BASE_URL
    upstream_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("TENANTGATE_UPSTREAM_API_KEY", "OPENAI_API_KEY"),
    )
    admin_token: SecretStr | None = None
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET_KEY)

    migrate_on_start: bool = True
    key_cache_ttl_seconds: float = Field(default=30.0, ge=0)
    key_cache_negative_ttl_seconds: float = Field(default=2.0, ge=0)
    last_used_flush_seconds: float = Field(default=5.0, gt=0)
    # Failed authentications (tenant keys, admin tokens) per source address (an IPv6 /64) and from all sources, per
    # minute and surface, before unknown credentials are refused unchecked (tenants/auth_throttle.py).
    auth_failures_per_source_per_minute: int = Field(default=20, ge=1)
    auth_failures_per_minute: int = Field(default=600, ge=1)

    upstream_connect_timeout_seconds: float = Field(default=10.0, gt=0)
    upstream_read_timeout_seconds: float = Field(default=600.0, gt=0)
    upstream_pool_size: int = Field(default=1000, ge=1)
    # The client for the operator's upstreams: the gateway's own (wire/http1.py) or aiohttp.
    upstream_http_client: Literal["lean", "aiohttp"] = "lean"
    # How the operator's upstreams are reached (docs/upstream-network.md): an outbound proxy, by default from the
    # standard variables (either case), and a CA bundle trusted on top of the system's.
    upstream_https_proxy: SecretStr = Field(
        default=SecretStr(""), validation_alias=AliasChoices("TENANTGATE_UPSTREAM_HTTPS_PROXY", "HTTPS_PROXY")
    )
    upstream_http_proxy: SecretStr = Field(
        default=SecretStr(""), validation_alias=AliasChoices("TENANTGATE_UPSTREAM_HTTP_PROXY", "HTTP_PROXY")
    )
    upstream_no_proxy: str = Field(
        default="", validation_alias=AliasChoices("TENANTGATE_UPSTREAM_NO_PROXY", "NO_PROXY")
    )
    upstream_ca_file: Path | None = None

    max_request_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    # Bounded requests (platform/bounded_http.py): what an unauthenticated caller can make a worker hold.
    max_admin_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    http_max_header_bytes: int = Field(default=32 * 1024, ge=1024)
    http_max_headers: int = Field(default=100, ge=10)
    http_header_timeout_seconds: float = Field(default=10.0, gt=0)
    http_body_idle_timeout_seconds: float = Field(default=30.0, gt=0)
    http_body_timeout_seconds: float = Field(default=300.0, gt=0)
    http_keepalive_timeout_seconds: float = Field(default=5.0, gt=0)
    http_max_connections: int = Field(default=2048, ge=1)
    http_max_connections_per_source: int = Field(default=512, ge=1)
    http_max_pending_header_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024)
    log_level: str = "info"
    trusted_proxies: str = ""
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    shutdown_drain_seconds: float = Field(default=0.0, ge=0)
    spool_dir: Path = Path("./spool")
    config_file: Path | None = None
    upstream_first_byte_timeout_seconds: float = Field(default=300.0, gt=0)
    upstream_idle_timeout_seconds: float = Field(default=120.0, gt=0)
    upstream_max_retries: int = Field(default=2, ge=0, le=10)
    upstream_max_retry_wait_seconds: float = Field(default=2.0, ge=0)
    # How long a Responses stream that ended without its usage may spend asking the upstream for it (0: never ask,
    # estimate). See platform/proxy/unfinished.py.
    unfinished_stream_retrieve_seconds: float = Field(default=5.0, ge=0)
    # The SSRF guard on base URLs tenants set with their own keys (platform/upstream/guard.py).
    tenant_upstream_allowed_networks: Annotated[list[IPv4Network | IPv6Network], NoDecode] = Field(default_factory=list)
    tenant_upstream_allow_http: bool = False
    # Stored prompts (``prompt.id``, ``pmpt_...``) of the platform's upstream account a tenant may run
    # (platform/proxy/prompts.py): ``pmpt_x`` for every tenant, ``<tenant id>:pmpt_x`` for one, ``*`` for all.
    platform_prompts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    metering_flush_interval_seconds: float = Field(default=1.0, gt=0)
    metering_batch_size: int = Field(default=5000, ge=1, le=100_000)
    metering_shutdown_flush_seconds: float = Field(default=10.0, ge=0)
    # A request for a model (or image size, or service tier) without a price: served and stored unpriced, or
    # refused before it reaches the upstream (docs/pricing.md).
    unpriced_models: Literal["admit", "refuse"] = "admit"

    # Rate limits and quotas (tenants/limits, platform/limits).
    limits_fail_mode: Literal["open", "closed"] = "open"
    limits_redis_timeout_ms: float = Field(default=100.0, gt=0)
    limits_redis_retry_seconds: float = Field(default=1.0, ge=0)
    limits_lease_seconds: float = Field(default=900.0, gt=0)
    limits_local_credit: bool = True
    # A principal Redis (or memory) answered "over a window" is refused from memory until the window frees room.
    limits_local_refusals: bool = True
    # Fair share of a worker (platform/workslots.py): a model request holds one of ``work_slots`` slots per worker
    # (``work_slots_shared`` while another tenant's requests are in the worker too) from before its body is parsed
    # until it has been answered; after ``work_slot_upstream_seconds`` of waiting on Redis or its upstream, its slot
    # passes on. Requests without a slot wait by tenant in weighted round-robin order.
    work_slots: int = Field(default=16, ge=1)
    work_slots_shared: int = Field(default=1, ge=1)
    work_slot_upstream_seconds: float = Field(default=0.001, gt=0)
    work_queue_per_tenant: int = Field(default=256, ge=0)
    work_queue_timeout_seconds: float = Field(default=30.0, gt=0)
    # Back-pressure (platform/limits/pacing.py): a principal refused more than ``after`` times within a second gets its
    # next refusals no sooner than ``seconds`` after it asked; at most ``max_held`` refusals wait at once per worker.
    refusal_delay_seconds: float = Field(default=0.25, ge=0, le=10)
    refusal_delay_after: int = Field(default=10, ge=1)
    refusal_delay_max_held: int = Field(default=1024, ge=0)
    # What a request without an output cap holds against a monthly quota or budget, for models whose maximum
    # output the gateway does not know (tenants/limits/outputs.py).
    default_max_output_tokens: int = Field(default=16_384, ge=1)
    # Prompt token estimates for TPM and quota admission: 1 token per 4 characters (as OpenAI's own rate limiter
    # estimates a request), or the model's tiktoken encoding (about 46 MB more per process). See tenantgate/tokens.py.
    token_estimates: TokenEstimates = "heuristic"
    admin_ip_rate_limit: str = "600/minute"
    # Files, uploads and batches (platform/proxy/files.py, batches.py): OpenAI's own maximums by default. Per tenant:
    # the files it keeps (count and bytes, shown in /v1/me); per object: a file, an upload, a batch's input.
    files_max_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    files_max_count: int = Field(default=10_000, ge=0)
    files_max_storage_bytes: int = Field(default=2_500_000_000_000, ge=0)
    uploads_max_bytes: int = Field(default=8 * 1024**3, ge=1)
    upload_part_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    batch_input_max_bytes: int = Field(default=200 * 1024 * 1024, ge=1)
    batch_input_max_requests: int = Field(default=50_000, ge=1)
    # How often the background poller (one per deployment) looks at batches and background responses in flight.
    object_poll_seconds: float = Field(default=30.0, gt=0)
    # How often the poller looks at each live vector store at least, to record its usage_bytes for the Usage API.
    vector_store_usage_seconds: float = Field(default=900.0, gt=0)
    # Observability (tenantgate/observability/). Standard OTEL_* variables keep their own names.
    metrics_enabled: bool = True
    # A separate, unauthenticated /metrics listener for Prometheus (platform/metrics.py); unset: only the main
    # port's /metrics, which needs an admin or billing token.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"
    metrics_dir: Path | None = None
    metrics_tenant_label_limit: int = Field(default=100, ge=0)
    metrics_model_label_limit: int = Field(default=100, ge=0)
    # The web console (platform/console/): how long a sign-in lasts; where the alert states come from (a Prometheus
    # that loads the chart's rules; unset: no alert panel) and where the Grafana dashboards are (links only).
    console_session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    console_prometheus_url: str = ""
    console_grafana_url: str = ""
    # OpenID Connect sign-in to the console (any provider): the issuer URL (its /.well-known/openid-configuration
    # is read), this client's id and secret, the claim that lists the user's groups, and which group gets which
    # role: a JSON object like {"sre": "admin", "finance": "billing", "acme-admins": "tenant:ten_123"}. A user in
    # none of the groups is refused. Unset issuer: no single sign-on.
    console_oidc_issuer: str = ""
    console_oidc_client_id: str = ""
    console_oidc_client_secret: SecretStr | None = None
    console_oidc_groups_claim: str = "groups"
    console_oidc_roles: dict[str, str] = Field(default_factory=dict)
    console_oidc_scopes: str = "openid email profile"
    tracing_enabled: bool = False
    trace_content: bool = False
    log_format: Literal["json", "text"] = "json"
    access_log: bool = False
    # After startup: freeze the startup heap, rare young collections, 1 ms GIL switch; two malloc arenas
    # (platform/interpreter.py).
    interpreter_tuning: bool = True
    otel_service_name: str = Field(default="tenantgate", validation_alias=AliasChoices("OTEL_SERVICE_NAME"))
    otel_traces_exporter: str = Field(default="otlp", validation_alias=AliasChoices("OTEL_TRACES_EXPORTER"))
    otel_metrics_exporter: str = Field(default="prometheus", validation_alias=AliasChoices("OTEL_METRICS_EXPORTER"))
    otel_traces_sampler: Literal[
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    ] = Field(default="parentbased_always_on", validation_alias=AliasChoices("OTEL_TRACES_SAMPLER"))
    otel_traces_sampler_arg: float = Field(
        default=1.0, ge=0, le=1, validation_alias=AliasChoices("OTEL_TRACES_SAMPLER_ARG")
    )
    otel_exporter_otlp_protocol: OtlpProtocol = Field(
        default="http/protobuf", validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_PROTOCOL")
    )
    otel_exporter_otlp_traces_protocol: OtlpProtocol | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
    )
    otel_exporter_otlp_metrics_protocol: OtlpProtocol | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
    )
    # The OTLP/HTTP exporter's standard variables (per signal ones win; observability/otlphttp.py reads them from
    # here, so the environment is read once, with the rest of the settings). Headers may carry a vendor's key.
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    otel_exporter_otlp_metrics_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
    )
    otel_exporter_otlp_headers: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_HEADERS")
    )
    otel_exporter_otlp_traces_headers: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
    )
    otel_exporter_otlp_metrics_headers: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_METRICS_HEADERS")
    )
    otel_exporter_otlp_timeout: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TIMEOUT")
    )
    otel_exporter_otlp_traces_timeout: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
    )
    otel_exporter_otlp_metrics_timeout: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT")
    )
    otel_exporter_otlp_compression: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_COMPRESSION")
    )
    otel_exporter_otlp_traces_compression: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION")
    )
    otel_exporter_otlp_metrics_compression: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION")
    )
    otel_exporter_otlp_certificate: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_CERTIFICATE")
    )
    otel_exporter_otlp_traces_certificate: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE")
    )
    otel_exporter_otlp_metrics_certificate: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE")
    )
    otel_exporter_otlp_client_certificate: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")
    )
    otel_exporter_otlp_traces_client_certificate: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE")
    )
    otel_exporter_otlp_metrics_client_certificate: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE")
    )
    otel_exporter_otlp_client_key: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_CLIENT_KEY")
    )
    otel_exporter_otlp_traces_client_key: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY")
    )
    otel_exporter_otlp_metrics_client_key: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY")
    )
    otel_metric_export_interval_ms: int = Field(
        default=60000, ge=100, validation_alias=AliasChoices("OTEL_METRIC_EXPORT_INTERVAL")
    )
    otel_bsp_schedule_delay_ms: int = Field(
        default=5000, ge=1, validation_alias=AliasChoices("OTEL_BSP_SCHEDULE_DELAY")
    )
    otel_bsp_max_queue_size: int = Field(default=2048, ge=1, validation_alias=AliasChoices("OTEL_BSP_MAX_QUEUE_SIZE"))
    otel_bsp_max_export_batch_size: int = Field(
        default=512, ge=1, validation_alias=AliasChoices("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
    )

    @field_validator("redis_url")
    @classmethod
    def _supported_redis_url(cls, value: str) -> str:
        """Refused now, with what is not supported, rather than ignored or failing at the first request."""
        if value.strip():
            from tenantgate.wire.resp import Endpoint

            try:
                Endpoint.parse(value)
            except ValueError as error:
                raise ValueError(f"TENANTGATE_REDIS_URL: {error}") from None
        return value.strip()

    @field_validator("upstream_base_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("tenant_upstream_allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        """A comma-separated list of CIDRs (``10.1.0.0/16, fd00::/8``) or a JSON list; host bits are an error."""
        return [ip_network(item) for item in _listed(value)] if isinstance(value, str) else value

    @field_validator("platform_prompts", mode="before")
    @classmethod
    def _prompt_grants(cls, value: object) -> object:
        """A comma-separated list (``pmpt_a, t_1:pmpt_b``) or a JSON list."""
        return _listed(value) if isinstance(value, str) else value

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _empty_port_is_unset(cls, value: object) -> object:
        return None if value in ("", "0", 0) else value

    @field_validator("metrics_dir", "upstream_ca_file", mode="before")
    @classmethod
    def _empty_dir_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("otel_traces_exporter", "otel_metrics_exporter")
    @classmethod
    def _known_exporters(cls, value: str, info: ValidationInfo) -> str:
        allowed = _EXPORTERS[str(info.field_name)]
        names = [name.strip().lower() for name in value.split(",") if name.strip()]
        for name in names:
            if name not in allowed:
                variable = str(info.field_name).upper()
                raise ValueError(f"{variable} {name!r} is not supported; use {', '.join(allowed)}")
        return ",".join(names) or "none"

    @field_validator("console_oidc_roles")
    @classmethod
    def _known_console_roles(cls, value: dict[str, str]) -> dict[str, str]:
        for group, role in value.items():
            if role not in ("admin", "billing") and not (role.startswith("tenant:") and len(role) > len("tenant:")):
                raise ValueError(f"{group!r} maps to {role!r}; use admin, billing or tenant:<tenant id>")
        return value

    @field_validator("upstream_api_key", "admin_token", "console_oidc_client_secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _refuse_default_secret_outside_dev(self) -> Settings:
        if self.env is not Environment.DEV and self.secret_key.get_secret_value() == DEFAULT_SECRET_KEY:
            raise ValueError(
                "TENANTGATE_SECRET_KEY is unset or the built-in default. Set it to a long random value, e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`, or set TENANTGATE_ENV=dev "
                "for local development."
            )
        if len(self.secret_key.get_secret_value()) < 16:
            raise ValueError("TENANTGATE_SECRET_KEY must be at least 16 characters long.")
        return self

    def load_config_file(self) -> dict[str, Any] | None:
        """The YAML config file (TENANTGATE_CONFIG_FILE) with ``${VAR}`` in its string values expanded.

        Expanded after parsing, value by value: a reference in a comment is not one, and a value's characters
        (a ``#`` or ``: `` in a password) cannot change the file's structure. Inside a flow mapping (``{...}``)
        a reference must be quoted, as any value starting with ``$`` and holding braces must be.
        """
        if self.config_file is None:
            return None
        try:
            loaded = yaml.safe_load(self.config_file.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise ValueError(f"{self.config_file}: not valid YAML: {error}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{self.config_file}: expected a mapping at the top level")
        expanded: dict[str, Any] = _expand_references(loaded, str(self.config_file))
        return expanded

    def otlp_variables(self) -> dict[str, str]:
        """The ``OTEL_EXPORTER_OTLP_*`` variables that are set, by name, as the exporter's configuration reads them."""
        found: dict[str, str] = {}
        for name, field_info in type(self).model_fields.items():
            if name.startswith("otel_exporter_otlp_") and not name.endswith("_protocol"):
                value = getattr(self, name)
                text = value.get_secret_value() if isinstance(value, SecretStr) else value
                if text:
                    alias = field_info.validation_alias
                    assert isinstance(alias, AliasChoices)
                    found[str(alias.choices[0])] = text
        return found

    @cached_property
    def secret_key_bytes(self) -> bytes:
        return self.secret_key.get_secret_value().encode()

    @classmethod
    def for_command(cls) -> Settings:
        """The settings of a management command: the environment and ``.env`` over the dev setup's file, if
        ``tenantgate serve`` made one beside the SQLite database they name (see the module docstring)."""
        dev_file = dev_setup_file(_DatabaseLocation().database_url)
        if dev_file is None or not dev_file.is_file():
            return cls()
        return cls(_env_file=(dev_file, ".env"))  # the later file wins; the environment wins over both


class _DatabaseLocation(BaseSettings):
    """Just the database URL, read as Settings reads it: where to look for a dev setup's file."""

    model_config = SettingsConfigDict(
        env_prefix="TENANTGATE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = DEFAULT_DATABASE_URL


def dev_setup_file(database_url: str) -> Path | None:
    """The dev setup's file of a SQLite database file (``x.db`` -> ``x.dev.env`` beside it); None for others."""
    if not database_url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(database_url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database)
    return path.with_name(f"{path.stem}.dev.env")


def _expand_references(value: Any, source: str) -> Any:
    """``value`` with ``${VAR}`` in every string replaced by the environment variable (ValueError if unset)."""
    if isinstance(value, str):

        def expand(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ValueError(f"{source}: environment variable {name} is not set")
            return os.environ[name]

        return _ENV_REFERENCE.sub(expand, value)
    if isinstance(value, dict):
        return {key: _expand_references(item, source) for key, item in value.items()}
    if isinstance(value, list):
        return [_expand_references(item, source) for item in value]
    return value


def _listed(text: str) -> list[str]:
    """The items of a list given in one environment variable: comma-separated (``a, b``) or a JSON list."""
    text = text.strip()
    items = json.loads(text) if text.startswith("[") else text.split(",")
    return [str(item).strip() for item in items if str(item).strip()]
