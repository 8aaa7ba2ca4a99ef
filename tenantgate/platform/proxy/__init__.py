"""The OpenAI-compatible proxy endpoints, served as raw ASGI (no FastAPI router on the hot path)."""
