"""Prometheus scrapes the gateway's separate, unauthenticated metrics listener (issue 20): on a port of its own,
published by a ClusterIP Service of its own, never a backend of the Ingress or HTTPRoute, and reachable only by
the listed peers when the NetworkPolicy is on."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helm.conftest import FULLNAME, Rendered, merge, render_chart
from tests.helm.test_helm_invariants import literal_env, server_container

METRICS_SERVICE = f"{FULLNAME}-metrics"
PROMETHEUS = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


def _container_port(rendered: Rendered, name: str) -> int:
    (port,) = [p["containerPort"] for p in server_container(rendered)["ports"] if p["name"] == name]
    return int(port)


def _service_port(service: dict[str, Any], ref: str | int) -> dict[str, Any]:
    """The Service port an Ingress or HTTPRoute backend names, by name or by number."""
    (port,) = [p for p in service["spec"]["ports"] if ref in (p["name"], p["port"])]
    return port


def _backends(rendered: Rendered) -> list[tuple[str, str, str | int]]:
    """(kind, Service name, port name or number) of every backend of every Ingress and HTTPRoute."""
    found: list[tuple[str, str, str | int]] = []
    for ingress in rendered.of_kind("Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                service = path["backend"]["service"]
                found.append(("Ingress", service["name"], service["port"].get("name") or service["port"]["number"]))
    for route in rendered.of_kind("HTTPRoute"):
        for rule in route["spec"]["rules"]:
            found.extend(("HTTPRoute", ref["name"], ref["port"]) for ref in rule["backendRefs"])
    return found


def test_the_pod_serves_metrics_on_its_own_port_on_every_interface(case):
    rendered = case.render()
    env = literal_env(rendered, server_container(rendered))
    assert int(env["TENANTGATE_METRICS_PORT"]) == _container_port(rendered, "metrics") == 9464
    assert _container_port(rendered, "http") == 8080
    # The listener's own default, 127.0.0.1, would refuse Prometheus in another pod.
    assert env["TENANTGATE_METRICS_HOST"] == "0.0.0.0"


@pytest.mark.parametrize(
    "override",
    [
        {},
        {"service": {"type": "LoadBalancer", "port": 9464}},  # the Service's http port on the metrics number
        {"metricsPort": 80, "service": {"port": 80}},
    ],
    ids=["defaults", "load-balancer-on-9464", "metrics-on-80"],
)
def test_ingress_and_http_route_never_reach_the_metrics_port(production, chart_with_observability, override):
    rendered = render_chart(merge(production, override), chart_with_observability)
    services = {s["metadata"]["name"]: s for s in rendered.of_kind("Service")}
    backends = _backends(rendered)
    assert {kind for kind, _, _ in backends} == {"Ingress", "HTTPRoute"}
    for kind, service_name, port_ref in backends:
        assert service_name == FULLNAME, kind
        assert _service_port(services[service_name], port_ref)["targetPort"] == "http", kind
    metrics_number = _container_port(rendered, "metrics")
    for port in services[FULLNAME]["spec"]["ports"]:
        assert port["targetPort"] not in ("metrics", metrics_number)
    # The unauthenticated port's own Service stays inside the cluster whatever service.type is.
    assert services[METRICS_SERVICE]["spec"]["type"] == "ClusterIP"


def test_the_service_monitor_scrapes_the_metrics_port_without_credentials(production, chart_with_observability):
    rendered = render_chart(production, chart_with_observability)
    spec = rendered.one("ServiceMonitor")["spec"]
    selected = [
        s
        for s in rendered.of_kind("Service")
        if spec["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in selected] == [METRICS_SERVICE]
    (endpoint,) = spec["endpoints"]
    assert _service_port(selected[0], endpoint["port"])["targetPort"] == "metrics"
    assert endpoint["path"] == "/metrics"
    assert not endpoint.keys() & {"authorization", "bearerTokenSecret", "bearerTokenFile", "basicAuth", "oauth2"}
    pod_labels = rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selected[0]["spec"]["selector"].items() <= pod_labels.items()


def _ingress_rules(rendered: Rendered) -> dict[str, dict[str, Any]]:
    rules = rendered.one("NetworkPolicy")["spec"]["ingress"]
    by_port = {rule["ports"][0]["port"]: rule for rule in rules}
    assert len(by_port) == len(rules)
    return by_port


def test_network_policy_lets_only_the_listed_peers_reach_the_metrics_port(production, render):
    rules = _ingress_rules(render(production))
    http_peers = production["networkPolicy"]["ingressFrom"]
    assert rules["http"] == {"ports": [{"port": "http", "protocol": "TCP"}], "from": http_peers}
    assert rules["metrics"] == {"ports": [{"port": "metrics", "protocol": "TCP"}], "from": PROMETHEUS}


def test_network_policy_closes_the_metrics_port_unless_peers_are_listed(minimal, with_values, render):
    # An open HTTP port (no ingressFrom) must not open the metrics port with it.
    rules = _ingress_rules(render(with_values(minimal, {"networkPolicy": {"enabled": True}})))
    assert rules == {"http": {"ports": [{"port": "http", "protocol": "TCP"}]}}
