"""Benchmark harness: tenantgate against a bare passthrough and the direct upstream (``python -m bench.run``)."""
