"""Render the Helm chart with Helm's own engine (helm-python-sdk) and hand tests the manifests as dicts.

Values sets are small factories so each test states what it changes. Secret values are recognisable markers, so a
test can sweep the rendered output for them.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "helm" / "tenantgate"
RELEASE = "rel"
NAMESPACE = "gw"
FULLNAME = f"{RELEASE}-tenantgate"

# Every secret the chart may receive, each a marker that cannot occur by accident.
SECRETS = {
    "secretKey": "sk-MARKER-hmac-5f1e",
    "adminToken": "adm-MARKER-token-9c2d",
    "upstreamApiKey": "up-MARKER-key-77ab",
    "databasePassword": "db-MARKER-pass-31f0",
    "redisPassword": "rd-MARKER-pass-a4e8",
}


def minimal_values() -> dict[str, Any]:
    """The least a user must set: secrets and a database."""
    return {
        "secretKey": SECRETS["secretKey"],
        "adminToken": SECRETS["adminToken"],
        "database": {"url": f"postgresql+asyncpg://tg:{SECRETS['databasePassword']}@db:5432/tg"},
    }


def production_values() -> dict[str, Any]:
    """Many replicas behind Redis with everything optional switched on."""
    values = minimal_values()
    values.update(
        {
            "image": {"repository": "registry.example.com/tenantgate", "tag": "1.2.3"},
            "workers": 2,
            "upstream": {"baseUrl": "https://api.openai.com/v1", "apiKey": SECRETS["upstreamApiKey"]},
            "redis": {"url": f"rediss://:{SECRETS['redisPassword']}@redis:6380/0"},
            "configFile": {"content": {"upstreams": [{"name": "openai", "base_url": "https://api.openai.com/v1"}]}},
            "otel": {"endpoint": "http://otel-collector.observability:4317", "resourceAttributes": {"env": "prod"}},
            "autoscaling": {
                "enabled": True,
                "minReplicas": 3,
                "maxReplicas": 12,
                "targetMemoryUtilizationPercentage": 80,
            },
            "podDisruptionBudget": {"enabled": True, "minAvailable": 2},
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "grafanaDashboards": {"enabled": True, "folder": "tenantgate", "namespace": "monitoring"},
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "annotations": {"nginx.ingress.kubernetes.io/proxy-buffering": "off"},
                "hosts": [{"host": "gw.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
                "tls": [{"hosts": ["gw.example.com"], "secretName": "gw-tls"}],
            },
            "httpRoute": {
                "enabled": True,
                "parentRefs": [{"name": "public", "namespace": "gateway-system"}],
                "hostnames": ["gw.example.com"],
                "timeouts": {"request": "600s"},
            },
            "networkPolicy": {
                "enabled": True,
                "ingressFrom": [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
                ],
                "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                "restrictEgress": True,
                "egressRules": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443}]}],
            },
        }
    )
    return values


def existing_secret_values() -> dict[str, Any]:
    """Secrets managed outside the chart (e.g. by External Secrets), Redis URL in the same Secret."""
    return {
        "existingSecret": "tg-secrets",
        "redis": {"existingSecret": "tg-secrets"},
        "replicaCount": 3,
        "podDisruptionBudget": {"enabled": True},
    }


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge override into a copy of base (nested dicts merge, everything else replaces)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@dataclass
class Rendered:
    """One rendering of the chart: raw text per template, and the parsed Kubernetes objects."""

    texts: dict[str, str]
    objects: list[dict[str, Any]] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
        return found[0]

    @property
    def manifest_text(self) -> str:
        return "\n".join(text for path, text in self.texts.items() if not path.endswith("NOTES.txt"))


def render_chart(values: dict[str, Any], chart_dir: Path = CHART_DIR) -> Rendered:
    """Render like `helm install --dry-run` would (is_install), offline."""
    with helm.Chart.load(str(chart_dir)) as chart:
        texts = chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    rendered = Rendered(texts=texts)
    for path, text in sorted(texts.items()):
        if path.endswith(".txt"):
            continue
        rendered.objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return rendered


SAMPLE_DASHBOARD = {
    "title": "tenantgate overview (sample)",
    "uid": "tg-sample",
    "panels": [{"type": "timeseries", "title": "Requests", "targets": [{"expr": "sum(rate(x[5m]))"}]}],
}

SAMPLE_RULES = """\
groups:
  - name: tenantgate.sample
    rules:
      - alert: TenantgateSampleDown
        expr: up{job="tenantgate"} == 0
        for: 5m
        labels:
          severity: critical
        annotations:
          summary: "{{ $labels.instance }} is down"
"""


@pytest.fixture
def chart_with_observability(tmp_path: Path) -> Iterator[Path]:
    """A copy of the chart with a sample dashboard and rule file, standing in for the real ones."""
    chart = tmp_path / "tenantgate"
    shutil.copytree(CHART_DIR, chart, ignore=shutil.ignore_patterns("files"))
    dashboards = chart / "files" / "dashboards"
    dashboards.mkdir(parents=True)
    (dashboards / "Tenant_Overview.json").write_text(json.dumps(SAMPLE_DASHBOARD, indent=2))
    (dashboards / "upstreams.json").write_text(json.dumps({"title": "upstreams", "panels": []}))
    (chart / "files" / "prometheus-rules.yaml").write_text(SAMPLE_RULES)
    yield chart


@pytest.fixture
def chart_without_observability(tmp_path: Path) -> Path:
    """A copy of the chart with no files/ at all, as before the dashboards are written."""
    chart = tmp_path / "tenantgate"
    shutil.copytree(CHART_DIR, chart, ignore=shutil.ignore_patterns("files"))
    return chart


@dataclass
class Case:
    """A named values set and the chart directory it renders from."""

    name: str
    values: dict[str, Any]
    chart_dir: Path

    def render(self) -> Rendered:
        return render_chart(self.values, self.chart_dir)


@pytest.fixture(params=["minimal", "production", "existing_secret"])
def case(request: pytest.FixtureRequest) -> Case:
    """Each values set the chart promises to support; production also embeds sample dashboards and rules."""
    if request.param == "production":
        return Case("production", production_values(), request.getfixturevalue("chart_with_observability"))
    factory = {"minimal": minimal_values, "existing_secret": existing_secret_values}[request.param]
    return Case(request.param, factory(), CHART_DIR)


@pytest.fixture
def render() -> Callable[..., Rendered]:
    return render_chart


@pytest.fixture
def minimal() -> dict[str, Any]:
    return minimal_values()


@pytest.fixture
def production() -> dict[str, Any]:
    return production_values()


@pytest.fixture
def existing_secret() -> dict[str, Any]:
    return existing_secret_values()


@pytest.fixture
def with_values() -> Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]:
    """Deep-merge helper: with_values(base, {"redis": {"url": ...}})."""
    return merge


@pytest.fixture
def secret_markers() -> dict[str, str]:
    return dict(SECRETS)


@pytest.fixture
def chart_dir() -> Path:
    return CHART_DIR
