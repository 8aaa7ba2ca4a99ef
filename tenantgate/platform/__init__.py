"""The HTTP surface: the proxy pipeline, admin and ops routes."""
