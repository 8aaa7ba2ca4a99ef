"""The TENANTGATE_* variables the chart sets are settings the application reads, and they carry the values given:
the metrics listener's, and the request and auth-failure limits (issue 20)."""

from __future__ import annotations

import os
from typing import Any
from unittest import mock

import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import AliasChoices

from tenantgate.settings import Settings
from tests.helm.conftest import CHART_DIR, Rendered, merge, minimal_values, render_chart
from tests.helm.test_helm_invariants import env_of, literal_env, server_container


def _setting_env_names() -> set[str]:
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices)
        else:
            names.add(f"TENANTGATE_{name.upper()}")
    return names


def test_every_tenantgate_variable_the_chart_sets_is_a_setting(case):
    """Settings ignore unknown variables, so a misspelt name would silently leave a limit at its default."""
    rendered = case.render()
    containers = [server_container(rendered)] + [
        job["spec"]["template"]["spec"]["containers"][0] for job in rendered.of_kind("Job")
    ]
    known = _setting_env_names()
    for container in containers:
        chart_names = {name for name in env_of(container) if name.startswith("TENANTGATE_")}
        assert chart_names - known == set(), container["name"]


def _settings_of(rendered: Rendered) -> Settings:
    """The Settings the server container would build from its environment (secrets stubbed)."""
    container = server_container(rendered)
    env = {k: v for k, v in literal_env(rendered, container).items() if k.startswith("TENANTGATE_")}
    env |= {"TENANTGATE_SECRET_KEY": "k" * 64, "TENANTGATE_ADMIN_TOKEN": "a" * 64}
    with mock.patch.dict(os.environ, env, clear=True):
        return Settings(_env_file=None)


LIMIT_FIELDS = {
    ("http", "maxRequestBodyBytes"): "max_request_body_bytes",
    ("http", "maxAdminBodyBytes"): "max_admin_body_bytes",
    ("http", "maxHeaderBytes"): "http_max_header_bytes",
    ("http", "maxHeaders"): "http_max_headers",
    ("http", "headerTimeoutSeconds"): "http_header_timeout_seconds",
    ("http", "bodyIdleTimeoutSeconds"): "http_body_idle_timeout_seconds",
    ("http", "bodyTimeoutSeconds"): "http_body_timeout_seconds",
    ("http", "keepaliveTimeoutSeconds"): "http_keepalive_timeout_seconds",
    ("http", "maxConnections"): "http_max_connections",
    ("http", "maxConnectionsPerSource"): "http_max_connections_per_source",
    ("http", "maxPendingHeaderBytes"): "http_max_pending_header_bytes",
    ("authFailures", "perSourcePerMinute"): "auth_failures_per_source_per_minute",
    ("authFailures", "perMinute"): "auth_failures_per_minute",
}


def test_the_charts_limit_defaults_reach_the_application(minimal, render):
    chart_defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["limits"]
    configured = _settings_of(render(minimal))
    assert set(LIMIT_FIELDS) == {(group, key) for group, values in chart_defaults.items() for key in values}
    for (group, key), field in LIMIT_FIELDS.items():
        assert getattr(configured, field) == chart_defaults[group][key], field
    assert (configured.metrics_port, configured.metrics_host) == (9464, "0.0.0.0")


_SECONDS = st.floats(min_value=0.001, max_value=86_400, allow_nan=False, allow_infinity=False)
_GENERATED_LIMITS = {
    ("http", "maxRequestBodyBytes"): st.integers(1024, 2**40),
    ("http", "maxAdminBodyBytes"): st.integers(1024, 2**40),
    ("http", "maxHeaderBytes"): st.integers(1024, 2**31),
    ("http", "maxHeaders"): st.integers(10, 100_000),
    ("http", "headerTimeoutSeconds"): _SECONDS,
    ("http", "bodyIdleTimeoutSeconds"): _SECONDS,
    ("http", "bodyTimeoutSeconds"): _SECONDS,
    ("http", "keepaliveTimeoutSeconds"): st.integers(1, 86_400),
    ("http", "maxConnections"): st.integers(1, 1_000_000),
    ("http", "maxConnectionsPerSource"): st.integers(1, 1_000_000),
    ("http", "maxPendingHeaderBytes"): st.integers(65536, 2**40),
    ("authFailures", "perSourcePerMinute"): st.integers(1, 10**9),
    ("authFailures", "perMinute"): st.integers(1, 10**9),
}


# No shrinking: at a quarter second per rendering it takes minutes, and an unshrunk example reads well enough.
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(st.fixed_dictionaries({path: st.none() | strategy for path, strategy in _GENERATED_LIMITS.items()}))
def test_any_valid_limit_reaches_the_application_unchanged(chosen):
    """Helm hands values-file numbers to templates as floats: large ones must not turn into 3.3e+07, and a limit
    set to null must leave the application's default."""
    limits: dict[str, dict[str, Any]] = {"http": {}, "authFailures": {}}
    for (group, key), value in chosen.items():
        limits[group][key] = value
    with_limits = merge(minimal_values(), {"limits": limits})
    configured = _settings_of(render_chart(with_limits))
    for (group, key), value in chosen.items():
        field = LIMIT_FIELDS[(group, key)]
        expected = Settings.model_fields[field].default if value is None else value
        assert getattr(configured, field) == expected, field
