"""The hand-built wire code: tenantgate's own clients and encoders where a library cost too much per request or
per worker (docs/decisions/ says why each exists, what it leaves out and how it is proven).

- ``resp``: the Redis client (RESP2, pipelining by loop iteration, pub/sub);
- ``http1`` and ``http1conn``: the HTTP/1.1 client to the operator's upstreams (keep-alive pool, proxies, TLS);
- ``spanwire`` and ``metricwire``: OTLP protobuf encoders; ``otlphttp``: the OTLP/HTTP sender;
- ``prometheus``: the Prometheus text exposition writer.

Framework-free on purpose: nothing here imports ``platform``, ``tenants`` or ``observability``, so each piece can be
tested against the library it replaces without an app around it (tests/wire/).
"""
