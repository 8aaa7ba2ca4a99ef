"""A small OpenAI-compatible server for trying, testing and benchmarking the gateway offline.

It is not a model: it answers in OpenAI's wire format with deterministic text and realistic usage counts.
"""

from tenantgate.devupstream.app import DevUpstream

__all__ = ["DevUpstream"]
