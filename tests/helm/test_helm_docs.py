"""The chart's README documents every value in values.yaml, and documents none that does not exist; the docs page's
examples are values the chart accepts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import yaml

from tests.helm.conftest import merge, minimal_values, render_chart

DOCUMENTED = re.compile(r"^\| `([A-Za-z0-9_.]+)` \|", re.MULTILINE)


def value_paths(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Every path into values.yaml, leaves and the objects above them."""
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else key
        yield path
        if isinstance(value, dict):
            yield from value_paths(value, path)


def documented_values(chart_dir) -> set[str]:
    """Value names in the first column of the tables under the README's "## Values" heading."""
    readme = (chart_dir / "README.md").read_text()
    section = readme.split("\n## Values\n", 1)[1].split("\n## ", 1)[0]
    return set(DOCUMENTED.findall(section))


def leaves(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value:
            yield from leaves(value, path)
        else:
            yield path


def test_every_value_is_documented(chart_dir):
    values = yaml.safe_load((chart_dir / "values.yaml").read_text())
    documented = documented_values(chart_dir)
    undocumented = []
    for leaf in leaves(values):
        parts = leaf.split(".")
        # A leaf is covered by its own row or by a row for the object holding it (e.g. `resources`).
        if not any(".".join(parts[: i + 1]) in documented for i in range(len(parts))):
            undocumented.append(leaf)
    assert undocumented == []


def test_no_documented_value_is_stale(chart_dir):
    values = yaml.safe_load((chart_dir / "values.yaml").read_text())
    documented = documented_values(chart_dir)
    assert len(documented) > 50
    assert documented - set(value_paths(values)) == set()


def test_pinned_value_names_exist(chart_dir):
    """Names users and tools rely on (issue 8); renaming one is a breaking change."""
    values = yaml.safe_load((chart_dir / "values.yaml").read_text())
    paths = set(value_paths(values))
    pinned = {
        "replicaCount", "image.repository", "image.tag", "autoscaling.enabled", "autoscaling.minReplicas",
        "autoscaling.maxReplicas", "autoscaling.targetCPUUtilizationPercentage", "podDisruptionBudget.enabled",
        "serviceMonitor.enabled", "prometheusRule.enabled", "grafanaDashboards.enabled", "redis.url",
        "redis.existingSecret", "database.url", "database.existingSecret", "existingSecret", "ingress.enabled",
    }  # fmt: skip
    assert pinned <= paths


def test_the_docs_pages_values_examples_render(chart_dir):
    """Each YAML example of docs/helm-metrics-and-limits.md is a values file the chart accepts as it stands."""
    page = (chart_dir.parents[1] / "docs" / "helm-metrics-and-limits.md").read_text()
    examples = re.findall(r"```yaml\n(.*?)```", page, re.DOTALL)
    assert len(examples) == 3
    for example in examples:
        values = merge(minimal_values(), yaml.safe_load(example))
        with helm.Chart.load(str(chart_dir)) as chart:
            chart.validate_schema(values)
        render_chart(values, chart_dir)
