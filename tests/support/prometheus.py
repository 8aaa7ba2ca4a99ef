"""Scraping ``/metrics`` with the Prometheus text parser (prometheus_client), for assertions on samples."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass
class Scrape:
    text: str
    samples: list[tuple[str, dict[str, str], float]]
    types: dict[str, str]

    def total(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels``."""
        return sum(
            value
            for sample, sample_labels, value in self.samples
            if sample == name and all(sample_labels.get(k) == v for k, v in labels.items())
        )

    def has(self, name: str, **labels: str) -> bool:
        return any(
            sample == name and all(sample_labels.get(k) == v for k, v in labels.items())
            for sample, sample_labels, _ in self.samples
        )

    def label_values(self, name: str, label: str) -> set[str]:
        return {labels[label] for sample, labels, _ in self.samples if sample == name and label in labels}

    def bucket_bounds(self, histogram: str) -> list[str]:
        bounds: list[str] = []
        for sample, labels, _ in self.samples:
            if sample == histogram + "_bucket" and labels["le"] not in bounds:
                bounds.append(labels["le"])
        return bounds


def scrape(base_url: str, token: str | None = None) -> Scrape:
    """``base_url``'s /metrics: the main port's with an admin token (the tests' own unless given), or a metrics
    listener's (``token=""``: none)."""
    from tests.conftest import ADMIN_TOKEN

    token = ADMIN_TOKEN if token is None else token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(base_url + "/metrics", timeout=30, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: list[tuple[str, dict[str, str], float]] = []
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(response.text):
        types[family.name] = family.type
        samples.extend((s.name, dict(s.labels), s.value) for s in family.samples)
    return Scrape(response.text, samples, types)
