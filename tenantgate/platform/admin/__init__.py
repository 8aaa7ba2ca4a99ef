"""The operator API under /admin."""
