"""The chart lints clean and every object it renders is valid for the Kubernetes API it targets.

Core kinds are checked against the Kubernetes OpenAPI schemas shipped (offline) in kubernetes-validate, for the
oldest Kubernetes the chart supports and the newest the package knows. Custom resources (ServiceMonitor,
PrometheusRule, HTTPRoute) have no schema there, so their shape is checked here against the fields their
controllers read.
"""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest

CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DURATION = re.compile(r"^([0-9]+(ms|s|m|h))+$")


def oldest_supported_kube(chart_dir) -> str:
    with helm.Chart.load(str(chart_dir)) as chart:
        constraint = chart.metadata["kubeVersion"]
    match = re.search(r"(\d+\.\d+)\.\d+", constraint)
    assert match, constraint
    return match.group(1) + ".0"


def test_lint_reports_no_warnings_or_errors(case):
    report = helm.lint(str(case.chart_dir), case.values, strict=True, namespace="gw")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [] and report["errors"] == []


def test_every_core_object_matches_the_kubernetes_schema(case):
    rendered = case.render()
    versions = [oldest_supported_kube(case.chart_dir), kubernetes_validate.utils.latest_version()]
    checked = 0
    for obj in rendered.objects:
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            continue
        for version in versions:
            # strict: unknown fields are errors too, as the API server's field validation would report them.
            kubernetes_validate.validate(obj, version, strict=True)
        checked += 1
    assert checked >= 6


def test_objects_have_valid_names_and_are_unique(case):
    rendered = case.render()
    seen = set()
    for obj in rendered.objects:
        name = obj["metadata"]["name"]
        assert len(name) <= 63 and DNS_LABEL.match(name), name
        key = (obj["kind"], obj["metadata"].get("namespace"), name)
        assert key not in seen, key
        seen.add(key)


def _labels_select(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_service_monitor_shape_selects_the_service_port(production, chart_with_observability, render):
    rendered = render(production, chart_with_observability)
    monitor = rendered.one("ServiceMonitor")
    service = rendered.one("Service", "rel-tenantgate-metrics")
    spec = monitor["spec"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert _labels_select(spec["selector"]["matchLabels"], service["metadata"]["labels"])
    assert spec["namespaceSelector"]["matchNames"] == ["gw"]
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert DURATION.match(endpoint["interval"]) and DURATION.match(endpoint["scrapeTimeout"])
    assert set(spec) <= {"selector", "namespaceSelector", "endpoints"}


def _check_rule_groups(groups: Any) -> None:
    assert isinstance(groups, list) and groups
    for group in groups:
        assert isinstance(group["name"], str) and group["name"]
        assert isinstance(group["rules"], list) and group["rules"]
        for rule in group["rules"]:
            assert ("alert" in rule) != ("record" in rule), rule
            assert isinstance(rule["expr"], (str, int))
            assert set(rule) <= {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
            if "for" in rule:
                assert DURATION.match(rule["for"])


def test_prometheus_rule_shape(production, chart_with_observability, render):
    rule = render(production, chart_with_observability).one("PrometheusRule")
    assert set(rule["spec"]) == {"groups"}
    _check_rule_groups(rule["spec"]["groups"])


def test_http_route_shape_targets_the_service(production, chart_with_observability, render):
    rendered = render(production, chart_with_observability)
    route = rendered.one("HTTPRoute")
    service = rendered.one("Service", "rel-tenantgate")
    spec = route["spec"]
    assert spec["parentRefs"] == [{"name": "public", "namespace": "gateway-system"}]
    assert spec["hostnames"] == ["gw.example.com"]
    (rule,) = spec["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert rule["backendRefs"] == [{"name": service["metadata"]["name"], "port": service["spec"]["ports"][0]["port"]}]
    assert rule["timeouts"] == {"request": "600s"}


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ({"replicaCount": "three"}, "/replicaCount"),
        ({"replicas": 3}, "replicas"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"redis": {"url": "http://redis:6379"}}, "/redis/url"),
        ({"autoscaling": {"enabled": "yes"}}, "/autoscaling/enabled"),
        ({"podDisruptionBudget": {"maxUnavailable": "half"}}, "/podDisruptionBudget/maxUnavailable"),
        ({"metricsPort": 70000}, "/metricsPort"),
        ({"limits": {"http": {"maxHeaderBytes": 512}}}, "/limits/http/maxHeaderBytes"),
        ({"limits": {"http": {"headerTimeoutSeconds": 0}}}, "/limits/http/headerTimeoutSeconds"),
        ({"limits": {"http": {"keepaliveTimeoutSeconds": 2.5}}}, "/limits/http/keepaliveTimeoutSeconds"),
        ({"limits": {"http": {"maxHeader": 100}}}, "maxHeader"),
        ({"limits": {"authFailures": {"perMinute": 0}}}, "/limits/authFailures/perMinute"),
    ],
)
def test_schema_rejects_bad_values(minimal, with_values, chart_dir, render, override, error):
    values = with_values(minimal, override)
    with helm.Chart.load(str(chart_dir)) as chart, pytest.raises(helm.HelmValuesError, match=re.escape(error)):
        chart.validate_schema(values)
    with pytest.raises(helm.HelmError):
        render(values)


def test_schema_accepts_every_supported_values_set(case):
    with helm.Chart.load(str(case.chart_dir)) as chart:
        chart.validate_schema(case.values)
