"""The shipped Grafana dashboards and Prometheus rules only ask for metrics and labels the running app exports.

Every query is parsed with a real PromQL parser (promql-parser); Grafana's own variables are substituted first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import promql_parser as promql
import pytest
import yaml

from tenantgate.core.exchange import Exchange
from tenantgate.platform.errors import GatewayError
from tenantgate.platform.proxy.hooks import Hooks
from tests.support.databases import migrated_sqlite_url
from tests.support.gateway import Gateway
from tests.support.metering import flush
from tests.support.prometheus import Scrape, scrape

CHART_FILES = Path(__file__).resolve().parents[2] / "helm" / "tenantgate" / "files"
DASHBOARDS = sorted((CHART_FILES / "dashboards").glob("*.json"))
RULES = yaml.safe_load((CHART_FILES / "prometheus-rules.yaml").read_text())
_GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "1m", "${tenant}": "t", "$tenant": "t"}
_LABEL_VALUES = re.compile(r"^label_values\((\w+),\s*(\w+)\)$")
MESSAGES = [{"role": "user", "content": "every series, please"}]


@dataclass
class Query:
    where: str
    expr: str


def _dashboard_queries() -> Iterator[Query]:
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", ()):
                yield Query(f"{path.name}: {panel['title']}", target["expr"])


def _rule_queries() -> Iterator[Query]:
    for group in RULES["groups"]:
        for rule in group["rules"]:
            yield Query(f"rules {group['name']}: {rule.get('alert') or rule.get('record')}", rule["expr"])


def _recorded() -> set[str]:
    return {rule["record"] for group in RULES["groups"] for rule in group["rules"] if "record" in rule}


def _parse(expr: str) -> promql.Expr:
    for variable, value in _GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return promql.parse(expr)


@dataclass
class Uses:
    """What one query reads: metric names, the labels it matches on, the labels it groups by."""

    metrics: dict[str, set[str]] = field(default_factory=dict)
    grouped_by: set[str] = field(default_factory=set)


def _uses(expr: promql.Expr) -> Uses:
    uses = Uses()

    def visit(node: Any) -> bool:
        if isinstance(node, promql.VectorSelector) and node.name:
            labels = uses.metrics.setdefault(node.name, set())
            labels.update(m.name for m in node.matchers.matchers if m.name != "__name__")
        if isinstance(node, promql.AggregateExpr) and node.modifier is not None:
            uses.grouped_by.update(node.modifier.labels)
        return True

    promql.walk(expr, visit)
    return uses


class RefuseOneModel:
    """Refuses requests for one model with a 429, like the rate limiter will."""

    name = "refuse-one-model"

    async def admit(self, exchange: Exchange) -> None:
        if exchange.model == "gpt-4.1-mini":
            error = GatewayError("Rate limit reached for requests", code="rate_limit_exceeded")
            error.status = 429
            raise error

    async def settle(self, exchange: Exchange) -> None:
        return None

    def finish(self, exchange: Exchange) -> None:
        return None


@pytest.fixture
def busy_gateway(
    gateway_factory: Callable[..., Gateway],
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
    known_models_upstream: str,
) -> Gateway:
    """A gateway that served every kind of request the dashboards chart, so every series exists."""
    url = migrated_sqlite_url(tmp_path / "dash.db")
    gateway = gateway_factory(
        database_url=url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        upstream_base_url=known_models_upstream,
        auth_failures_per_source_per_minute=1,  # a few bad keys are then invalid, then throttled
    )
    runtime = gateway.runtime
    runtime.proxy.hooks = Hooks([runtime.telemetry.hook, RefuseOneModel(), runtime.metering.hook])
    client = gateway.client(gateway.new_key("dashboards")["key"])
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    for model in ("made-up-model", "gpt-4.1-mini"):  # an upstream 404 and a limit rejection
        with pytest.raises(Exception):  # noqa: B017 - the SDK's NotFoundError / RateLimitError
            client.chat.completions.create(model=model, messages=MESSAGES)
    guesses = [
        gateway.http.get(gateway.base_url + "/models", headers={"Authorization": f"Bearer tg-guess{i:040d}"})
        for i in range(6)
    ]
    assert {r.status_code for r in guesses} == {401, 429}
    # An image of a size with no price: stored unpriced, counted by model.
    client.images.generate(model="dall-e-3", prompt="a size without a price", size="999x999")  # type: ignore[arg-type]
    flush(gateway)
    return gateway


def test_the_chart_ships_dashboards_and_rules() -> None:
    assert {p.name for p in DASHBOARDS} == {"tenantgate-overview.json", "tenantgate-tenant.json"}
    assert len(list(_dashboard_queries())) >= 30 and len(list(_rule_queries())) >= 15


def test_every_metric_and_label_in_dashboards_and_alerts_is_exported(busy_gateway: Gateway) -> None:
    metrics: Scrape = scrape(busy_gateway.url)
    exported: dict[str, set[str]] = {}
    for name, labels, _ in metrics.samples:
        exported.setdefault(name, set()).update(labels)
    recorded = _recorded()
    # The metering writer's gauges are exported by the running app like every other metric.
    assert {
        "tenantgate_metering_buffer_depth",
        "tenantgate_metering_spool_size_bytes",
        "tenantgate_metering_write_lag_seconds",
        "tenantgate_metering_unpriced_events_total",
    } <= set(exported)
    unpriced = [(labels, value) for name, labels, value in metrics.samples if name.endswith("unpriced_events_total")]
    assert unpriced == [({"gen_ai_request_model": "dall-e-3"}, 1.0)]
    checked = 0
    for query in [*_dashboard_queries(), *_rule_queries()]:
        uses = _uses(_parse(query.expr))
        available: set[str] = set()
        for name, labels in uses.metrics.items():
            if name in recorded:
                continue
            assert name in exported, f"{query.where}: {name} is not exported"
            missing = labels - exported[name]
            assert not missing, f"{query.where}: {name} has no label {missing}"
            available |= exported[name]
            checked += 1
        if available:
            assert uses.grouped_by <= available, f"{query.where}: grouped by {uses.grouped_by - available}"
    assert checked >= 40


def test_auth_failure_alert_selects_invalid_and_throttled_failures(busy_gateway: Gateway) -> None:
    """Label names alone would pass with a misspelt reason; the alert must select the values the app counts."""
    metrics = scrape(busy_gateway.url)
    (rule,) = [r for g in RULES["groups"] for r in g["rules"] if r.get("alert") == "TenantgateAuthFailureSpike"]
    selectors: list[promql.VectorSelector] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql.VectorSelector):
            selectors.append(node)
        return True

    promql.walk(_parse(rule["expr"]), visit)
    (selector,) = selectors
    assert selector.name == "tenantgate_auth_failures_total"
    selected = {
        labels["reason"]
        for name, labels, value in metrics.samples
        if name == selector.name and value > 0 and all(_matches(m, labels) for m in selector.matchers.matchers)
    }
    assert selected == {"invalid", "throttled"}
    assert "tenantgate_auth_surface" in _uses(_parse(rule["expr"])).grouped_by


def _matches(matcher: Any, labels: dict[str, str]) -> bool:
    value = labels.get(matcher.name, "")
    if matcher.op == promql.MatchOp.Equal:
        return bool(value == matcher.value)
    if matcher.op == promql.MatchOp.NotEqual:
        return bool(value != matcher.value)
    found = re.fullmatch(matcher.value, value) is not None
    return found if matcher.op == promql.MatchOp.Re else not found


def test_template_variables_query_exported_labels(busy_gateway: Gateway) -> None:
    metrics = scrape(busy_gateway.url)
    for path in DASHBOARDS:
        for variable in json.loads(path.read_text())["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = _LABEL_VALUES.match(variable["query"]["query"])
            assert match, variable
            assert metrics.label_values(match.group(1), match.group(2)), f"{path.name}: ${variable['name']} is empty"


def test_dashboards_are_well_formed_grafana_json() -> None:
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        assert any(v["type"] == "datasource" and v["name"] == "datasource" for v in board["templating"]["list"])
        for panel in board["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, panel["title"]
    tenant = json.loads((CHART_FILES / "dashboards" / "tenantgate-tenant.json").read_text())
    for panel in tenant["panels"]:
        for target in panel.get("targets", ()):
            assert 'tenantgate_tenant_id="$tenant"' in target["expr"], panel["title"]


def test_alert_rules_are_complete() -> None:
    alerts = [rule for group in RULES["groups"] for rule in group["rules"] if "alert" in rule]
    names = {rule["alert"] for rule in alerts}
    assert {
        "TenantgateHighErrorRate",
        "TenantgateLatencyBudgetBurnFast",
        "TenantgateLatencyBudgetBurnSlow",
        "TenantgateMeteringLagHigh",
        "TenantgateMeteringSpoolGrowing",
        "TenantgateUnpricedUsage",
        "TenantgateRedisUnreachable",
        "TenantgateDatabaseUnreachable",
        "TenantgateAuthFailureSpike",
    } <= names
    for rule in alerts:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
    for record in _recorded():
        assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", record), record
