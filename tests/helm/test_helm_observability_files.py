"""The chart's real dashboards and alert rules (files/), rendered the way operators install them."""

from __future__ import annotations

import json

import yaml

from tests.helm.conftest import CHART_DIR, render_chart


def test_real_dashboards_and_rules_render_into_configmaps_and_a_prometheusrule(production) -> None:
    rendered = render_chart(production, CHART_DIR)
    dashboards = {
        c["metadata"]["name"]: c
        for c in rendered.of_kind("ConfigMap")
        if "grafana_dashboard" in c["metadata"]["labels"]
    }
    assert set(dashboards) == {
        "rel-tenantgate-dashboard-tenantgate-overview",
        "rel-tenantgate-dashboard-tenantgate-tenant",
    }
    for name, configmap in dashboards.items():
        (filename,) = configmap["data"]
        embedded = json.loads(configmap["data"][filename])
        shipped = json.loads((CHART_DIR / "files" / "dashboards" / filename).read_text())
        assert embedded == shipped, name
        assert len(configmap["data"][filename].encode()) < 1024 * 1024
    rule = rendered.one("PrometheusRule")
    expected = yaml.safe_load((CHART_DIR / "files" / "prometheus-rules.yaml").read_text())
    assert rule["spec"]["groups"] == expected["groups"]
    annotations = [r["annotations"]["description"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert any("{{ $value" in text for text in annotations)  # Prometheus templating survives Helm's
    assert "no files/prometheus-rules.yaml" not in rendered.texts["tenantgate/templates/NOTES.txt"]


def test_unpriced_usage_alerts_by_model(production) -> None:
    rule = render_chart(production, CHART_DIR).one("PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    unpriced = alerts["TenantgateUnpricedUsage"]
    assert "tenantgate_metering_unpriced_events_total" in unpriced["expr"]
    assert "by (gen_ai_request_model)" in unpriced["expr"]
    assert "{{ $labels.gen_ai_request_model }}" in unpriced["annotations"]["description"]
    assert "tenantgate prices missing" in unpriced["annotations"]["description"]
