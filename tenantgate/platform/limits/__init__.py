"""Per-key and per-tenant limits on the proxy path: the exchange hook, OpenAI's headers and errors, /v1/me."""
