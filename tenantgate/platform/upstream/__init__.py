"""Upstream servers: the pooled HTTP client, and (later) routing and retries."""
